#pragma once
// Outputs appear complete or not at all: everything is written to a temporary file in
// the destination's folder and renamed into place, so a crash never leaves a
// half-written file under its final name and never destroys what the user had.
#include <filesystem>
#include <functional>
#include <iosfwd>
#include <string>

namespace histoscan {

namespace fs = std::filesystem;

// A temporary path beside `target`; commit() renames it onto target, the destructor
// removes it when commit() was not reached (an exception unwound past it).
class AtomicPath {
 public:
  explicit AtomicPath(fs::path target);
  ~AtomicPath();
  AtomicPath(const AtomicPath&) = delete;
  AtomicPath& operator=(const AtomicPath&) = delete;
  const fs::path& temp() const { return temp_; }
  const fs::path& target() const { return target_; }
  void commit();  // throws std::runtime_error naming the file when the rename fails

 private:
  fs::path target_;
  fs::path temp_;
  bool committed_ = false;
};

// Writes target through `write`, atomically. Throws InputError when the folder cannot
// be written.
void write_file_atomic(const fs::path& target, const std::function<void(std::ostream&)>& write);

// Refuses (InputError naming `flag`) an output path that exists unless overwrite, and
// one whose parent folder is missing or not writable. Creates nothing.
void check_output_file(const fs::path& path, bool overwrite, const std::string& flag);

// Refuses (InputError naming `flag`, when given) an output folder that is a file, or a folder
// that holds anything unless overwrite. Creates nothing. Every command's output folder is
// checked here, so they all say the same.
void check_output_dir(const fs::path& dir, bool overwrite, const std::string& flag);

// Prepares an output folder: check_output_dir, then creates it (and parents) and checks it can
// be written.
void prepare_output_dir(const fs::path& dir, bool overwrite, const std::string& flag);

}  // namespace histoscan
