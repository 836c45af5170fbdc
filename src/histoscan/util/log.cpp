#include "histoscan/util/log.h"

#include <iostream>
#include <mutex>
#include <set>

namespace histoscan::log {

namespace {
Level g_level = Level::info;
std::mutex g_mutex;
}  // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

void info(const std::string& msg) {
  if (g_level < Level::info) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::cerr << msg << '\n';
}

void warn(const std::string& msg) {
  if (g_level < Level::warn) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::cerr << "warning: " << msg << '\n';
}

void debug(const std::string& msg) {
  if (g_level < Level::debug) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  std::cerr << msg << '\n';
}

void warn_once(const std::string& key, const std::string& msg) {
  static std::set<std::string> seen;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!seen.insert(key).second) return;
  }
  warn(msg);
}

}  // namespace histoscan::log
