#pragma once
// Logs go to stderr, results to stdout or files. Level set once from the command line.
#include <string>

namespace histoscan::log {

enum class Level { quiet = 0, warn = 1, info = 2, debug = 3 };

void set_level(Level level);
Level level();
void info(const std::string& msg);
void warn(const std::string& msg);  // prefixed "warning: "
void debug(const std::string& msg);
// Prints `msg` as a warning the first time `key` is seen in this process only.
void warn_once(const std::string& key, const std::string& msg);

}  // namespace histoscan::log
