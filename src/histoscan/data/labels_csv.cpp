#include "histoscan/data/labels_csv.h"

#include "histoscan/util/csv.h"

#include "histoscan/util/error.h"

namespace histoscan::data {

std::vector<CsvPair> read_csv_pair(const fs::path& path, const std::string& key_column, const std::string& value_column) {
  if (fs::is_directory(path)) throw InputError(path.string() + " is a folder, not a CSV file; give the labels file itself");
  if (!fs::exists(path)) throw InputError(path.string() + " does not exist");
  std::vector<CsvPair> rows;
  try {
    CsvReader<2> reader(path.string());
    reader.read_header(io::ignore_extra_column, key_column, value_column);
    std::string key, value;
    while (reader.read_row(key, value)) {
      rows.push_back({key, value, reader.get_file_line()});
    }
  } catch (const io::error::missing_column_in_header& e) {
    throw InputError(path.string() + ": the header has no '" + e.column_name +
                     "' column; the first line must name the columns, e.g. '" + key_column + "," + value_column + "'");
  } catch (const io::error::can_not_open_file&) {
    throw InputError(path.string() + ": cannot open the file; check it exists and is readable");
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + "; fix the CSV (" + key_column + "," + value_column + ")");
  }
  return rows;
}

std::unordered_map<std::string, int> read_labels_csv(const fs::path& path) {
  std::unordered_map<std::string, int> labels;
  std::unordered_map<std::string, unsigned> first_line;
  for (const auto& row : read_csv_pair(path, "id", "label")) {
    if (row.key.empty()) throw InputError(path.string() + " line " + std::to_string(row.line) + ": empty id");
    int label;
    if (row.value == "0") label = 0;
    else if (row.value == "1") label = 1;
    else
      throw InputError(path.string() + " line " + std::to_string(row.line) + ": label '" + row.value + "' of id " + row.key +
                       " is not 0 or 1; labels must be 0 (no tumour) or 1 (tumour)");
    auto [it, inserted] = labels.emplace(row.key, label);
    if (!inserted) {
      if (it->second != label)
        throw InputError(path.string() + " line " + std::to_string(row.line) + ": id " + row.key +
                         " appears again with a different label (first on line " + std::to_string(first_line[row.key]) +
                         "); keep one row per id");
      continue;
    }
    first_line[row.key] = row.line;
  }
  return labels;
}

std::unordered_map<std::string, std::string> read_groups_csv(const fs::path& path) {
  std::unordered_map<std::string, std::string> groups;
  for (const auto& row : read_csv_pair(path, "id", "group")) {
    auto [it, inserted] = groups.emplace(row.key, row.value);
    if (!inserted && it->second != row.value)
      throw InputError(path.string() + " line " + std::to_string(row.line) + ": id " + row.key +
                       " is given two groups; keep one row per id");
  }
  return groups;
}

}  // namespace histoscan::data
