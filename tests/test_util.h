#pragma once
// Helpers shared by the tests: a temporary folder that cleans up after itself, small files.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "histoscan/util/error.h"

namespace histoscan::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("histoscan-test-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// The message of the InputError that f() throws; "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

inline void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
}

inline std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The lines of a CSV file (plain fields, no quoting) with field `column` (0-based) emptied:
// a column that differs between runs, such as a time.
inline std::vector<std::string> csv_without_column(const fs::path& path, std::size_t column) {
  std::vector<std::string> rows;
  for (const auto& line : lines_of(read_text(path))) {
    std::string row;
    std::size_t field = 0, start = 0;
    for (std::size_t end = 0; end <= line.size(); ++end) {
      if (end < line.size() && line[end] != ',') continue;
      if (field) row += ',';
      if (field != column) row += line.substr(start, end - start);
      ++field, start = end + 1;
    }
    rows.push_back(row);
  }
  return rows;
}

// A JSON fixture of tests/fixtures/, read once per process by the caller's static.
inline nlohmann::json read_fixture(const std::string& name) {
  const std::string path = std::string(HISTOSCAN_SOURCE_DIR) + "/tests/fixtures/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

// The default built-in model's entry in models/models.json (its card: command, data, metrics).
inline nlohmann::json default_model_card() {
  const auto index = nlohmann::json::parse(read_text(fs::path(HISTOSCAN_SOURCE_DIR) / "models/models.json"));
  for (const auto& m : index["models"])
    if (m["name"] == index["default"]) return m;
  return {};
}

// Whether models/README.md states `auc` as it prints it (four decimals).
inline bool models_readme_states(double auc) {
  char text[16];
  std::snprintf(text, sizeof text, "%.4f", auc);
  return read_text(fs::path(HISTOSCAN_SOURCE_DIR) / "models/README.md").find(text) != std::string::npos;
}

// Path of the team's real data, or empty when it is not there (tests then skip).
inline fs::path shared_data(const std::string& sub) {
  fs::path p = fs::path(HISTOSCAN_SHARED_DATA) / sub;
  return fs::exists(p) ? p : fs::path();
}

}  // namespace histoscan::test
