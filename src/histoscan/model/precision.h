#pragma once
// Mixed precision (--amp): bfloat16 where it is fast, float32 where it matters.
//
// bfloat16 rather than float16: it has float32's exponent range, so gradients need no loss
// scaling (LibTorch 1.13's C++ API has no GradScaler), and it runs on this project's CPUs
// (oneDNN with AVX512-BF16 and AMX) as on CUDA cards from Ampere on.
#include <c10/core/Device.h>
#include <torch/nn/modules/container/sequential.h>

namespace histoscan::model {

// While alive, and when enabled, operations on `device` that autocast lists (convolutions,
// linear layers) run in bfloat16 with float32 weights; reductions and losses stay float32.
// Training: the forward pass only (backward follows the recorded casts). Not copyable.
class Autocast {
 public:
  Autocast(c10::Device device, bool enabled);
  ~Autocast();
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  bool enabled_;
  c10::DeviceType type_;  // autocast's CPU or CUDA state, whichever `device` uses
  bool was_enabled_ = false;
};

// net's output for x. With amp, every layer but the last runs under Autocast and the last
// (the classifier) in float32 on float32 input: the logits keep float32's resolution, where
// bfloat16's 8 bits would round nearby scores to one value (ties flatten a ROC curve: early in
// training every validation logit rounded alike and AUC read 0.5). Without amp, net->forward(x).
torch::Tensor forward(torch::nn::Sequential& net, const torch::Tensor& x, c10::Device device, bool amp);

// For inference with amp only: converts the parameters and buffers of every layer but the
// last to bfloat16 in place (memory layout kept), so forward() with amp casts no weights.
// The float32 weights are gone: never call this on a network still being trained.
void to_bfloat16_for_inference(torch::nn::Sequential& net);

// True when the CPU has bfloat16 arithmetic (avx512_bf16 or amx_bf16 in /proc/cpuinfo);
// without it, --amp on CPU is emulated and slower than float32.
bool cpu_has_bfloat16();

// Logs a warning, once per process, when --amp is asked for on a CPU without bfloat16
// arithmetic (training and then scoring both ask). With `scoring`, also on an Intel CPU that
// has AVX512-BF16 but no AMX: there oneDNN's bfloat16 inference measured 0.49x float32's speed
// (docs/performance.md) while training under --amp gained 1.14x. Not on AMD's (Zen 4), where
// --amp scored faster than float32.
void warn_if_amp_is_slow(c10::Device device, bool amp, bool scoring = false);

}  // namespace histoscan::model
