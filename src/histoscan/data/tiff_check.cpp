#include "histoscan/data/tiff_check.h"

#include <tiffio.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>

#include "histoscan/util/error.h"

namespace histoscan::data {

namespace {

// libtiff reads through these callbacks from a buffer in memory.
struct Buffer {
  const std::vector<unsigned char>& bytes;
  toff_t pos = 0;
};

tsize_t read_cb(thandle_t h, tdata_t dst, tsize_t n) {
  auto* b = static_cast<Buffer*>(h);
  toff_t left = b->pos < b->bytes.size() ? b->bytes.size() - b->pos : 0;
  tsize_t k = static_cast<tsize_t>(std::min<toff_t>(left, static_cast<toff_t>(n)));
  if (k > 0) std::memcpy(dst, b->bytes.data() + b->pos, static_cast<std::size_t>(k));
  b->pos += static_cast<toff_t>(k);
  return k;
}
tsize_t write_cb(thandle_t, tdata_t, tsize_t) { return 0; }
toff_t seek_cb(thandle_t h, toff_t off, int whence) {
  auto* b = static_cast<Buffer*>(h);
  toff_t base = whence == SEEK_CUR ? b->pos : whence == SEEK_END ? b->bytes.size() : 0;
  b->pos = base + off;
  return b->pos;
}
int close_cb(thandle_t) { return 0; }
toff_t size_cb(thandle_t h) { return static_cast<Buffer*>(h)->bytes.size(); }
int map_cb(thandle_t, tdata_t*, toff_t*) { return 0; }
void unmap_cb(thandle_t, tdata_t, toff_t) {}

bool starts_with(const std::vector<unsigned char>& b, std::initializer_list<unsigned char> magic) {
  return b.size() >= magic.size() && std::equal(magic.begin(), magic.end(), b.begin());
}

}  // namespace

void check_tiff(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  bool tiff_name = ext == ".tif" || ext == ".tiff";
  bool tiff_bytes = starts_with(bytes, {'I', 'I', 42, 0}) || starts_with(bytes, {'M', 'M', 0, 42}) ||
                    starts_with(bytes, {'I', 'I', 43, 0}) || starts_with(bytes, {'M', 'M', 0, 43});
  if (tiff_name && !tiff_bytes) {
    const char* what = starts_with(bytes, {0xFF, 0xD8, 0xFF})      ? "JPEG"
                       : starts_with(bytes, {0x89, 'P', 'N', 'G'}) ? "PNG"
                                                                   : nullptr;
    if (what)
      throw InputError(path.string() + ": a " + what + " file named " + ext + "; rename it to its real extension (." +
                       (std::string(what) == "JPEG" ? "jpg" : "png") + ")");
    return;  // not an image at all: the decoder says so
  }
  if (!tiff_bytes) return;
  static bool quiet = [] {
    TIFFSetErrorHandler(nullptr);
    TIFFSetWarningHandler(nullptr);
    return true;
  }();
  (void)quiet;
  Buffer buffer{bytes};
  TIFF* tif = TIFFClientOpen(path.c_str(), "rm", &buffer, read_cb, write_cb, seek_cb, close_cb, size_cb, map_cb, unmap_cb);
  if (!tif) return;  // damaged: the decoder reports it
  uint16_t bits = 8;
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFClose(tif);
  if (bits != 8)
    throw InputError(path.string() + ": a " + std::to_string(bits) + "-bit TIFF" + (bits == 1 ? " (black and white)" : "") +
                     "; histoscan reads 8-bit RGB patches, convert it to 8 bits per channel");
}

}  // namespace histoscan::data
