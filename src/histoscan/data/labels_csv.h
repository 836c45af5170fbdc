#pragma once
// Reading `id,label` (Kaggle's train_labels.csv) and `id,group` files.
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace histoscan::data {

namespace fs = std::filesystem;

struct CsvPair {
  std::string key, value;
  unsigned line = 0;  // 1-based line in the file, for messages
};

// Reads the columns `key_column` and `value_column` of a CSV with a header row. Accepts a
// UTF-8 byte-order mark, CRLF line ends, quoted fields and extra columns. Throws
// InputError naming the file (and line) when it cannot be read or a column is missing.
std::vector<CsvPair> read_csv_pair(const fs::path& path, const std::string& key_column, const std::string& value_column);

// id -> label from a labels CSV. Labels must be 0 or 1, ids unique (a repeated id with the
// same label is tolerated, with conflicting labels it is an error); each violation is an
// InputError naming the file, line and id.
std::unordered_map<std::string, int> read_labels_csv(const fs::path& path);

// id -> group (e.g. slide) from an `id,group` CSV; ids must be unique.
std::unordered_map<std::string, std::string> read_groups_csv(const fs::path& path);

}  // namespace histoscan::data
