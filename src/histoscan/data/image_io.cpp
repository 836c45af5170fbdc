#include "histoscan/data/image_io.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/tiff_check.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::data {

namespace {

std::vector<unsigned char> read_bytes(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw InputError(path.string() + ": is a folder, expected an image file; move it out of the data folder");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(path.string() + ": cannot open the file (missing or permission denied); check its permissions");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw InputError(path.string() + ": the file is empty (0 bytes); remove it or replace it with the image");
  return bytes;
}

cv::Mat decode(const fs::path& path) {
  std::vector<unsigned char> bytes = read_bytes(path);
  check_tiff(path, bytes);
  cv::Mat img;
  try {
    img = cv::imdecode(bytes, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    img.release();
  }
  if (img.empty())
    throw InputError(
        path.string() +
        ": not a readable image (corrupt, truncated or not TIFF/JPEG/PNG); replace it or pass --skip-bad where offered");
  return img;
}

}  // namespace

void quiet_image_library() { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); }

bool is_image_file(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".tif" || ext == ".tiff" || ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

ImageInfo probe_image(const fs::path& path) {
  cv::Mat img = decode(path);
  int bits = img.depth() == CV_8U || img.depth() == CV_8S ? 8 : img.depth() == CV_16U || img.depth() == CV_16S ? 16 : 32;
  return {img.cols, img.rows, img.channels(), bits};
}

void decode_patch(const fs::path& path, std::uint8_t* out, const DecodeOptions& options) {
  cv::Mat img = decode(path);
  if (img.depth() != CV_8U)
    throw InputError(path.string() + ": " + std::to_string(img.elemSize1() * 8) +
                     "-bit image; histoscan reads 8-bit RGB patches, convert it to 8 bits per channel");
  cv::Mat rgb;
  switch (img.channels()) {
    case 3:
      cv::cvtColor(img, rgb, cv::COLOR_BGR2RGB);
      break;
    case 1:
      log::warn_once("gray", path.string() + " is grayscale: converting grayscale images to RGB (said once)");
      cv::cvtColor(img, rgb, cv::COLOR_GRAY2RGB);
      break;
    case 4:
      log::warn_once("rgba", path.string() + " has an alpha channel: dropping alpha from RGBA images (said once)");
      cv::cvtColor(img, rgb, cv::COLOR_BGRA2RGB);
      break;
    default:
      throw InputError(path.string() + ": " + std::to_string(img.channels()) + " channels; expected RGB, RGBA or grayscale");
  }
  if (rgb.cols != kPatchSide || rgb.rows != kPatchSide) {
    if (!options.resize)
      throw InputError(path.string() + ": image is " + std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows) +
                       ", expected 96x96; pass --resize to resize it or remove the file");
    cv::Mat resized;
    cv::resize(rgb, resized, cv::Size(kPatchSide, kPatchSide), 0, 0, cv::INTER_AREA);
    rgb = resized;
  }
  if (!rgb.isContinuous()) rgb = rgb.clone();
  std::memcpy(out, rgb.data, kPatchBytes);
}

void write_patch(const fs::path& path, const std::uint8_t* rgb) {
  cv::Mat img(kPatchSide, kPatchSide, CV_8UC3, const_cast<std::uint8_t*>(rgb));
  cv::Mat bgr;
  cv::cvtColor(img, bgr, cv::COLOR_RGB2BGR);
  std::vector<int> params;
  std::string ext = path.extension().string();
  if (ext == ".tif" || ext == ".tiff") params = {cv::IMWRITE_TIFF_COMPRESSION, 1};  // 1: none, as Kaggle ships
  std::vector<unsigned char> bytes;
  if (!cv::imencode(ext, bgr, bytes, params)) throw std::runtime_error("cannot encode " + path.string());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!f) throw InputError("cannot write " + path.string() + "; check the folder is writable and the disk has room");
}

}  // namespace histoscan::data
