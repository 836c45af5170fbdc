#pragma once
// Running the histoscan binary from tests, as a user would.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace histoscan::test {

struct RunResult {
  int code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `histoscan ARGS` (ARGS as a shell string) and captures its output and exit code.
inline RunResult run_cli(const std::string& args) {
  std::string cmd = std::string("\"") + HISTOSCAN_BINARY + "\" " + args + " 2>&1";
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

inline std::string quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

}  // namespace histoscan::test
