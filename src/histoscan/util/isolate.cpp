#include "histoscan/util/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "histoscan/util/sysinfo.h"

namespace histoscan {

namespace {

void (*g_child_hook)() = nullptr;

// What the helper answers: one byte per request.
constexpr char kAnswerFinished = 0, kAnswerThrew = 3, kAnswerTooMuchMemory = 4;

struct Request {
  std::uint64_t probe;  // the ProbeFn's address: the helper is a fork, so it is the same function there
  double memory_limit_mib;
  std::uint32_t time_limit_s;
};

std::runtime_error system_error(const char* what) { return std::runtime_error(std::string(what) + ": " + std::strerror(errno)); }

// The helper's loop: one request per message until this process's end closes the socket.
[[noreturn]] void serve(int sock) {
  std::vector<char> buf;
  for (;;) {
    ssize_t size = ::recv(sock, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    if (size <= 0) {
      if (size < 0 && errno == EINTR) continue;
      ::_exit(0);  // the parent is gone
    }
    buf.resize(static_cast<std::size_t>(size));
    if (::recv(sock, buf.data(), buf.size(), 0) != size || buf.size() < sizeof(Request)) ::_exit(0);
    Request req;
    std::memcpy(&req, buf.data(), sizeof req);
    const std::string arg(buf.data() + sizeof req, buf.size() - sizeof req);
    {  // peak RSS from here on (Linux: "5" resets VmHWM to the current RSS)
      std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
      if (f) std::fputs("5", f), std::fclose(f);
    }
    const double before = peak_rss_mib();
    ::alarm(req.time_limit_s);  // SIGALRM (default action: end) stops a hung probe
    char answer = kAnswerFinished;
    try {
      reinterpret_cast<ProbeFn>(req.probe)(arg);
    } catch (...) {
      answer = kAnswerThrew;
    }
    ::alarm(0);
    const bool too_big = peak_rss_mib() - before > req.memory_limit_mib;
    if (too_big) answer = kAnswerTooMuchMemory;
    while (::send(sock, &answer, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    if (too_big) ::_exit(0);  // hand back the memory: the next request gets a fresh helper
  }
}

class Helper {
 public:
  ProbeOutcome run(ProbeFn probe, const std::string& arg, double memory_limit_mib, unsigned time_limit_s) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pid_ > 0 && exited()) stop(false);  // it ended between requests (e.g. killed): not this file's doing
    if (pid_ <= 0) start();
    std::string message(sizeof(Request), '\0');
    Request req{reinterpret_cast<std::uint64_t>(probe), memory_limit_mib, time_limit_s};
    std::memcpy(message.data(), &req, sizeof req);
    message += arg;
    ssize_t sent;
    while ((sent = ::send(sock_, message.data(), message.size(), MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (sent != static_cast<ssize_t>(message.size())) {  // it died just now: once more with a new one
      stop(false);
      start();
      if (::send(sock_, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size()))
        throw system_error("cannot reach the probe process");
    }

    // Its own alarm ends a hung probe; this wait is the safety net behind it.
    pollfd pfd{sock_, POLLIN, 0};
    int ready;
    while ((ready = ::poll(&pfd, 1, static_cast<int>(time_limit_s + 10) * 1000)) < 0 && errno == EINTR) {
    }
    ProbeOutcome out;
    if (ready == 0) {
      ::kill(pid_, SIGKILL);
      stop(true);
      out.kind = ProbeOutcome::kHung;
      return out;
    }
    char answer;
    ssize_t got;
    while ((got = ::recv(sock_, &answer, 1, 0)) < 0 && errno == EINTR) {
    }
    if (got == 1) {
      if (answer == kAnswerFinished) return out;
      if (answer == kAnswerThrew) {
        out.kind = ProbeOutcome::kThrew;
        return out;
      }
      stop(true);  // kAnswerTooMuchMemory: it exits
      out.kind = ProbeOutcome::kTooMuchMemory;
      return out;
    }
    int status = stop(true);  // no answer: it died in the probe
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      out.kind = ProbeOutcome::kHung;
      return out;
    }
    out.kind = ProbeOutcome::kCrashed;
    out.how = WIFSIGNALED(status) ? std::string(strsignal(WTERMSIG(status))) : "exit status " + std::to_string(WEXITSTATUS(status));
    return out;
  }

  ~Helper() {
    if (sock_ >= 0) ::close(sock_);  // the helper sees the end of its socket and exits
  }

 private:
  void start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw system_error("socketpair");
    std::fflush(nullptr);  // nothing buffered is written twice
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(sv[0]), ::close(sv[1]);
      throw system_error("fork");
    }
    if (pid == 0) {
      ::close(sv[0]);
      if (g_child_hook) g_child_hook();
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(0);
      ::signal(SIGINT, SIG_IGN);  // Ctrl-C is the parent's to handle; the helper ends with it
      // What a crashing library prints ("free(): invalid size", a sanitizer's report) is not
      // for the user, who gets one line from the parent.
      int null = ::open("/dev/null", O_WRONLY);
      if (null >= 0) ::dup2(null, STDOUT_FILENO), ::dup2(null, STDERR_FILENO), ::close(null);
      ::signal(SIGALRM, SIG_DFL);
      serve(sv[1]);
    }
    ::close(sv[1]);
    sock_ = sv[0];
    pid_ = pid;
  }

  bool exited() {
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;  // reaped
      return true;
    }
    return r < 0;
  }

  // Closes the socket and reaps the helper (waiting for it when `wait`); its wait status.
  int stop(bool wait) {
    int status = 0;
    if (sock_ >= 0) ::close(sock_);
    sock_ = -1;
    if (pid_ > 0) {
      if (!wait) ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
    return status;
  }

  std::mutex mutex_;
  pid_t pid_ = -1;
  int sock_ = -1;
};

Helper& helper() {
  static Helper* h = new Helper;  // never destroyed: the helper ends with this process
  return *h;
}

}  // namespace

void set_probe_child_hook(void (*hook)()) { g_child_hook = hook; }

ProbeOutcome probe_in_child(ProbeFn probe, const std::string& arg, double memory_limit_mib, unsigned time_limit_s) {
  return helper().run(probe, arg, memory_limit_mib, time_limit_s);
}

}  // namespace histoscan
