#include "histoscan/data/source.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "histoscan/data/hdf5_io.h"
#include "histoscan/data/image_io.h"
#include "histoscan/data/labels_csv.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::data {

const char* to_string(SourceKind kind) {
  switch (kind) {
    case SourceKind::kaggle:
      return "kaggle";
    case SourceKind::class_folders:
      return "class-folders";
    case SourceKind::pcam_h5:
      return "pcam-h5";
    case SourceKind::packed:
      return "packed";
    case SourceKind::image_folder:
      return "image-folder";
  }
  return "?";
}

bool PatchIndex::labeled() const {
  return !entries.empty() && std::all_of(entries.begin(), entries.end(), [](const PatchEntry& e) { return e.label >= 0; });
}

std::vector<int> PatchIndex::labels() const {
  std::vector<int> out;
  out.reserve(entries.size());
  for (const auto& e : entries) out.push_back(e.label);
  return out;
}

std::size_t PatchIndex::count(int label) const {
  return std::count_if(entries.begin(), entries.end(), [&](const PatchEntry& e) { return e.label == label; });
}

std::string PatchIndex::describe() const {
  switch (kind) {
    case SourceKind::kaggle:
      return "Kaggle folder " + image_dir.string() + " with labels " + labels_file.string();
    case SourceKind::class_folders:
      return "class folders " + image_dir.string() + "/{0,1}";
    case SourceKind::pcam_h5:
      return "PCam HDF5 " + x_file.string() + (y_file.empty() ? "" : " + " + y_file.string());
    case SourceKind::packed:
      return "packed store " + x_file.string();
    case SourceKind::image_folder:
      return "image folder " + image_dir.string();
  }
  return data.string();
}

namespace {

// Images directly in `dir`, keyed by stem; other files go to `ignored`.
std::vector<fs::path> list_images(const fs::path& dir, std::vector<fs::path>& ignored) {
  std::vector<fs::path> images;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw InputError(dir.string() + ": cannot list the folder (" + ec.message() + "); check its permissions");
  for (const auto& entry : it) {
    if (is_image_file(entry.path())) images.push_back(entry.path());
    else if (!entry.is_directory()) ignored.push_back(entry.path());
  }
  std::sort(images.begin(), images.end());
  return images;
}

void add_unique(std::vector<PatchEntry>& entries, std::unordered_map<std::string, fs::path>& seen, PatchEntry e) {
  auto [it, inserted] = seen.emplace(e.id, e.path);
  if (!inserted)
    throw InputError("duplicate id " + e.id + ": " + it->second.string() + " and " + e.path.string() +
                     "; each patch id must appear once, remove one of them");
  entries.push_back(std::move(e));
}

PatchIndex index_h5_unchecked(const fs::path& data, const SourceOptions& options) {
  std::size_t n = h5_count_patches(data);  // first: is it HDF5 at all, and is x the right shape
  PatchIndex index;
  index.data = data;
  index.x_file = data;
  std::string name = data.filename().string();
  bool is_pcam_x = name.size() > 5 && name.compare(name.size() - 5, 5, "_x.h5") == 0;
  if (h5_has_dataset(data, "ids") || !is_pcam_x) {
    index.kind = SourceKind::packed;
    if (h5_has_dataset(data, "y")) index.y_file = data;
  } else {
    index.kind = SourceKind::pcam_h5;
    fs::path y = data.parent_path() / (name.substr(0, name.size() - 5) + "_y.h5");
    if (fs::exists(y)) index.y_file = y;
    else if (options.require_labels)
      throw InputError(data.string() + ": its labels file " + y.string() + " is missing; put PCam's _y.h5 beside it");
  }
  std::vector<std::string> ids;
  if (h5_has_dataset(data, "ids")) {
    ids = h5_read_ids(data);
    if (ids.size() != n)
      throw InputError(data.string() + ": 'ids' holds " + std::to_string(ids.size()) + " entries but 'x' " + std::to_string(n));
  }
  std::vector<int> labels;
  if (!index.y_file.empty()) {
    labels = h5_read_labels(index.y_file);
    if (labels.size() != n)
      throw InputError(index.y_file.string() + ": 'y' holds " + std::to_string(labels.size()) + " labels but " + data.string() +
                       " holds " + std::to_string(n) + " images; use the matching pair of files");
  } else if (options.require_labels) {
    throw InputError(data.string() + ": holds no labels (dataset 'y'); labels are needed here");
  }
  if (n == 0) throw InputError(data.string() + ": holds no patches");
  std::unordered_map<std::string, fs::path> seen;
  for (std::size_t i = 0; i < n; ++i) {
    PatchEntry e;
    e.id = ids.empty() ? std::to_string(i) : ids[i];
    e.row = i;
    e.label = labels.empty() ? -1 : labels[i];
    e.path = "row " + std::to_string(i);
    add_unique(index.entries, seen, std::move(e));
  }
  for (auto& e : index.entries) e.path.clear();
  return index;
}

// HDF5 parses a file's metadata itself and crashes on some damaged files: the same reads,
// plus the first and last rows of x, run in a child process first; errors (not crashes) are
// then met and reported by the reads here.
// arg: "1" or "0" (require_labels), then the path.
void probe_h5(const std::string& arg) {
  SourceOptions options;
  options.require_labels = arg[0] == '1';
  auto index = index_h5_unchecked(arg.substr(1), options);
  std::vector<std::size_t> rows{0};
  if (index.entries.size() > 1) rows.push_back(index.entries.size() - 1);
  std::vector<std::uint8_t> pixels(rows.size() * kPatchBytes);
  h5_read_patches(index.x_file, rows, pixels.data());
}

PatchIndex index_h5(const fs::path& data, const SourceOptions& options) {
  h5_probe_isolated(data, probe_h5, (options.require_labels ? "1" : "0") + data.string());
  return index_h5_unchecked(data, options);
}

fs::path find_labels(const fs::path& dir, const SourceOptions& options) {
  if (!options.labels.empty()) {
    if (!fs::exists(options.labels)) throw InputError("--labels " + options.labels.string() + " does not exist");
    return options.labels;
  }
  for (const fs::path& candidate : {dir / "train_labels.csv", dir.parent_path() / "train_labels.csv"})
    if (fs::is_regular_file(candidate)) return candidate;
  return {};
}

}  // namespace

PatchIndex index_source(const fs::path& data, const SourceOptions& options) {
  if (!fs::exists(data))
    throw InputError(data.string() + " does not exist; give a folder of patches, a labels folder or an .h5 file");
  if (!fs::is_directory(data)) {
    if (data.extension() == ".h5" || data.extension() == ".hdf5") return index_h5(data, options);
    throw InputError(data.string() + " is a file; give a folder of patches, class folders 0/ and 1/, or a PCam/packed .h5 file");
  }

  PatchIndex index;
  index.data = data;
  std::unordered_map<std::string, fs::path> seen;

  // Class folders: DATA/0 and DATA/1.
  if (fs::is_directory(data / "0") || fs::is_directory(data / "1")) {
    index.kind = SourceKind::class_folders;
    index.image_dir = data;
    for (int label : {0, 1}) {
      fs::path dir = data / std::to_string(label);
      if (!fs::is_directory(dir)) continue;
      for (auto& path : list_images(dir, index.ignored_files))
        add_unique(index.entries, seen, {path.stem().string(), path, label, 0});
    }
  } else {
    // Kaggle: images in DATA (or DATA/train when DATA is the competition folder) + labels CSV.
    fs::path dir = data;
    if (fs::is_directory(data / "train") && fs::is_regular_file(data / "train_labels.csv")) dir = data / "train";
    index.image_dir = dir;
    for (auto& path : list_images(dir, index.ignored_files)) add_unique(index.entries, seen, {path.stem().string(), path, -1, 0});
    index.labels_file = find_labels(dir, options);
    if (!index.labels_file.empty()) {
      index.kind = SourceKind::kaggle;
      auto labels = read_labels_csv(index.labels_file);
      std::unordered_set<std::string> matched;
      for (auto& e : index.entries) {
        auto it = labels.find(e.id);
        if (it == labels.end()) {
          index.files_without_labels.push_back(e.path);
        } else {
          e.label = it->second;
          matched.insert(e.id);
        }
      }
      for (const auto& [id, label] : labels)
        if (!matched.count(id)) index.labels_without_files.push_back(id);
      std::sort(index.labels_without_files.begin(), index.labels_without_files.end());
      // Unlabeled files stay in the index only where labels are not needed (predict, inspect).
      if (options.require_labels)
        index.entries.erase(
            std::remove_if(index.entries.begin(), index.entries.end(), [](const PatchEntry& e) { return e.label < 0; }),
            index.entries.end());
    } else {
      index.kind = SourceKind::image_folder;
    }
  }

  if (index.entries.empty() && index.files_without_labels.empty())
    throw InputError(
        data.string() +
        ": no images found (.tif, .jpg, .png); for training give class folders 0/ and 1/ or a folder with train_labels.csv");
  auto& ignored = index.ignored_files;  // the labels file beside the images is expected there
  ignored.erase(
      std::remove_if(ignored.begin(), ignored.end(),
                     [&](const fs::path& p) { return !index.labels_file.empty() && fs::equivalent(p, index.labels_file); }),
      ignored.end());
  if (!index.ignored_files.empty())
    log::warn(std::to_string(index.ignored_files.size()) + " files in " + index.image_dir.string() +
              " are not images and were ignored (first: " + index.ignored_files.front().filename().string() + ")");

  if (options.require_labels) {
    if (index.kind == SourceKind::image_folder)
      throw InputError(
          data.string() +
          ": no labels found; put class folders 0/ and 1/ in it, put train_labels.csv in or beside it, or pass --labels FILE");
    std::size_t missing = index.files_without_labels.size() + index.labels_without_files.size();
    if (missing && !options.allow_missing) {
      std::string first = !index.files_without_labels.empty()
                              ? "file " + index.files_without_labels.front().string() + " has no label"
                              : "id " + index.labels_without_files.front() + " has no file";
      throw InputError(index.labels_file.string() + ": " + std::to_string(index.files_without_labels.size()) +
                       " files without labels and " + std::to_string(index.labels_without_files.size()) +
                       " labels without files (" + first + "); fix them or pass --allow-missing to use the matched ones");
    }
    if (index.entries.empty())
      throw InputError(data.string() +
                       ": no image has a label; check the labels file's ids are the file names without extension");
  }
  std::sort(index.entries.begin(), index.entries.end(), [](const PatchEntry& a, const PatchEntry& b) { return a.id < b.id; });
  return index;
}

}  // namespace histoscan::data
