#include "histoscan/util/sysinfo.h"

#include <fstream>
#include <string>

namespace histoscan {

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:   123456 kB"
  return 0;
}

}  // namespace histoscan
