#pragma once
// Training augmentation as batched tensor operations (never per-pixel loops); the preprocessing
// training and inference share is model/preprocess.h.
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace histoscan::train {

// Which rows of a batch x holds. A data-parallel rank augments its share of the batch: the
// random draws are made for all `total` rows (every rank draws the same), and x gets those
// of rows [offset, offset + x.size(0)), as one process holding the whole batch would.
struct BatchSlice {
  int64_t offset = 0;
  int64_t total = -1;  // -1: x is the whole batch
};

// Random horizontal and vertical flips, each with probability 0.5 per image, drawn from rng.
torch::Tensor random_flips(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice = {});

// Random rotations by 0, 90, 180 or 270 degrees per image (with random_flips: all 8
// symmetries of the square, which leave a tissue patch's label unchanged).
torch::Tensor random_rot90(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice = {});

// Stain and colour variation between slides, per image on [0, 1] RGB: each channel scaled by
// a gain in [1 - strength, 1 + strength] and shifted by up to strength / 2, and the
// saturation scaled within [1 - 2 strength, 1 + 2 strength]; clamped to [0, 1].
torch::Tensor random_colour(const torch::Tensor& x, std::mt19937_64& rng, double strength, BatchSlice slice = {});

// Stain variation between labs in H&E's own terms (Tellez et al., 2018): each image's optical
// density -ln(RGB) is split into haematoxylin, eosin and residual (DAB) by the stain matrix of
// Ruifrok and Johnston (scikit-image's hed_from_rgb), each stain's amount scaled by a factor in
// [1 - strength, 1 + strength] and shifted by up to +-strength, and the image recomposed; [0, 1].
// The result has x's layout (NCHW or channels-last).
torch::Tensor random_hed(const torch::Tensor& x, std::mt19937_64& rng, double strength, BatchSlice slice = {});

// A random translation of each image by up to max_shift pixels in each direction (the border
// filled by reflection), so a network that looks at the centre sees its cells at varying
// places. max_shift must be below the image's side; 0 returns x.
torch::Tensor random_shift(const torch::Tensor& x, std::mt19937_64& rng, int64_t max_shift, BatchSlice slice = {});

// Training augmentation by name: "flips" (the notebook's), "dihedral" (flips and 90-degree
// rotations), "dihedral-colour" (= dihedral+colour), "dihedral-hed" (= dihedral+hed), or steps
// joined by '+', applied in that order: flips, dihedral, colour[=S] (random_colour, strength S,
// default 0.1), hed[=S] (random_hed, default 0.05), shift[=P] (random_shift, default 16 pixels).
// Throws InputError for anything else.
class Augmentation {
 public:
  explicit Augmentation(const std::string& spec);  // parsed once, here
  torch::Tensor operator()(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice = {}) const;

 private:
  struct Step {
    std::string name;
    double value;
  };
  static std::vector<Step> parse(const std::string& spec);
  std::vector<Step> steps_;
};

// Augmentation(name)(x, rng, slice): for one batch.
torch::Tensor augment(const torch::Tensor& x, const std::string& name, std::mt19937_64& rng, BatchSlice slice = {});

// --mixup (Zhang et al. 2018): the weight of each row's own patch in one batch, max(u, 1 - u)
// with u ~ Beta(alpha, alpha) drawn from rng (as the ratio of two Gamma(alpha) draws); in
// [0.5, 1]. alpha must be positive.
double mixup_weight(double alpha, std::mt19937_64& rng);

// A batch mixed in pairs: row i of x becomes lam * x[i] + (1 - lam) * x[n-1-i] (n = x.size(0)),
// and target i lam * y[i] + (1 - lam) * y[n-1-i]. x keeps its layout.
std::pair<torch::Tensor, torch::Tensor> mix_rows(const torch::Tensor& x, const torch::Tensor& y, double lam);

// --label-smoothing: targets y moved towards 1/2, y (1 - eps) + eps / 2; eps 0 returns y.
torch::Tensor smooth_targets(const torch::Tensor& y, double eps);

}  // namespace histoscan::train
