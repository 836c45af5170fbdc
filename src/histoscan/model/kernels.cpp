#include "histoscan/model/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <torch/utils.h>

namespace histoscan::model {

namespace {

// Each loop is built for AVX-512, AVX2 and the baseline, the best picked at load time:
// histoscan's own code is compiled for the baseline x86-64 (SSE2), where relu_affine ran 2.2x
// slower.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HISTOSCAN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HISTOSCAN_VECTOR_CLONES
#endif
#define HISTOSCAN_INLINE inline __attribute__((always_inline))

// bfloat16 is the high half of a float32 (held here as its 16 bits): widening is exact;
// narrowing rounds to nearest, ties to even, and turns any NaN into bfloat16's quiet NaN, as
// c10::BFloat16 does. On plain integers, so that the loops below vectorize.
HISTOSCAN_INLINE float widen(float x) { return x; }
HISTOSCAN_INLINE float widen(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
HISTOSCAN_INLINE void narrow(float f, float& out) { out = f; }
HISTOSCAN_INLINE void narrow(float f, uint16_t& out) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const auto rounded = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  out = f != f ? uint16_t{0x7FC0} : rounded;  // rounding a NaN's bits could make them an infinity
}

// y = max(x, 0) * scale[c] + shift[c] for `rows` rows of `c` channels (channels-last order);
// in and out may be the same.
template <class T>
HISTOSCAN_INLINE void relu_affine_rows_of(const T* in, T* out, int64_t rows, int64_t c, const float* scale, const float* shift) {
  for (int64_t r = 0; r < rows; ++r, in += c, out += c)
    for (int64_t k = 0; k < c; ++k) narrow(std::max(widen(in[k]), 0.0f) * scale[k] + shift[k], out[k]);
}

// The same for `n` values of one channel (NCHW order).
template <class T>
HISTOSCAN_INLINE void relu_affine_plane_of(const T* in, T* out, int64_t n, float scale, float shift) {
  for (int64_t i = 0; i < n; ++i) narrow(std::max(widen(in[i]), 0.0f) * scale + shift, out[i]);
}

// The loops above built for each instruction set (GCC clones functions, not templates);
// bfloat16 as its bits.
HISTOSCAN_VECTOR_CLONES void relu_affine_rows(const float* in, float* out, int64_t rows, int64_t c, const float* scale,
                                              const float* shift) {
  relu_affine_rows_of(in, out, rows, c, scale, shift);
}
HISTOSCAN_VECTOR_CLONES void relu_affine_rows(const uint16_t* in, uint16_t* out, int64_t rows, int64_t c, const float* scale,
                                              const float* shift) {
  relu_affine_rows_of(in, out, rows, c, scale, shift);
}
HISTOSCAN_VECTOR_CLONES void relu_affine_plane(const float* in, float* out, int64_t n, float scale, float shift) {
  relu_affine_plane_of(in, out, n, scale, shift);
}
HISTOSCAN_VECTOR_CLONES void relu_affine_plane(const uint16_t* in, uint16_t* out, int64_t n, float scale, float shift) {
  relu_affine_plane_of(in, out, n, scale, shift);
}

// T: float, or uint16_t for bfloat16 (its bits; c10::BFloat16 holds them in a struct).
template <class T>
void relu_affine_into(const torch::Tensor& x, torch::Tensor& y, const torch::Tensor& scale, const torch::Tensor& shift) {
  const T* in = static_cast<const T*>(x.data_ptr());
  T* out = static_cast<T*>(y.data_ptr());
  const float* a = scale.data_ptr<float>();
  const float* b = shift.data_ptr<float>();
  const int64_t c = x.size(1), plane = x.size(2) * x.size(3);
  if (x.is_contiguous(torch::MemoryFormat::ChannelsLast)) {
    const int64_t rows = x.size(0) * plane;
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1)), [&](int64_t begin, int64_t end) {
      relu_affine_rows(in + begin * c, out + begin * c, end - begin, c, a, b);
    });
  } else {
    at::parallel_for(0, x.size(0) * c, std::max<int64_t>(1, 16384 / std::max<int64_t>(plane, 1)),
                     [&](int64_t begin, int64_t end) {
                       for (int64_t p = begin; p < end; ++p)
                         relu_affine_plane(in + p * plane, out + p * plane, plane, a[p % c], b[p % c]);
                     });
  }
}

// SplitMix64 (Steele, Lea and Flood, 2014): a bijective mix of a 64-bit counter.
inline uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The mask's element of NCHW index i: value where the high 32 bits of
// splitmix64(seed + i * golden) fall below threshold, else 0.
inline float mask_value(uint64_t seed, uint64_t i, uint64_t threshold, float value) {
  return (splitmix64(seed + i * kGolden) >> 32) < threshold ? value : 0.0f;
}

// Elements [begin, end) of an NCHW-contiguous mask.
HISTOSCAN_VECTOR_CLONES void mask_nchw(float* __restrict out, int64_t begin, int64_t end, uint64_t seed, uint64_t threshold,
                                       float value) {
  for (int64_t i = begin; i < end; ++i) out[i] = mask_value(seed, static_cast<uint64_t>(i), threshold, value);
}

// Rows [begin, end) of a channels-last mask, rows of c channels, hw pixels an image: row r is
// pixel r % hw of image r / hw, and its channel k has NCHW index (image * c + k) * hw + pixel.
HISTOSCAN_VECTOR_CLONES void mask_channels_last(float* __restrict out, int64_t begin, int64_t end, int64_t c, int64_t hw,
                                                uint64_t seed, uint64_t threshold, float value) {
  for (int64_t r = begin; r < end; ++r) {
    const auto base = static_cast<uint64_t>((r / hw) * c * hw + r % hw);
    float* row = out + r * c;
    for (int64_t k = 0; k < c; ++k) row[k] = mask_value(seed, base + static_cast<uint64_t>(k * hw), threshold, value);
  }
}

}  // namespace

torch::Tensor relu_affine(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift, bool in_place) {
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16) &&
                  x.dim() == 4 && (x.is_contiguous() || x.is_contiguous(torch::MemoryFormat::ChannelsLast)),
              "relu_affine: expects a float32 or bfloat16 CPU tensor N x C x H x W, contiguous in NCHW or channels-last");
  for (const auto* t : {&scale, &shift})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32 && t->is_contiguous() && t->numel() == x.size(1),
                "relu_affine: scale and shift must be ", x.size(1), " contiguous float32 CPU values, one per channel");
  TORCH_CHECK(!in_place || !(at::GradMode::is_enabled() && x.requires_grad()),
              "relu_affine: in place on a tensor that records gradients");
  if (in_place) x.unsafeGetTensorImpl()->bump_version();  // as LibTorch's in-place operations do
  auto y = in_place ? x : torch::empty_like(x);           // keeps x's layout
  if (x.scalar_type() == torch::kFloat32) relu_affine_into<float>(x, y, scale, shift);
  else relu_affine_into<uint16_t>(x, y, scale, shift);
  return y;
}

torch::Tensor bernoulli_mask(const torch::Tensor& like, double keep) {
  auto mask = torch::empty_like(like, torch::TensorOptions().dtype(torch::kFloat32), like.suggest_memory_format());
  uint64_t seed = 0;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = gen.get<at::CPUGeneratorImpl>()->random64();
  }
  // keep * 2^32, so P(draw < threshold) = keep to within 2^-32.
  const uint64_t threshold = static_cast<uint64_t>(std::llround(std::ldexp(keep, 32)));
  const float value = static_cast<float>(1.0 / keep);
  float* out = mask.data_ptr<float>();
  if (like.dim() == 4 && mask.is_contiguous(torch::MemoryFormat::ChannelsLast) && !mask.is_contiguous()) {
    const int64_t c = like.size(1), hw = like.size(2) * like.size(3);
    at::parallel_for(0, like.size(0) * hw, std::max<int64_t>(1, 32768 / std::max<int64_t>(c, 1)),
                     [&](int64_t begin, int64_t end) { mask_channels_last(out, begin, end, c, hw, seed, threshold, value); });
  } else {
    mask = mask.contiguous();
    out = mask.data_ptr<float>();
    at::parallel_for(0, mask.numel(), 32768,
                     [&](int64_t begin, int64_t end) { mask_nchw(out, begin, end, seed, threshold, value); });
  }
  return mask;
}

}  // namespace histoscan::model
