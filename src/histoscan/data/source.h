#pragma once
// Finding the patches behind a DATA argument: a Kaggle folder with its labels CSV, class
// folders 0/ and 1/, a PCam HDF5 pair, a packed store, or a plain folder of images.
#include <filesystem>
#include <string>
#include <vector>

namespace histoscan::data {

namespace fs = std::filesystem;

enum class SourceKind { kaggle, class_folders, pcam_h5, packed, image_folder };
const char* to_string(SourceKind kind);

struct PatchEntry {
  std::string id;       // file stem, or the row number / stored id for HDF5
  fs::path path;        // the image file; empty for HDF5 rows
  int label = -1;       // 0, 1, or -1 when unknown
  std::size_t row = 0;  // row in the HDF5 file
};

struct PatchIndex {
  SourceKind kind = SourceKind::image_folder;
  fs::path data;                    // what the user gave
  fs::path image_dir;               // where the images are (folder kinds)
  fs::path labels_file;             // Kaggle labels CSV, when used
  fs::path x_file, y_file;          // HDF5 kinds (equal for a packed store; y empty when unlabeled)
  std::vector<PatchEntry> entries;  // sorted by id
  std::vector<fs::path> files_without_labels;
  std::vector<std::string> labels_without_files;
  std::vector<fs::path> ignored_files;  // files in image folders that are not images

  bool labeled() const;  // every entry has a label
  std::vector<int> labels() const;
  std::size_t count(int label) const;
  std::string describe() const;  // "Kaggle folder X with labels Y", for logs and metadata
};

struct SourceOptions {
  fs::path labels;             // --labels; empty: look for train_labels.csv in or beside the folder
  bool allow_missing = false;  // files without labels / labels without files are not errors
  bool require_labels = true;  // train and evaluate need labels; predict and pack do not
};

// Indexes `data`. Throws InputError naming the path and what to do when it does not exist,
// holds no images, has duplicate ids, or (require_labels) lacks labels or has
// unmatched files/labels without allow_missing.
PatchIndex index_source(const fs::path& data, const SourceOptions& options = {});

}  // namespace histoscan::data
