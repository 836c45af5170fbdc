#include "histoscan/util/isolate.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
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

// Resident pages now, from /proc/self/statm with async-signal-safe calls only.
long resident_pages() {
  int fd = ::open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return -1;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  long pages = 0;
  char* p = buf;
  while (*p && *p != ' ') ++p;  // skip the total size
  while (*p == ' ') ++p;
  while (*p >= '0' && *p <= '9') pages = pages * 10 + (*p++ - '0');
  return pages;
}

volatile long g_baseline_pages = 0, g_limit_pages = 0;

// Every 20 ms of the helper's CPU time while it probes: a probe filling gigabytes (HDF5 on
// some damaged headers) is stopped as soon as it passes the limit, not after its last byte.
void watch_memory(int) {
  long now = resident_pages();
  if (now >= 0 && now - g_baseline_pages > g_limit_pages) ::_exit(kAnswerTooMuchMemory);
}

void set_watch(bool on) {
  itimerval t{};
  if (on) t.it_interval.tv_usec = t.it_value.tv_usec = 20000;
  ::setitimer(ITIMER_PROF, &t, nullptr);
}

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
    g_baseline_pages = resident_pages();
    g_limit_pages = static_cast<long>(req.memory_limit_mib * 1024.0 * 1024.0 / static_cast<double>(::sysconf(_SC_PAGESIZE)));
    set_watch(true);
    ::alarm(req.time_limit_s);  // SIGALRM (default action: end) stops a hung probe
    char answer = kAnswerFinished;
    try {
      reinterpret_cast<ProbeFn>(req.probe)(arg);
    } catch (...) {
      answer = kAnswerThrew;
    }
    ::alarm(0);
    set_watch(false);
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
    int status = stop(true);                                                 // no answer: it died in the probe
    if (WIFEXITED(status) && WEXITSTATUS(status) == kAnswerTooMuchMemory) {  // watch_memory
      out.kind = ProbeOutcome::kTooMuchMemory;
      return out;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      out.kind = ProbeOutcome::kHung;
      return out;
    }
    out.kind = ProbeOutcome::kCrashed;
    out.how =
        WIFSIGNALED(status) ? std::string(strsignal(WTERMSIG(status))) : "exit status " + std::to_string(WEXITSTATUS(status));
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
      struct sigaction sa {};
      sa.sa_handler = watch_memory;
      sa.sa_flags = SA_RESTART;
      ::sigaction(SIGPROF, &sa, nullptr);
      serve(sv[1]);
    }
    ::close(sv[1]);
    sock_ = sv[0];
    pid_ = pid;
  }

  bool exited() {
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || r < 0) {
      pid_ = -1;  // reaped (by us, or by someone else: then it is no longer ours to kill)
      return true;
    }
    return false;
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
