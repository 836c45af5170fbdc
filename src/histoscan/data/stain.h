#pragma once
// Stain normalization: every image recoloured to a reference's staining before a network sees
// it, so slides stained or scanned elsewhere look like the ones it was trained on.
//
//   macenko   Macenko et al., "A method for normalizing histology slides for quantitative
//             analysis", ISBI 2009: each image's haematoxylin and eosin vectors found in optical
//             density (the two extreme angles of its tissue pixels in the plane of the two main
//             directions), its stain amounts solved for, scaled so their 99th percentiles match
//             the reference's, and the image recomposed with the reference's stain vectors.
//   reinhard  Reinhard et al., "Color transfer between images", IEEE CG&A 2001: each image's
//             mean and standard deviation in the decorrelated l-alpha-beta space (Ruderman et al.)
//             matched, channel by channel, to the reference's.
//
// A reference is fitted once (to the training patches, or to an image the user gives), kept in
// the checkpoint's meta["stain_norm"] and applied by train (to train and valid), evaluate,
// predict and scan. Images are RGB bytes, pixels contiguous; no LibTorch.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace histoscan::data {

enum class StainMethod { none, macenko, reinhard };

// "none", "macenko" or "reinhard" -> the method; anything else: InputError naming `flag`.
StainMethod stain_method_of(const std::string& name, const std::string& flag = "--stain-norm");
std::string stain_method_name(StainMethod method);

// Macenko's constants, as in the paper's common implementation: light entering the tissue Io,
// the optical density below which a pixel counts as background (beta, in every channel), and the
// percentile of the angles taken as each stain's direction (alpha; 100 - alpha for the other).
inline constexpr double kMacenkoIo = 240.0, kMacenkoBeta = 0.15, kMacenkoAlpha = 1.0;
// An image with fewer tissue pixels than this is left as it is (its stain vectors would be noise).
inline constexpr std::size_t kMacenkoMinTissue = 64;

struct StainReference {
  StainMethod method = StainMethod::none;
  std::string fitted_on;  // what it was fitted to, for the checkpoint's record
  // macenko: unit optical-density vectors of haematoxylin and eosin (RGB), and the 99th
  // percentile of each stain's amount.
  std::array<std::array<double, 3>, 2> stains{};
  std::array<double, 2> max_amount{};
  // reinhard: the mean and standard deviation of l, alpha and beta.
  std::array<double, 3> mean{}, stdev{};
};

// One image's (or a pool of pixels') Macenko stain vectors and 99th-percentile amounts: the
// reference's fields for method macenko. Throws InputError when fewer than kMacenkoMinTissue
// pixels are tissue (`what` names the input in the message).
StainReference fit_macenko(const std::uint8_t* rgb, std::size_t pixels, const std::string& what);

// The reference for `method` fitted to `images` images of `pixels_per_image` pixels each:
// macenko pools the tissue pixels of up to 1,000 images spread over the set; reinhard averages
// each image's l-alpha-beta means and standard deviations. Deterministic.
StainReference fit_stain_reference(StainMethod method, const std::uint8_t* rgb, std::size_t pixels_per_image, std::size_t images,
                                   const std::string& fitted_on);

// The reference for `method` fitted to one image file of any size (--stain-ref); InputError
// naming the file when it cannot be read or holds too little tissue.
StainReference fit_stain_to_image(StainMethod method, const std::string& path);

// Recolours each of `images` images (pixels_per_image pixels each, in place) to `ref`, on
// `threads` threads (0: all cores). Method none does nothing. A macenko image with too little
// tissue (kMacenkoMinTissue) stays as it was.
void normalize_stain(const StainReference& ref, std::uint8_t* rgb, std::size_t pixels_per_image, std::size_t images,
                     int threads = 0);

// The reference as the checkpoint's meta["stain_norm"], and back. stain_from_json of a missing
// or null value is method none; a malformed one is an InputError naming `where`.
nlohmann::json to_json(const StainReference& ref);
StainReference stain_from_json(const nlohmann::json& j, const std::string& where);

// A checkpoint's meta["stain_norm"] (method none where it has none).
StainReference stain_of_model(const nlohmann::json& meta, const std::string& where);

// A copy of n patches (kPatchBytes each) recoloured to `ref`; the bytes themselves when ref's
// method is none (so scoring without normalization copies nothing).
const std::uint8_t* normalized_patches(const StainReference& ref, const std::uint8_t* pixels, std::size_t n,
                                       std::vector<std::uint8_t>& storage, int threads = 0);

}  // namespace histoscan::data
