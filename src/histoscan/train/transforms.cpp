#include "histoscan/train/transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "histoscan/model/preprocess.h"
#include "histoscan/util/error.h"

namespace histoscan::train {

namespace {

// Rows of the whole batch that draws are made for, and where x's rows start among them.
int64_t total_rows(const torch::Tensor& x, BatchSlice s) { return s.total < 0 ? x.size(0) : s.total; }

// A host vector's values as a tensor on `device` (model::upload).
template <typename T>
torch::Tensor upload(const std::vector<T>& values, c10::IntArrayRef shape, c10::ScalarType type, c10::Device device) {
  return model::upload(torch::from_blob(const_cast<T*>(values.data()), shape, type), device);
}

}  // namespace

torch::Tensor random_flips(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice) {
  const int64_t n = x.size(0), total = total_rows(x, slice);
  std::vector<uint8_t> h(static_cast<std::size_t>(total)), v(static_cast<std::size_t>(total));
  std::bernoulli_distribution coin(0.5);
  for (int64_t i = 0; i < total; ++i) {
    h[i] = coin(rng);
    v[i] = coin(rng);
  }
  h.erase(h.begin(), h.begin() + slice.offset), h.resize(static_cast<std::size_t>(n));
  v.erase(v.begin(), v.begin() + slice.offset), v.resize(static_cast<std::size_t>(n));
  auto hmask = upload(h, {n, 1, 1, 1}, torch::kUInt8, x.device()).to(torch::kBool);
  auto vmask = upload(v, {n, 1, 1, 1}, torch::kUInt8, x.device()).to(torch::kBool);
  auto out = torch::where(hmask, x.flip({3}), x);
  return torch::where(vmask, out.flip({2}), out);
}

torch::Tensor random_rot90(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice) {
  const int64_t n = x.size(0);
  std::vector<int64_t> k(static_cast<std::size_t>(total_rows(x, slice)));
  std::uniform_int_distribution<int> quarter(0, 3);
  for (auto& v : k) v = quarter(rng);
  k.erase(k.begin(), k.begin() + slice.offset), k.resize(static_cast<std::size_t>(n));
  auto turns = upload(k, {n, 1, 1, 1}, torch::kInt64, x.device());
  auto out = x;
  for (int64_t q = 1; q < 4; ++q) out = torch::where(turns == q, x.rot90(q, {2, 3}), out);
  return out;
}

torch::Tensor random_colour(const torch::Tensor& x, std::mt19937_64& rng, double strength, BatchSlice slice) {
  const int64_t n = x.size(0), total = total_rows(x, slice);
  std::vector<float> gain(static_cast<std::size_t>(total * 3)), bias(gain.size()), sat(static_cast<std::size_t>(total));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float s = static_cast<float>(strength);
  for (auto& g : gain) g = 1.0f + s * u(rng);
  for (auto& b : bias) b = 0.5f * s * u(rng);
  for (auto& v : sat) v = 1.0f + 2.0f * s * u(rng);
  gain.erase(gain.begin(), gain.begin() + 3 * slice.offset), gain.resize(static_cast<std::size_t>(3 * n));
  bias.erase(bias.begin(), bias.begin() + 3 * slice.offset), bias.resize(static_cast<std::size_t>(3 * n));
  sat.erase(sat.begin(), sat.begin() + slice.offset), sat.resize(static_cast<std::size_t>(n));
  auto g = upload(gain, {n, 3, 1, 1}, torch::kFloat32, x.device());
  auto b = upload(bias, {n, 3, 1, 1}, torch::kFloat32, x.device());
  auto v = upload(sat, {n, 1, 1, 1}, torch::kFloat32, x.device());
  auto out = x * g + b;
  auto grey = out.mean(1, /*keepdim=*/true);
  return (grey + (out - grey) * v).clamp(0.0, 1.0);
}

torch::Tensor random_hed(const torch::Tensor& x, std::mt19937_64& rng, double strength, BatchSlice slice) {
  const int64_t n = x.size(0), total = total_rows(x, slice);
  std::vector<float> scale(static_cast<std::size_t>(total * 3)), shift(scale.size());
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float s = static_cast<float>(strength);
  for (std::size_t i = 0; i < scale.size(); ++i) scale[i] = 1.0f + s * u(rng), shift[i] = s * u(rng);
  scale.erase(scale.begin(), scale.begin() + 3 * slice.offset), scale.resize(static_cast<std::size_t>(3 * n));
  shift.erase(shift.begin(), shift.begin() + 3 * slice.offset), shift.resize(static_cast<std::size_t>(3 * n));
  // Rows: the optical density of pure haematoxylin, eosin and DAB in R, G, B (Ruifrok and
  // Johnston, normalised, as scikit-image's rgb_from_hed); hed_from_rgb is its inverse.
  static const float kRgbFromHed[9] = {0.65f, 0.70f, 0.29f, 0.07f, 0.99f, 0.11f, 0.27f, 0.57f, 0.78f};
  auto rgb_from_hed = torch::from_blob(const_cast<float*>(kRgbFromHed), {3, 3}, torch::kFloat32);
  rgb_from_hed = (rgb_from_hed / rgb_from_hed.norm(2, 1, /*keepdim=*/true)).to(x.device());
  auto hed_from_rgb = torch::inverse(rgb_from_hed.cpu()).to(x.device());
  // Per image the round trip is linear in optical density (od = -ln RGB): with H = hed_from_rgb,
  // R = rgb_from_hed and the image's scales a and shifts b, od' = (od H diag(a) + b) R = od T + c
  // with T = H diag(a) R and c = b R, so RGB' = exp(-od') = exp(ln(RGB) T - c): one 3 x 3
  // product per pixel, in the input's own layout.
  auto a = upload(scale, {n, 1, 3}, torch::kFloat32, x.device());
  auto b = upload(shift, {n, 1, 3}, torch::kFloat32, x.device());
  auto t = torch::matmul(hed_from_rgb.unsqueeze(0) * a, rgb_from_hed);  // n x 3 x 3: H diag(a) R
  auto c = torch::matmul(b, rgb_from_hed);                              // n x 1 x 3: b R
  auto ln = torch::log(x.clamp_min(1e-6));
  const int64_t h = x.size(2), w = x.size(3);
  if (x.is_contiguous(torch::MemoryFormat::ChannelsLast) && !x.is_contiguous()) {
    // Pixels as rows of R, G, B: (ln RGB) T - c.
    auto out = torch::baddbmm(-c, ln.permute({0, 2, 3, 1}).reshape({n, h * w, 3}), t);
    return out.exp_().clamp_(0.0, 1.0).view({n, h, w, 3}).permute({0, 3, 1, 2});  // channels-last, as x
  }
  // NCHW: channels as rows, T^T (ln RGB) - c^T.
  auto out = torch::baddbmm(-c.transpose(1, 2), t.transpose(1, 2), ln.contiguous().view({n, 3, h * w}));
  return out.exp_().clamp_(0.0, 1.0).view({n, 3, h, w});
}

torch::Tensor random_shift(const torch::Tensor& x, std::mt19937_64& rng, int64_t max_shift, BatchSlice slice) {
  if (max_shift <= 0) return x;
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), total = total_rows(x, slice);
  std::vector<int64_t> dy(static_cast<std::size_t>(total)), dx(dy.size());
  std::uniform_int_distribution<int64_t> d(0, 2 * max_shift);
  for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = d(rng), dx[i] = d(rng);
  dy.erase(dy.begin(), dy.begin() + slice.offset), dy.resize(static_cast<std::size_t>(n));
  dx.erase(dx.begin(), dx.begin() + slice.offset), dx.resize(static_cast<std::size_t>(n));
  namespace F = torch::nn::functional;
  auto padded = F::pad(x, F::PadFuncOptions({max_shift, max_shift, max_shift, max_shift}).mode(torch::kReflect));
  auto rows =
      upload(dy, {n, 1, 1, 1}, torch::kInt64, x.device()) + torch::arange(h, x.options().dtype(torch::kInt64)).view({1, 1, h, 1});
  auto cols =
      upload(dx, {n, 1, 1, 1}, torch::kInt64, x.device()) + torch::arange(w, x.options().dtype(torch::kInt64)).view({1, 1, 1, w});
  auto out = padded.gather(2, rows.expand({n, c, h, padded.size(3)}));
  return out.gather(3, cols.expand({n, c, h, w})).contiguous(x.suggest_memory_format());
}

// An --augment list's steps: each a name and its strength.
std::vector<Augmentation::Step> Augmentation::parse(const std::string& spec) {
  const std::string usage = "--augment " + spec +
                            ": expected flips, dihedral, dihedral-colour, dihedral-hed, or steps joined by '+' from "
                            "flips, dihedral, colour[=S], hed[=S] (S in (0, 1)) and shift[=PIXELS] (1 to 32), e.g. "
                            "dihedral+hed=0.1+shift=16";
  if (spec == "dihedral-colour") return parse("dihedral+colour");
  if (spec == "dihedral-hed") return parse("dihedral+hed");
  std::vector<Step> steps;
  std::size_t start = 0;
  while (true) {
    const auto end = spec.find('+', start);
    const auto part = spec.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const auto eq = part.find('=');
    Step step{part.substr(0, eq), 0.0};
    if (eq != std::string::npos) {
      const auto text = part.substr(eq + 1);
      std::size_t used = 0;
      try {
        step.value = std::stod(text, &used);
      } catch (const std::exception&) {
        throw InputError(usage);
      }
      if (used != text.size()) throw InputError(usage);
    }
    const bool plain = eq == std::string::npos;
    const double v = step.value;  // stod reads "nan" and "inf", which every range below refuses
    bool ok = false;
    if (step.name == "flips" || step.name == "dihedral") {
      ok = plain;
    } else if (step.name == "colour" || step.name == "hed") {
      ok = plain || (v > 0 && v < 1);
      if (plain) step.value = step.name == "colour" ? 0.1 : 0.05;
    } else if (step.name == "shift") {
      ok = plain || (v >= 1 && v <= 32 && v == std::floor(v));
      if (plain) step.value = 16;
    }
    if (!ok) throw InputError(usage);
    steps.push_back(step);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return steps;
}

Augmentation::Augmentation(const std::string& spec) : steps_(parse(spec)) {}

torch::Tensor Augmentation::operator()(const torch::Tensor& x, std::mt19937_64& rng, BatchSlice slice) const {
  auto out = x;
  for (const auto& step : steps_) {
    if (step.name == "flips") out = random_flips(out, rng, slice);
    if (step.name == "dihedral") out = random_rot90(random_flips(out, rng, slice), rng, slice);
    if (step.name == "colour") out = random_colour(out, rng, step.value, slice);
    if (step.name == "hed") out = random_hed(out, rng, step.value, slice);
    if (step.name == "shift") out = random_shift(out, rng, static_cast<int64_t>(step.value), slice);
  }
  return out;
}

torch::Tensor augment(const torch::Tensor& x, const std::string& name, std::mt19937_64& rng, BatchSlice slice) {
  return Augmentation(name)(x, rng, slice);
}

double mixup_weight(double alpha, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  const double a = gamma(rng), b = gamma(rng);
  if (!(a + b > 0)) return 1.0;  // both underflowed (alpha far below 1): u is 0 or 1, its weight 1
  const double u = a / (a + b);
  return std::max(u, 1.0 - u);
}

torch::Tensor smooth_targets(const torch::Tensor& y, double eps) { return eps > 0 ? y * (1.0 - eps) + eps / 2 : y; }

std::pair<torch::Tensor, torch::Tensor> mix_rows(const torch::Tensor& x, const torch::Tensor& y, double lam) {
  const auto layout = x.suggest_memory_format();
  auto mixed = (x * lam + x.flip({0}) * (1.0 - lam)).contiguous(layout);
  return {mixed, y * lam + y.flip({0}) * (1.0 - lam)};
}

}  // namespace histoscan::train
