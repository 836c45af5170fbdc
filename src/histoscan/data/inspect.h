#pragma once
// `histoscan inspect`: what a DATA argument holds, before anyone trains on it.
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "histoscan/data/source.h"

namespace histoscan::data {

struct InspectReport {
  std::string kind, description;
  std::size_t images = 0;  // image files (or HDF5 rows) found
  std::size_t negatives = 0, positives = 0, unlabeled = 0;
  std::vector<std::string> files_without_labels, labels_without_files;
  std::vector<std::pair<std::string, std::string>> unreadable;  // path, reason
  std::map<std::string, std::size_t> formats;                   // "96x96x3 8-bit" -> count
};

// Indexes `data` without requiring labels and decodes every image once (threads: 0 = all cores).
InspectReport inspect_source(const fs::path& data, const SourceOptions& options, int threads);

nlohmann::json to_json(const InspectReport& report);
// A human summary with a bar chart of the class balance.
std::string format_report(const InspectReport& report);

}  // namespace histoscan::data
