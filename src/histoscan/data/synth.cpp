#include "histoscan/data/synth.h"

#include <cstring>
#include <fstream>
#include <random>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::data {

namespace {

void draw_nuclei(cv::Mat& img, std::mt19937_64& rng, int count, cv::Rect area, float min_r, float max_r, cv::Scalar colour,
                 double darkness) {
  std::uniform_real_distribution<float> x(float(area.x), float(area.x + area.width));
  std::uniform_real_distribution<float> y(float(area.y), float(area.y + area.height));
  std::uniform_real_distribution<float> r(min_r, max_r);
  std::uniform_real_distribution<float> angle(0, 180);
  std::uniform_real_distribution<double> shade(0.85, 1.15);
  for (int i = 0; i < count; ++i) {
    float a = r(rng), b = a * std::uniform_real_distribution<float>(0.6f, 1.0f)(rng);
    double s = shade(rng) * darkness;
    cv::ellipse(img, cv::Point2f(x(rng), y(rng)), cv::Size2f(a, b), angle(rng), 0, 360,
                cv::Scalar(colour[0] * s, colour[1] * s, colour[2] * s), cv::FILLED, cv::LINE_AA);
  }
}

std::string hex_id(std::mt19937_64& rng) {
  static const char* digits = "0123456789abcdef";
  std::string id(40, '0');
  for (auto& c : id) c = digits[rng() & 15];
  return id;
}

}  // namespace

void synth_patch(bool tumour, std::uint64_t seed, std::uint8_t* out) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  // Stain varies per patch, as between slides and scanners.
  cv::Scalar eosin(225 + 20 * u(rng), 150 + 40 * u(rng), 195 + 30 * u(rng));      // RGB pink
  cv::Scalar hematoxylin(70 + 40 * u(rng), 40 + 30 * u(rng), 120 + 40 * u(rng));  // RGB purple
  cv::Mat img(kPatchSide, kPatchSide, CV_32FC3, eosin);
  cv::Mat noise(kPatchSide, kPatchSide, CV_32FC3);
  cv::randn(noise, 0, 12);
  cv::GaussianBlur(noise, noise, cv::Size(5, 5), 1.5);
  img += noise;
  // Pale stroma streaks and scattered small nuclei everywhere, in both classes.
  int streaks = 2 + int(rng() % 4);
  for (int i = 0; i < streaks; ++i)
    cv::line(img, cv::Point(int(rng() % 96), int(rng() % 96)), cv::Point(int(rng() % 96), int(rng() % 96)),
             cv::Scalar(245, 215, 235), 2 + int(rng() % 4), cv::LINE_AA);
  draw_nuclei(img, rng, 10 + int(rng() % 20), cv::Rect(0, 0, 96, 96), 1.5f, 3.0f, hematoxylin, 1.0);
  if (tumour) {
    // Crowded, enlarged, darker nuclei in the centre 32x32: what carries the label.
    draw_nuclei(img, rng, 14 + int(rng() % 10), cv::Rect(34, 34, 28, 28), 3.0f, 5.5f, hematoxylin, 0.7);
  } else if (u(rng) < 0.5) {
    draw_nuclei(img, rng, 2 + int(rng() % 4), cv::Rect(32, 32, 32, 32), 1.5f, 3.0f, hematoxylin, 1.0);
  }
  cv::GaussianBlur(img, img, cv::Size(3, 3), 0.6);
  cv::Mat bytes;
  img.convertTo(bytes, CV_8UC3);  // saturates to 0..255
  std::memcpy(out, bytes.data, kPatchBytes);
}

void write_synthetic_dataset(const std::filesystem::path& dir, const SynthOptions& options) {
  namespace fs = std::filesystem;
  check_output_dir(dir, options.overwrite, "");
  fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  fs::create_directories(parent);
  fs::path tmp = parent / ("." + dir.filename().string() + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp / "train");
  fs::create_directories(tmp / "test");
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::uint8_t> pixels(kPatchBytes);
  {
    std::ofstream labels(tmp / "train_labels.csv");
    labels << "id,label\n";
    for (std::size_t i = 0; i < options.train; ++i) {
      bool tumour = u(rng) < options.positive_fraction;
      std::string id = hex_id(rng);
      synth_patch(tumour, rng(), pixels.data());
      write_patch(tmp / "train" / (id + ".tif"), pixels.data());
      labels << id << ',' << (tumour ? 1 : 0) << '\n';
    }
    if (!labels) throw InputError("cannot write " + (tmp / "train_labels.csv").string() + " (disk full?)");
  }
  {
    // Kaggle keeps the test labels; the synthetic set hands its answer key over so the
    // demo can evaluate on patches that training never saw.
    std::ofstream key(tmp / "test_labels.csv");
    key << "id,label\n";
    for (std::size_t i = 0; i < options.test; ++i) {
      bool tumour = u(rng) < options.positive_fraction;
      std::string id = hex_id(rng);
      synth_patch(tumour, rng(), pixels.data());
      write_patch(tmp / "test" / (id + ".tif"), pixels.data());
      key << id << ',' << (tumour ? 1 : 0) << '\n';
    }
    if (!key) throw InputError("cannot write " + (tmp / "test_labels.csv").string() + " (disk full?)");
  }
  if (fs::exists(dir)) fs::remove_all(dir);
  fs::rename(tmp, dir);
}

}  // namespace histoscan::data
