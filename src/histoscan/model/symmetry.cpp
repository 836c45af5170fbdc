#include "histoscan/model/symmetry.h"

#include <array>
#include <cmath>
#include <sstream>
#include <string>

#include <torch/torch.h>

#include "histoscan/util/error.h"

namespace histoscan::model {

namespace {

constexpr int kOrder = 8;  // elements of D4

// The group's multiplication table, found by composing the views of a 3 x 3 image with
// distinct pixels: product[a][b] is the element whose view is view(view(x, b), a).
struct Table {
  std::array<std::array<int, kOrder>, kOrder> product{};
  std::array<int, kOrder> inverse{};
};

const Table& table() {
  static const Table t = [] {
    Table out;
    const auto probe = torch::arange(9, torch::kInt64).reshape({3, 3});
    std::array<torch::Tensor, kOrder> views;
    for (int g = 0; g < kOrder; ++g) views[static_cast<std::size_t>(g)] = dihedral_view(probe, g);
    for (int a = 0; a < kOrder; ++a)
      for (int b = 0; b < kOrder; ++b) {
        const auto composed = dihedral_view(views[static_cast<std::size_t>(b)], a);
        for (int c = 0; c < kOrder; ++c)
          if (torch::equal(composed, views[static_cast<std::size_t>(c)]))
            out.product[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)] = c;
      }
    for (int a = 0; a < kOrder; ++a)
      for (int b = 0; b < kOrder; ++b)
        if (out.product[static_cast<std::size_t>(a)][static_cast<std::size_t>(b)] == 0)
          out.inverse[static_cast<std::size_t>(a)] = b;
    return out;
  }();
  return t;
}

// h acting on a regular axis: the new orientation g holds the old orientation h^-1 g.
torch::Tensor relabelling(int h) {
  const auto& t = table();
  std::vector<int64_t> from(kOrder);
  for (int g = 0; g < kOrder; ++g)
    from[static_cast<std::size_t>(g)] =
        t.product[static_cast<std::size_t>(t.inverse[static_cast<std::size_t>(h)])][static_cast<std::size_t>(g)];
  return torch::tensor(from, torch::kInt64);
}

// A tensor under element h: every regular axis relabelled, a kernel turned and mirrored.
torch::Tensor act(const torch::Tensor& x, int h, const std::vector<int64_t>& regular_dims) {
  auto y = x;
  for (const auto dim : regular_dims) {
    auto shape = y.sizes().vec();
    std::vector<int64_t> split(shape.begin(), shape.begin() + dim);
    split.push_back(shape[static_cast<std::size_t>(dim)] / kOrder);
    split.push_back(kOrder);
    split.insert(split.end(), shape.begin() + dim + 1, shape.end());
    y = y.reshape(split).index_select(dim + 1, relabelling(h)).reshape(shape);
  }
  return y.dim() == 4 ? dihedral_view(y, h) : y;
}

}  // namespace

bool ties_dihedral(const nlohmann::json& model_options) {
  return model_options.is_object() && model_options.value("symmetry", std::string("none")) == "d4";
}

torch::Tensor dihedral_view(const torch::Tensor& x, int g) {
  const auto mirrored = g >= 4 ? x.flip({-1}) : x;
  return g % 4 == 0 ? mirrored : torch::rot90(mirrored, g % 4, {-2, -1});
}

torch::Tensor dihedral_orbits(const std::vector<int64_t>& shape, const std::vector<int64_t>& regular_dims) {
  const auto index = torch::arange(c10::multiply_integers(shape), torch::kInt64).reshape(shape);
  // images[h][i]: the element of the original that lands at i under h.
  std::vector<torch::Tensor> images;
  for (int h = 0; h < kOrder; ++h) images.push_back(act(index, h, regular_dims).reshape({-1}));
  const auto all = torch::stack(images);  // [8, numel]
  // An orbit is a column's eight entries; keep one column per orbit, its smallest member's.
  const auto first = std::get<0>(all.min(0));
  const auto keep = (first == torch::arange(all.size(1), torch::kInt64)).nonzero().reshape({-1});
  auto orbits = all.index_select(1, keep).t().contiguous();
  if (orbits.numel() != all.size(1))
    throw std::logic_error("dihedral_orbits: an orbit of fewer than 8 elements (a kernel that is not square?)");
  return orbits;
}

DihedralTying::DihedralTying(torch::nn::Module& net) {
  auto tie = [&](const std::string& name, const torch::Tensor& t, bool parameter) {
    const auto s = t.sizes();
    std::vector<int64_t> regular;
    if (t.dim() == 4 && s[2] == s[3] && s[0] % kOrder == 0) {
      regular = {0};  // a convolution; its input has orientations unless it is the image
      if (s[1] % kOrder == 0) regular.push_back(1);
      else if (s[1] != 3)
        throw InputError("symmetry=d4: " + name + " reads " + std::to_string(s[1]) +
                         " channels, neither the image's 3 nor groups of 8 orientations; use a width that is a multiple of 8");
    } else if (t.dim() == 2 && s[1] % kOrder == 0) {
      regular = {1};  // the linear layer: its inputs are pooled orientations, its output the logit
    } else if (t.dim() == 1 && s[0] % kOrder == 0) {
      regular = {0};  // BatchNorm
    } else if (t.dim() == 0 || (t.dim() == 1 && s[0] == 1)) {
      untied_ += parameter ? t.numel() : 0;  // a batch count, the logit's bias: unchanged by the group
      return;
    } else {
      std::ostringstream shape;
      shape << s;
      throw InputError("symmetry=d4: " + name + " " + shape.str() +
                       " has no axis of 8 orientations to tie; symmetry=d4 takes resnet with a width that is a multiple of 8");
    }
    tied_.push_back({t, parameter, dihedral_orbits(s.vec(), regular).to(t.device())});
  };
  for (const auto& p : net.named_parameters()) tie(p.key(), p.value(), true);
  for (const auto& b : net.named_buffers()) tie(b.key(), b.value(), false);
}

namespace {

// x replaced by its projection: each orbit's elements by their mean.
void project(const torch::Tensor& x, const torch::Tensor& orbits) {
  auto flat = x.contiguous().reshape({-1});
  const auto members = orbits.reshape({-1});
  const auto mean = flat.index_select(0, members).reshape(orbits.sizes()).mean(1, /*keepdim=*/true);
  auto projected = flat.index_copy(0, members, mean.expand(orbits.sizes()).reshape({-1}));
  x.copy_(projected.reshape(x.sizes()));
}

}  // namespace

void DihedralTying::project_weights() {
  torch::NoGradGuard no_grad;
  for (auto& t : tied_)
    if (t.tensor.is_floating_point()) project(t.tensor, t.orbits);
}

void DihedralTying::project_gradients() {
  torch::NoGradGuard no_grad;
  for (auto& t : tied_)
    if (t.parameter && t.tensor.grad().defined()) project(t.tensor.mutable_grad(), t.orbits);
}

void DihedralTying::tie_initial_weights() {
  torch::NoGradGuard no_grad;
  project_weights();
  for (auto& t : tied_)
    if (t.parameter && t.tensor.dim() > 1) t.tensor.mul_(std::sqrt(double(kOrder)));
}

double DihedralTying::distance() const {
  torch::NoGradGuard no_grad;
  double worst = 0;
  for (const auto& t : tied_) {
    if (!t.tensor.is_floating_point()) continue;
    auto copy = t.tensor.detach().clone();
    project(copy, t.orbits);
    worst = std::max(worst, (copy - t.tensor).abs().max().item<double>());
  }
  return worst;
}

long long DihedralTying::free_parameters() const {
  long long n = untied_;
  for (const auto& t : tied_)
    if (t.parameter) n += t.orbits.size(0);
  return n;
}

}  // namespace histoscan::model
