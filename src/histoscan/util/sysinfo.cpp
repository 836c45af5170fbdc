#include "histoscan/util/sysinfo.h"

#include <climits>
#include <fstream>
#include <sstream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace histoscan {

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:   123456 kB"
  return 0;
}

namespace {

// The value of the first /proc/cpuinfo line that starts with `key`; "unknown" where none does.
std::string cpuinfo_value(const std::string& key) {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0 && line.find(':') != std::string::npos) {
      const auto value = line.substr(line.find(':') + 1);
      const auto start = value.find_first_not_of(" \t");
      return start == std::string::npos ? std::string() : value.substr(start);
    }
  return "unknown";
}

}  // namespace

std::string cpu_model_name() { return cpuinfo_value("model name"); }

std::string cpu_vendor() { return cpuinfo_value("vendor_id"); }

bool cpu_has_any_flag(std::initializer_list<const char*> flags) {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    for (std::string w; words >> w;)
      for (const char* flag : flags)
        if (w == flag) return true;
    return false;
  }
  return false;
}

void reuse_freed_memory() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);  // large blocks from the heap too (glibc still maps one where the heap cannot grow)
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
}

}  // namespace histoscan
