#include "histoscan/data/inspect.h"

#include <cmath>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "histoscan/data/hdf5_io.h"
#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"
#include "histoscan/util/parallel.h"

namespace histoscan::data {

InspectReport inspect_source(const fs::path& data, const SourceOptions& options, int threads) {
  SourceOptions opts = options;
  opts.require_labels = false;
  opts.allow_missing = true;
  PatchIndex index = index_source(data, opts);

  InspectReport r;
  r.kind = to_string(index.kind);
  r.description = index.describe();
  r.images = index.entries.size();
  for (const auto& e : index.entries) (e.label == 0 ? r.negatives : e.label == 1 ? r.positives : r.unlabeled)++;
  for (const auto& p : index.files_without_labels) r.files_without_labels.push_back(p.string());
  r.labels_without_files = index.labels_without_files;

  if (index.kind == SourceKind::pcam_h5 || index.kind == SourceKind::packed) {
    r.formats["96x96x3 8-bit"] = index.entries.size();  // h5_count_patches checked the shape
    return r;
  }
  std::vector<ImageInfo> infos(index.entries.size());
  std::vector<std::string> errors(index.entries.size());
  parallel_for(index.entries.size(), threads, [&](std::size_t i) {
    try {
      infos[i] = probe_image(index.entries[i].path);
    } catch (const InputError& e) {
      errors[i] = e.what();
    }
  });
  for (std::size_t i = 0; i < infos.size(); ++i) {
    if (!errors[i].empty()) {
      r.unreadable.emplace_back(index.entries[i].path.string(), errors[i]);
      continue;
    }
    const auto& info = infos[i];
    r.formats[std::to_string(info.width) + "x" + std::to_string(info.height) + "x" + std::to_string(info.channels) + " " +
              std::to_string(info.bits) + "-bit"]++;
  }
  return r;
}

nlohmann::json to_json(const InspectReport& r) {
  nlohmann::json unreadable = nlohmann::json::array();
  for (const auto& [path, reason] : r.unreadable) unreadable.push_back({{"path", path}, {"reason", reason}});
  return {{"kind", r.kind},
          {"source", r.description},
          {"images", r.images},
          {"classes", {{"0", r.negatives}, {"1", r.positives}}},
          {"unlabeled", r.unlabeled},
          {"files_without_labels", r.files_without_labels},
          {"labels_without_files", r.labels_without_files},
          {"unreadable", unreadable},
          {"formats", r.formats}};
}

std::string format_report(const InspectReport& r) {
  std::ostringstream out;
  out << r.description << " (" << r.kind << ")\n";
  out << "images: " << r.images << "\n\n";
  std::size_t labeled = r.negatives + r.positives;
  auto bar = [&](const char* name, std::size_t count) {
    const int width = 40;
    double frac = labeled ? double(count) / double(labeled) : 0.0;
    int filled = static_cast<int>(std::lround(frac * width));
    char pct[16];
    std::snprintf(pct, sizeof pct, "%5.1f%%", 100 * frac);
    out << "  " << name << " |" << std::string(std::size_t(filled), '#') << std::string(std::size_t(width - filled), ' ') << "| "
        << count << " (" << pct << ")\n";
  };
  out << "class balance\n";
  bar("0 normal", r.negatives);
  bar("1 tumour", r.positives);
  if (r.unlabeled) out << "  unlabeled: " << r.unlabeled << "\n";
  out << "\nformats\n";
  for (const auto& [format, count] : r.formats) out << "  " << format << ": " << count << "\n";
  auto list = [&](const char* title, const std::vector<std::string>& items) {
    out << title << ": " << items.size();
    for (std::size_t i = 0; i < items.size() && i < 5; ++i) out << (i ? ", " : " (") << items[i];
    out << (items.size() > 5 ? ", ...)" : items.empty() ? "" : ")") << "\n";
  };
  out << "\n";
  list("files without labels", r.files_without_labels);
  list("labels without files", r.labels_without_files);
  out << "unreadable files: " << r.unreadable.size() << "\n";
  for (std::size_t i = 0; i < r.unreadable.size() && i < 5; ++i) out << "  " << r.unreadable[i].second << "\n";
  return out.str();
}

}  // namespace histoscan::data
