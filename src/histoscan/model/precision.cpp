#include "histoscan/model/precision.h"

#include <string>

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "histoscan/util/log.h"
#include "histoscan/util/sysinfo.h"

namespace histoscan::model {

// LibTorch 2.4 replaced the per-device autocast calls (set_enabled, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) with ones that take the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
namespace {
bool autocast_enabled(c10::DeviceType type) { return at::autocast::is_autocast_enabled(type); }
void set_autocast(c10::DeviceType type, bool enabled) { at::autocast::set_autocast_enabled(type, enabled); }
void set_autocast_bfloat16(c10::DeviceType type) { at::autocast::set_autocast_dtype(type, at::kBFloat16); }
}  // namespace
#else
namespace {
bool autocast_enabled(c10::DeviceType type) {
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast(c10::DeviceType type, bool enabled) {
  if (type == c10::DeviceType::CUDA) at::autocast::set_enabled(enabled);
  else at::autocast::set_cpu_enabled(enabled);
}
void set_autocast_bfloat16(c10::DeviceType type) {
  if (type == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  else at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
}
}  // namespace
#endif

Autocast::Autocast(c10::Device device, bool enabled)
    : enabled_(enabled), type_(device.is_cuda() ? c10::DeviceType::CUDA : c10::DeviceType::CPU) {
  if (!enabled_) return;
  was_enabled_ = autocast_enabled(type_);
  set_autocast_bfloat16(type_);
  set_autocast(type_, true);
  at::autocast::increment_nesting();
}

Autocast::~Autocast() {
  if (!enabled_) return;
  // The outermost region drops the bfloat16 copies of the weights it cached.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(type_, was_enabled_);
}

torch::Tensor forward(torch::nn::Sequential& net, const torch::Tensor& x, c10::Device device, bool amp) {
  if (!amp || net->size() < 2) {
    Autocast guard(device, amp);
    return net->forward(x);
  }
  auto last = std::prev(net->end());
  torch::Tensor h = x;
  {
    Autocast guard(device, true);
    for (auto it = net->begin(); it != last; ++it) h = it->forward(h);
  }
  return last->forward(h.to(torch::kFloat32));
}

void to_bfloat16_for_inference(torch::nn::Sequential& net) {
  if (net->size() == 0) return;
  auto last = std::prev(net->end());
  for (auto it = net->begin(); it != last; ++it) it->ptr()->to(torch::kBFloat16);
}

bool cpu_has_bfloat16() { return cpu_has_any_flag({"avx512_bf16", "amx_bf16"}); }

void warn_if_amp_is_slow(c10::Device device, bool amp, bool scoring) {
  if (!amp || !device.is_cpu()) return;
  if (!cpu_has_bfloat16())
    log::warn_once("amp-without-bfloat16",
                   "--amp: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16): bfloat16 is emulated and slower "
                   "than float32 here; leave --amp out");
  else if (scoring && !cpu_has_any_flag({"amx_bf16"}) && cpu_vendor() == "GenuineIntel")
    log::warn_once("amp-scoring-without-amx",
                   "--amp: this Intel CPU has AVX512-BF16 but no AMX, where scoring in bfloat16 measured about half "
                   "float32's speed; leave --amp out unless `histoscan bench` (its row 'inference --amp vs float32') "
                   "says otherwise here");
}

}  // namespace histoscan::model
