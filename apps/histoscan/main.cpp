// histoscan: find metastatic cancer in histopathology patches.
#include <string>
#include <vector>

#include "app.h"
#include "histoscan/util/sysinfo.h"

int main(int argc, char** argv) {
  histoscan::reuse_freed_memory();  // before the first large allocation
  return histoscan::cli::run_command_line(std::vector<std::string>(argv, argv + argc));
}
