#pragma once
// Running the histoscan binary from tests, as a user would.
#include <sys/wait.h>

#include <filesystem>

#include <array>
#include <cstdio>
#include <string>

namespace histoscan::test {

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `ENV histoscan ARGS` (ENV as shell assignments, "NAME=VALUE ", or empty; ARGS as a shell
// string) and captures its output and exit code.
inline RunResult run_cli_env(const std::string& env, const std::string& args) {
  std::string cmd = env + "\"" + HISTOSCAN_BINARY + "\" " + args + " 2>&1";
  RunResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `histoscan ARGS` (ARGS as a shell string) and captures its output and exit code.
inline RunResult run_cli(const std::string& args) { return run_cli_env("", args); }

inline std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

}  // namespace histoscan::test

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <vector>

namespace histoscan::test {

// Starts `histoscan ARGS...` in the background with stdout and stderr going to `log`, with
// `env` ("NAME=VALUE") added to its environment.
inline pid_t spawn_cli(const std::vector<std::string>& args, const std::filesystem::path& log,
                       const std::vector<std::string>& env = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv{const_cast<char*>(HISTOSCAN_BINARY)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(HISTOSCAN_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid`; its exit code, or 128 + signal when a signal ended it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace histoscan::test
