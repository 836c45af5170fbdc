#include "histoscan/predict/predictor.h"

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <numeric>

#include <torch/torch.h>

#include "histoscan/model/precision.h"
#include "histoscan/train/transforms.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/progress.h"

namespace histoscan::predict {

c10::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  bool cuda = torch::cuda::is_available();
  if (name == "cuda") {
    if (!cuda) throw InputError("--device cuda: no CUDA device is available to this LibTorch; use --device cpu");
    return torch::kCUDA;
  }
  if (name == "auto") return cuda ? c10::Device(torch::kCUDA) : c10::Device(torch::kCPU);
  throw InputError("--device " + name + ": expected auto, cpu or cuda");
}

c10::Device prepare_inference(torch::nn::Sequential& net, const std::string& device, bool amp) {
  c10::Device dev = resolve_device(device);
  net->to(dev);
  if (amp) {
    model::warn_if_amp_is_slow(dev, amp);
    model::to_bfloat16_for_inference(net);
  }
  return dev;
}

std::vector<float> predict_logits(torch::nn::Sequential& net, const std::uint8_t* pixels, std::size_t n, int batch,
                                  c10::Device device, bool tta, bool amp) {
  net->eval();
  c10::InferenceMode guard;
  std::vector<float> out(n);
  auto all = torch::from_blob(const_cast<std::uint8_t*>(pixels), {static_cast<int64_t>(n), 96, 96, 3}, torch::kUInt8);
  for (std::size_t start = 0; start < n; start += static_cast<std::size_t>(batch)) {
    int64_t b = static_cast<int64_t>(std::min<std::size_t>(static_cast<std::size_t>(batch), n - start));
    auto x = train::preprocess(all.narrow(0, static_cast<int64_t>(start), b).to(device));
    torch::Tensor logits;
    if (!tta) {
      logits = model::forward(net, x, device, amp).reshape({b});
    } else {
      auto mean = torch::zeros({b}, x.options());
      for (int64_t k = 0; k < 4; ++k) {
        auto view = k == 0 ? x : torch::rot90(x, k, {2, 3});
        mean += torch::sigmoid(model::forward(net, view, device, amp).reshape({b}));
        mean += torch::sigmoid(model::forward(net, view.flip({3}), device, amp).reshape({b}));
      }
      mean = (mean / 8).clamp(1e-7, 1 - 1e-7);
      logits = torch::log(mean) - torch::log1p(-mean);
    }
    logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
    std::copy_n(logits.data_ptr<float>(), b, out.data() + start);
  }
  return out;
}

std::vector<double> sigmoid(const std::vector<float>& logits) {
  std::vector<double> p(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) p[i] = 1.0 / (1.0 + std::exp(-double(logits[i])));
  return p;
}

StreamResult predict_to_csv(torch::nn::Sequential& net, const data::PatchIndex& index, const fs::path& out_csv,
                            c10::Device device, const StreamOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  StreamResult result;
  const std::size_t n = index.entries.size();
  const std::size_t batch = static_cast<std::size_t>(options.batch);
  data::LoadOptions load;
  load.threads = options.threads;
  load.decode = options.decode;
  load.skip_bad = options.skip_bad;
  load.progress = false;
  auto load_chunk = [&](std::size_t start) {
    std::vector<std::size_t> rows(std::min(batch, n - start));
    std::iota(rows.begin(), rows.end(), start);
    std::vector<data::SkippedFile> skipped;
    auto store = data::load_patches(index, rows, load, &skipped);
    return std::make_pair(std::move(store), std::move(skipped));
  };

  AtomicPath out(out_csv);
  std::ofstream f(out.temp(), std::ios::trunc);
  if (!f) throw InputError("cannot write " + out_csv.string() + "; check the folder's permissions");
  f << "id,label\n";
  ProgressBar bar(static_cast<long long>(n), "predicting ");
  std::future<std::pair<data::PatchStore, std::vector<data::SkippedFile>>> next;
  if (n) next = std::async(std::launch::async, load_chunk, 0);
  char buf[32];
  for (std::size_t start = 0; start < n; start += batch) {
    auto [store, skipped] = next.get();
    if (start + batch < n) next = std::async(std::launch::async, load_chunk, start + batch);
    result.skipped.insert(result.skipped.end(), skipped.begin(), skipped.end());
    auto probs = sigmoid(predict_logits(net, store.pixels.data(), store.size(), options.batch, device, options.tta, options.amp));
    for (std::size_t i = 0; i < store.size(); ++i) {
      if (options.binary_threshold >= 0) std::snprintf(buf, sizeof buf, "%d", probs[i] >= options.binary_threshold ? 1 : 0);
      else std::snprintf(buf, sizeof buf, "%.6f", probs[i]);
      f << store.ids[i] << ',' << buf << '\n';
    }
    result.images += store.size();
    if (options.progress) bar.update(static_cast<long long>(std::min(n, start + batch)));
  }
  bar.finish();
  f.flush();
  if (!f) throw InputError("writing " + out_csv.string() + " failed (disk full?)");
  f.close();
  out.commit();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace histoscan::predict
