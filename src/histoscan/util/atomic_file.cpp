#include "histoscan/util/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <system_error>

#include "histoscan/util/error.h"

namespace histoscan {

namespace {

fs::path temp_beside(const fs::path& target) {
  static std::atomic<unsigned> counter{0};
  fs::path dir = target.parent_path();
  std::string name = "." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  return dir.empty() ? fs::path(name) : dir / name;
}

bool dir_writable(const fs::path& dir) { return ::access(dir.empty() ? "." : dir.c_str(), W_OK | X_OK) == 0; }

}  // namespace

AtomicPath::AtomicPath(fs::path target) : target_(std::move(target)), temp_(temp_beside(target_)) {
  fs::path dir = target_.parent_path();
  if (!dir.empty() && !fs::is_directory(dir))
    throw InputError("cannot write " + target_.string() + ": folder " + dir.string() +
                     " does not exist; create it or choose another output");
  if (!dir_writable(dir))
    throw InputError("cannot write " + target_.string() + ": folder " + (dir.empty() ? std::string(".") : dir.string()) +
                     " is not writable; choose another output");
}

AtomicPath::~AtomicPath() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void AtomicPath::commit() {
  std::error_code ec;
  fs::rename(temp_, target_, ec);
  if (ec) throw std::runtime_error("cannot move " + temp_.string() + " to " + target_.string() + ": " + ec.message());
  committed_ = true;
}

void write_file_atomic(const fs::path& target, const std::function<void(std::ostream&)>& write) {
  AtomicPath out(target);
  {
    std::ofstream f(out.temp(), std::ios::binary | std::ios::trunc);
    if (!f)
      throw InputError("cannot write " + target.string() + ": opening a temporary file failed; check the folder's permissions");
    write(f);
    f.flush();
    if (!f) throw InputError("cannot write " + target.string() + ": the write failed (disk full?)");
  }
  out.commit();
}

void check_output_file(const fs::path& path, bool overwrite, const std::string& flag) {
  if (fs::is_directory(path)) throw InputError(flag + " " + path.string() + " is a folder; give a file name");
  if (fs::exists(path) && !overwrite)
    throw InputError(flag + " " + path.string() + " exists; pass --overwrite to replace it or choose another name");
  fs::path dir = path.parent_path();
  if (!dir.empty() && !fs::is_directory(dir))
    throw InputError(flag + " " + path.string() + ": folder " + dir.string() + " does not exist; create it first");
  if (!dir_writable(dir)) throw InputError(flag + " " + path.string() + ": folder is not writable; choose another place");
}

void check_output_dir(const fs::path& dir, bool overwrite, const std::string& flag) {
  const std::string name = (flag.empty() ? "" : flag + " ") + dir.string();
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir)) throw InputError(name + " is a file; give a folder");
  if (!fs::is_empty(dir) && !overwrite)
    throw InputError(name + " exists; pass --overwrite to write into it or choose another folder");
}

void prepare_output_dir(const fs::path& dir, bool overwrite, const std::string& flag) {
  check_output_dir(dir, overwrite, flag);
  if (!fs::exists(dir)) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
      throw InputError(flag + " " + dir.string() + ": cannot create the folder (" + ec.message() + "); choose another place");
  }
  if (!dir_writable(dir)) throw InputError(flag + " " + dir.string() + " is not writable; choose another folder");
}

}  // namespace histoscan
