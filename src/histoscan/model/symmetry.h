#pragma once
// Rotation- and mirror-equivariant training of resnet by weight tying (--model-option
// symmetry=d4).
//
// A tissue patch has no up and no left: its label is the same under the eight symmetries of
// the square (quarter turns, and each of them mirrored: the dihedral group D4). A network can
// be built so that its output is too (group convolutions, Cohen & Welling 2016; on PCam,
// Veeling et al. 2018). In such a network each layer's channels come in groups of eight, one
// per orientation, and a layer's weights are determined by one eighth of them: the filter of
// orientation g is the base filter turned by g, reading its input orientations in g's order.
// Such a network is an ordinary resnet whose weights are constant on orbits of the group's
// action on the weights; nothing else changes.
//
// DihedralTying keeps a resnet's weights on that subspace while it trains. Channel c * 8 + g
// of every layer is field c in orientation g; element g = 4 m + k of D4 mirrors left-right
// when m is 1 and then turns k quarter turns anticlockwise (torch::rot90). The group acts on a
// convolution weight [O, I, k, k] by turning the kernel and relabelling both channel
// orientations (the first convolution reads RGB, which has none), on BatchNorm's vectors and
// the last linear layer's inputs by relabelling orientations. The projection onto the tied
// weights is the mean over the eight images of a tensor under the action (each element's
// orbit has exactly eight members). Projecting the gradients before each step keeps Adam's
// moments, and so its steps, equal along every orbit: the network trains as one with an
// eighth of the parameters. The output is then invariant under the eight symmetries of
// the input wherever the grid has a centre that they fix (odd sides at every stride 2, as
// 33 -> 17 -> 9 -> 5 -> 3); on 96 x 96 patches, whose stride-2 grids are offset by half a
// pixel under a turn, approximately. A checkpoint holds the expanded weights: evaluate,
// predict, scan and every export read it as the plain resnet it is.
#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <nlohmann/json.hpp>

namespace histoscan::model {

// Whether a network's model options ask for it to train tied (resnet's symmetry=d4).
bool ties_dihedral(const nlohmann::json& model_options);

class DihedralTying {
 public:
  // The tied tensors of `net` (a resnet whose width is a multiple of 8): every convolution,
  // BatchNorm and linear layer. Throws InputError naming a parameter whose shape has no
  // orientation axis to tie (a width not a multiple of 8, a network other than resnet).
  explicit DihedralTying(torch::nn::Module& net);

  // Every tied parameter and BatchNorm statistic replaced by its projection.
  void project_weights();
  // Every tied parameter's gradient replaced by its projection (before the optimizer's step).
  void project_gradients();
  // A freshly initialised network's weights projected and rescaled by sqrt(8): an orbit's
  // mean of eight independent draws has an eighth of their variance, restored so each layer
  // starts with the variance its initialisation chose.
  void tie_initial_weights();
  // The largest |w - projection(w)| over the tied tensors: 0 when the weights are tied.
  double distance() const;
  // Free parameters: one per orbit, plus the untied ones (the logit's bias).
  long long free_parameters() const;

 private:
  struct Tied {
    torch::Tensor tensor;  // a parameter or buffer of the network
    bool parameter;
    torch::Tensor orbits;  // [numel / 8, 8] flat indices into tensor, one orbit a row
  };
  std::vector<Tied> tied_;
  long long untied_ = 0;
};

// The orbits of D4's action on a tensor of `shape`: rows of eight flat indices. Regular axes
// (orientation fastest within a group of eight) are those in `regular_dims`; a 4-d tensor's
// last two axes are the kernel, turned and mirrored. Exposed for tests.
torch::Tensor dihedral_orbits(const std::vector<int64_t>& shape, const std::vector<int64_t>& regular_dims);

// The image x (..., H, W) under element g of D4 (mirror left-right if g >= 4, then g % 4
// quarter turns anticlockwise): the action DihedralTying's orientations follow.
torch::Tensor dihedral_view(const torch::Tensor& x, int g);

}  // namespace histoscan::model
