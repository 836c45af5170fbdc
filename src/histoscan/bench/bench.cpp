#include "histoscan/bench/bench.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include "histoscan/data/source.h"
#include "histoscan/data/store.h"
#include "histoscan/dist/dist.h"
#include "histoscan/interop/export.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/precision.h"
#include "histoscan/model/preprocess.h"
#include "histoscan/model/registry.h"
#include "histoscan/pipeline/predict_stream.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/scan/scanner.h"
#include "histoscan/slide/synth_slide.h"
#include "histoscan/train/adam.h"
#include "histoscan/train/trainer.h"
#include "histoscan/train/transforms.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/parallel.h"
#include "histoscan/util/sysinfo.h"

namespace histoscan::bench {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over `runs` of the seconds `f` takes.
template <class F>
double median_seconds(int runs, F&& f) {
  std::vector<double> s;
  for (int i = 0; i < runs; ++i) {
    auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(s);
}

// GFLOP/s of a float32 product of two 2048 x 2048 matrices, the median over `runs`, done two
// ways: torch::mm, through the BLAS LibTorch links (Debian's: OpenBLAS, which falls back to its
// SSE3 kernels on a CPU it does not recognise, as on some virtual machines), and as a 1 x 1
// convolution of 2048 channels over 2048 pixels, through oneDNN (which detects the CPU itself
// and runs the network's convolutions). The faster of the two is the machine's rate.
// The oneDNN product is also timed in bfloat16 where the CPU has bfloat16 arithmetic (AMX or
// AVX512-BF16): the rate --amp's rows are measured against (0 elsewhere: LibTorch emulates it
// there, slowly and outside oneDNN).
struct MatmulRates {
  double blas = 0, onednn = 0, onednn_bf16 = 0;
};

MatmulRates matmul_gflops(int runs) {
  const int64_t n = 2048;
  const double flop = 2.0 * double(n) * double(n) * double(n);
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::mm(a, b);  // warm-up
  MatmulRates r;
  r.blas = flop / median_seconds(runs, [&] { torch::mm(a, b); }) / 1e9;
  // The same product as a 1 x 1 convolution of n channels into n over n pixels, 16 images of
  // 8 x 16 (a batch of 16 or more: LibTorch sends a 1 x 1 convolution of one image on one
  // thread to its own im2col and the BLAS instead of oneDNN).
  auto x = torch::randn({16, n, 8, n / 128}).contiguous(torch::MemoryFormat::ChannelsLast);
  auto w = torch::randn({n, n, 1, 1}).contiguous(torch::MemoryFormat::ChannelsLast);
  torch::conv2d(x, w);  // warm-up
  r.onednn = flop / median_seconds(runs, [&] { torch::conv2d(x, w); }) / 1e9;
  if (!model::cpu_has_bfloat16()) return r;
  auto xb = x.to(torch::kBFloat16), wb = w.to(torch::kBFloat16);
  torch::conv2d(xb, wb);  // warm-up
  r.onednn_bf16 = flop / median_seconds(runs, [&] { torch::conv2d(xb, wb); }) / 1e9;
  return r;
}

// Training steps as train runs them with `config`'s amp and memory_format (bfloat16 autocast
// around the forward pass; the layout train::trains_channels_last picks).
double train_images_per_s(const data::PatchStore& store, const BenchOptions& o, c10::Device device,
                          const train::TrainConfig& config) {
  const bool amp = config.amp;
  torch::manual_seed(1);
  auto net = model::make_model("seed-cnn");
  net->train();
  net->to(device);
  const auto layout = train::training_layout(config, device.is_cuda());
  if (layout == torch::MemoryFormat::ChannelsLast) model::use_channels_last(*net);
  train::MultiTensorAdam opt(net->parameters(), torch::optim::AdamOptions(1e-3));  // as train_model
  const int64_t n = static_cast<int64_t>(store.size()), batch = 128;
  auto images = torch::from_blob(const_cast<std::uint8_t*>(store.pixels.data()), {n, 96, 96, 3}, torch::kUInt8);
  std::vector<float> yv(store.labels.begin(), store.labels.end());
  auto labels = torch::from_blob(yv.data(), {n}, torch::kFloat32).to(device);
  std::mt19937_64 rng(1);
  auto step = [&](int64_t k) {
    auto idx = torch::arange(k * batch, (k + 1) * batch, torch::kInt64).remainder(n);
    auto x = model::standardize(
        train::random_flips(model::to_float_channels_last(images.index_select(0, idx).to(device)).contiguous(layout), rng));
    auto logits = model::forward(net, x, device, amp).reshape({batch});
    auto loss = torch::binary_cross_entropy_with_logits(logits, labels.index_select(0, idx.to(device)));
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  step(0);  // warm-up: oneDNN picks its kernels on the first pass
  std::vector<double> rates;
  for (int r = 0; r < o.runs; ++r) {
    auto t0 = Clock::now();
    for (int k = 1; k <= o.train_steps; ++k) step(k);
    if (device.is_cuda()) torch::cuda::synchronize();
    rates.push_back(double(o.train_steps * batch) / std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return median(rates);
}

// The default recipe's input pipeline as train runs it under --amp: a batch of 128 from the
// uint8 store to float channels-last, augmented (train::kDefaultAugment) and standardized;
// images/s over o.train_steps batches, the median over o.runs.
double augment_images_per_s(const data::PatchStore& store, const BenchOptions& o, c10::Device device) {
  const int64_t n = static_cast<int64_t>(store.size()), batch = 128;
  const auto layout = torch::MemoryFormat::ChannelsLast;
  auto images = torch::from_blob(const_cast<std::uint8_t*>(store.pixels.data()), {n, 96, 96, 3}, torch::kUInt8);
  std::mt19937_64 rng(1);
  const train::Augmentation augment(train::kDefaultAugment);
  auto batch_k = [&](int64_t k) {
    auto idx = torch::arange(k * batch, (k + 1) * batch, torch::kInt64).remainder(n);
    auto x = model::to_float_channels_last(images.index_select(0, idx).to(device)).contiguous(layout);
    auto out = model::standardize(augment(x, rng)).contiguous(layout);
    if (device.is_cuda()) torch::cuda::synchronize();
    return out;
  };
  batch_k(0);
  double s = median_seconds(o.runs, [&] {
    for (int k = 1; k <= o.train_steps; ++k) batch_k(k);
  });
  return double(o.train_steps * batch) / s;
}

// Runs the peer and returns images_per_s from the JSON on its last line, or -1 when it failed.
double run_peer(const std::string& args) {
  std::string cmd = "/usr/bin/python3 " + args + " 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  std::string out;
  std::array<char, 4096> buf;
  for (std::size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) out.append(buf.data(), n);
  if (pclose(pipe) != 0) return -1;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  auto pos = out.rfind('\n');  // the summary is the last line
  try {
    return nlohmann::json::parse(pos == std::string::npos ? out : out.substr(pos + 1)).at("images_per_s").get<double>();
  } catch (const nlohmann::json::exception&) {
    return -1;
  }
}

double peer_median(int runs, const std::string& args) {
  std::vector<double> v;
  for (int i = 0; i < runs; ++i) {
    double r = run_peer(args);
    if (r < 0) return -1;
    v.push_back(r);
  }
  return median(v);
}

// Data-parallel training throughput: `ranks` processes of `histoscan train` (one thread each)
// on loopback over Gloo, two epochs of `packed` (seed-cnn in float32 as the training rows,
// batch 128, the notebook's flips); images/s
// of the second epoch's training time (history.csv), the median over `runs`.
double dist_train_rate(const fs::path& exe, const fs::path& packed, const fs::path& tmp, int ranks, int runs) {
  std::vector<double> rates;
  for (int r = 0; r < runs; ++r) {
    const fs::path out = tmp / ("ranks" + std::to_string(ranks) + "-" + std::to_string(r));
    const fs::path log = tmp / ("ranks" + std::to_string(ranks) + "-" + std::to_string(r) + ".log");
    const std::string port = std::to_string(dist::free_loopback_port());
    std::vector<pid_t> pids;
    for (int k = 0; k < ranks; ++k) {
      pid_t pid = ::fork();
      if (pid == 0) {
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);  // the ranks' output, shown on failure
        if (fd >= 0) ::dup2(fd, STDOUT_FILENO), ::dup2(fd, STDERR_FILENO), ::close(fd);
        if (ranks > 1) {
          ::setenv("RANK", std::to_string(k).c_str(), 1);
          ::setenv("WORLD_SIZE", std::to_string(ranks).c_str(), 1);
          ::setenv("LOCAL_WORLD_SIZE", std::to_string(ranks).c_str(), 1);
          ::setenv("MASTER_ADDR", "127.0.0.1", 1);
          ::setenv("MASTER_PORT", port.c_str(), 1);
        }
        const std::string p = packed.string(), o = out.string();
        ::execl(exe.c_str(), exe.c_str(), "-q", "train", p.c_str(), "--valid", p.c_str(), "--out", o.c_str(), "--epochs", "2",
                "--batch", "128", "--model", "seed-cnn", "--no-amp", "--augment", "flips", "--threads", "1", "--no-progress",
                "--patience", "0", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      pids.push_back(pid);
    }
    bool ok = true;
    for (pid_t pid : pids) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    if (!ok) {
      std::ifstream lf(log);
      std::string line, last;
      while (std::getline(lf, line)) last = line;
      throw std::runtime_error("bench: distributed training with " + std::to_string(ranks) + " ranks failed: " + last);
    }
    std::ifstream f(out / "history.csv");
    std::string line, last;
    while (std::getline(f, line)) last = line;
    double seconds = std::stod(last.substr(last.rfind(',') + 1));
    std::ifstream cf(out / "config.json");
    rates.push_back(nlohmann::json::parse(cf).at("train_patches").get<double>() / seconds);
  }
  return median(rates);
}

nlohmann::json row(const std::string& name, const std::string& unit, double ours, double peer = -1) {
  nlohmann::json r = {{"name", name}, {"unit", unit}, {"histoscan", ours}};
  r["peer"] = peer > 0 ? nlohmann::json(peer) : nlohmann::json(nullptr);
  r["ratio"] = peer > 0 ? nlohmann::json(ours / peer) : nlohmann::json(nullptr);
  return r;
}

// import histoscan: the same seed-cnn checkpoint loaded by the Python module beside the binary
// (BUILD/python) and scoring the store from a NumPy array, against histoscan's own inference
// from memory (the peer column). No row where the module or NumPy is missing.
// `reference` times histoscan's own inference again right after the child, and the peer column
// is the mean of that and `infer_rate` (measured before), so a machine whose load changes
// during the bench weighs on both columns alike.
void python_predict_row(const BenchOptions& o, const fs::path& dir, const data::PatchStore& store, int threads, double infer_rate,
                        const std::function<double()>& reference, nlohmann::json& results) {
  const fs::path module_dir = o.exe.empty() ? fs::path() : o.exe.parent_path() / "python";
  if (module_dir.empty() || !fs::exists(module_dir)) {
    log::warn("bench: no Python row (no module in " + module_dir.string() + "; build with -DHISTOSCAN_PYTHON=ON)");
    return;
  }
  log::info("bench: model.predict from NumPy (import histoscan)");
  {
    std::ofstream raw(dir / "patches.u8", std::ios::binary);
    raw.write(reinterpret_cast<const char*>(store.pixels.data()), static_cast<std::streamsize>(store.pixels.size()));
    std::ofstream script(dir / "python_predict.py");
    script << R"(import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import histoscan
checkpoint, raw, n, runs, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
histoscan.set_threads(threads)
model = histoscan.load(checkpoint, device="cpu")
x = np.fromfile(raw, dtype=np.uint8).reshape(n, 96, 96, 3)
model.predict(x[:256], batch=256)
times = []
for _ in range(runs):
    t = time.perf_counter()
    model.predict(x, batch=256)
    times.append(time.perf_counter() - t)
print(json.dumps({"images_per_s": n / statistics.median(times)}))
)";
  }
  double rate = run_peer((dir / "python_predict.py").string() + " " + module_dir.string() + " " + (dir / "seed-cnn.pt").string() +
                         " " + (dir / "patches.u8").string() + " " + std::to_string(store.size()) + " " + std::to_string(o.runs) +
                         " " + std::to_string(threads));
  if (rate < 0) {
    log::warn("bench: the Python row failed (import histoscan from " + module_dir.string() + ")");
    return;
  }
  results.push_back(
      row("import histoscan: model.predict from NumPy vs histoscan", "images/s", rate, (infer_rate + reference()) / 2));
}

}  // namespace

double seed_cnn_flops_per_patch() {
  auto net = model::make_model("seed-cnn");
  return model::flops_per_patch(net);
}

namespace {

// What every stage of the bench works on: the options, the patches (alternating classes, decoded
// once into the store) and a scratch folder; each stage appends its rows to `results`.
struct BenchRun {
  const BenchOptions& o;
  int threads;
  c10::Device device;
  data::PatchIndex index;
  std::vector<std::size_t> rows;  // of index.entries, in the store's order
  std::size_t n = 0;
  data::PatchStore store;
  fs::path tmp;
  nlohmann::json results = nlohmann::json::array();
};

// Up to `images` rows of a class-folder index, both classes in turn, so the peer's ImageFolder
// finds both folders filled.
std::vector<std::size_t> alternate_classes(const data::PatchIndex& index, std::size_t images) {
  std::vector<std::size_t> by_class[2];
  for (std::size_t i = 0; i < index.entries.size(); ++i) by_class[index.entries[i].label].push_back(i);
  std::vector<std::size_t> rows;
  for (std::size_t k = 0; rows.size() < images && k < index.entries.size(); ++k)
    for (const auto& members : by_class)
      if (k < members.size() && rows.size() < images) rows.push_back(members[k]);
  return rows;
}

// The bench's seed-cnn as trained: the same weights every call (scored folded, unfolded and
// saved for the child scans).
torch::nn::Sequential bench_seed_cnn() {
  torch::manual_seed(1);
  return model::make_model("seed-cnn");
}

// seed-cnn as evaluate, predict and scan run it (with amp: all but the last layer in bfloat16).
torch::nn::Sequential inference_net(const BenchRun& b, bool amp) {
  auto net = bench_seed_cnn();
  net->eval();
  model::use_channels_last(*net);
  predict::prepare_inference(net, b.device.str(), amp);
  return net;
}

// The median time to score the store with `net`, after one warm-up batch.
double inference_seconds(const BenchRun& b, torch::nn::Sequential& net, bool amp, int cpu_rows = predict::kCpuInferenceRows) {
  predict::predict_logits(net, b.store.pixels.data(), std::min<std::size_t>(b.n, 256), 256, b.device, 1, amp, cpu_rows);
  return median_seconds(b.o.runs,
                        [&] { predict::predict_logits(net, b.store.pixels.data(), b.n, 256, b.device, 1, amp, cpu_rows); });
}

// Decoding into the store; the store itself is kept for the other stages.
void decode_rows(BenchRun& b, const data::LoadOptions& load) {
  log::info("bench: decode " + std::to_string(b.n) + " files into the store");
  double decode_s = median_seconds(b.o.runs, [&] { data::load_patches(b.index, b.rows, load); });
  b.store = data::load_patches(b.index, b.rows, load);
  b.results.push_back(
      row("decode into store (" + std::string(b.index.entries[0].path.extension()) + ")", "images/s", double(b.n) / decode_s));
}

struct Inference {
  torch::nn::Sequential net{nullptr};      // float32, folded: also predict's and scan's
  torch::nn::Sequential amp_net{nullptr};  // the same in bfloat16 but for the last layer (--amp)
  double rate = 0;                         // images/s
};

// Inference from memory: float32 against the machine's matmul rate, folded against as trained,
// rows at a time, and --amp against float32 and the bfloat16 matmul rate.
Inference inference_rows(BenchRun& b, double gflops_mm, double gflops_mm_bf16) {
  log::info("bench: inference from memory");
  Inference inf;
  inf.net = inference_net(b, false);
  inf.rate = double(b.n) / inference_seconds(b, inf.net, false);
  const double flops = seed_cnn_flops_per_patch();
  b.results.push_back(row("inference from memory", "images/s", inf.rate));
  b.results.push_back(row("inference compute", "GFLOP/s", inf.rate * flops / 1e9));
  b.results.push_back(row("inference compute / the faster matmul", "%", 100.0 * inf.rate * flops / 1e9 / gflops_mm));
  // The peer column of this row is the same network scored with its BatchNorm layers as
  // trained (prepare_inference without model::fold_batchnorm).
  auto as_trained = bench_seed_cnn();
  as_trained->eval();
  model::use_channels_last(*as_trained);
  as_trained->to(b.device);
  b.results.push_back(row("inference, BatchNorm folded vs as trained", "images/s", inf.rate,
                          double(b.n) / inference_seconds(b, as_trained, false)));
  if (!b.device.is_cuda()) {
    // The peer column of these rows is the same network scored kCpuInferenceRows (16) rows at
    // a time, as evaluate, predict and scan score on the CPU.
    for (int rows : {8, 32, 64})
      b.results.push_back(row("inference " + std::to_string(rows) + " rows at a time vs 16", "images/s",
                              double(b.n) / inference_seconds(b, inf.net, false, rows), inf.rate));
  }
  inf.amp_net = inference_net(b, true);
  // The peer column of this row is histoscan's own float32 inference.
  const double amp_rate = double(b.n) / inference_seconds(b, inf.amp_net, true);
  b.results.push_back(row("inference --amp vs float32", "images/s", amp_rate, inf.rate));
  if (gflops_mm_bf16 > 0 && !b.device.is_cuda())
    b.results.push_back(row("inference --amp compute / the bf16 matmul", "%", 100.0 * amp_rate * flops / 1e9 / gflops_mm_bf16));
  return inf;
}

// The default built-in model, as evaluate, predict and scan run it when given no checkpoint:
// float32 and --amp, each against its matmul rate, and the largest change --amp makes to a
// probability on the bench's patches. No rows where the model is not at hand.
void default_model_rows(BenchRun& b, const MatmulRates& mm) {
  model::BuiltinModel builtin;
  try {
    builtin = model::default_model();
  } catch (const InputError& e) {
    log::warn(std::string("bench: no rows for the default model (") + e.what() + ")");
    return;
  }
  log::info("bench: inference with the default model (" + builtin.name + ")");
  auto f32 = model::load_checkpoint(builtin.path).net;
  const double flops = model::flops_per_patch(f32);
  auto amp = model::load_checkpoint(builtin.path).net;  // a second copy (resnet's modules cannot clone())
  predict::prepare_inference(f32, b.device.str(), false);
  predict::prepare_inference(amp, b.device.str(), true);
  const double f32_rate = double(b.n) / inference_seconds(b, f32, false);
  const double amp_rate = double(b.n) / inference_seconds(b, amp, true);
  const std::string name = "inference, " + builtin.name;
  b.results.push_back(row(name + ", float32", "images/s", f32_rate));
  b.results.push_back(
      row(name + ", float32 compute / the faster matmul", "%", 100.0 * f32_rate * flops / 1e9 / std::max(mm.blas, mm.onednn)));
  b.results.push_back(row(name + ", --amp vs float32", "images/s", amp_rate, f32_rate));
  if (mm.onednn_bf16 > 0 && !b.device.is_cuda())
    b.results.push_back(row(name + ", --amp compute / the bf16 matmul", "%", 100.0 * amp_rate * flops / 1e9 / mm.onednn_bf16));
  const auto p32 = predict::sigmoid(predict::predict_logits(f32, b.store.pixels.data(), b.n, 256, b.device, 1, false));
  const auto p16 = predict::sigmoid(predict::predict_logits(amp, b.store.pixels.data(), b.n, 256, b.device, 1, true));
  double change = 0;
  for (std::size_t i = 0; i < b.n; ++i) change = std::max(change, std::abs(p16[i] - p32[i]));
  b.results.push_back(row(name + ", --amp: largest probability change", "percentage points", 100.0 * change));
}

// The same seed-cnn exported (histoscan export): ONNX in OpenCV's DNN module and TorchScript in
// LibTorch, on the store as they take it (float N x 3 x 96 x 96 in [0, 1], 64 at a time), and
// from Python (import histoscan); the peer column is histoscan's own inference from memory.
void export_rows(BenchRun& b, Inference& inf) {
  log::info("bench: exported models (ONNX in OpenCV DNN, TorchScript in LibTorch)");
  const fs::path dir = fs::temp_directory_path() / ("histoscan-bench-export-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  model::save_checkpoint(dir / "seed-cnn.pt", bench_seed_cnn(), {{"model", "seed-cnn"}, {"threshold", 0.5}});
  interop::ExportOptions eo;
  eo.check_patches = 16;
  eo.format = interop::ExportFormat::onnx;
  interop::export_model(dir / "seed-cnn.pt", dir / "model.onnx", eo);
  eo.format = interop::ExportFormat::torchscript;
  interop::export_model(dir / "seed-cnn.pt", dir / "model.pt", eo);
  const auto n = static_cast<int64_t>(b.n);
  auto u8 = torch::from_blob(b.store.pixels.data(), {n, 96, 96, 3}, torch::kUInt8);
  auto x = model::to_float_channels_last(u8).contiguous();
  cv::setNumThreads(b.threads);
  cv::dnn::Net onnx = cv::dnn::readNetFromONNX((dir / "model.onnx").string());
  onnx.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  auto run_onnx = [&] {
    for (int64_t start = 0; start < n; start += 64) {
      auto chunk = x.narrow(0, start, std::min<int64_t>(64, n - start)).contiguous();
      const int sizes[4] = {static_cast<int>(chunk.size(0)), 3, 96, 96};
      onnx.setInput(cv::Mat(4, sizes, CV_32F, chunk.data_ptr<float>()), "image");
      onnx.forward("probability");
    }
  };
  run_onnx();
  b.results.push_back(
      row("exported ONNX in OpenCV DNN vs histoscan", "images/s", double(n) / median_seconds(b.o.runs, run_onnx), inf.rate));
  auto script = torch::jit::load((dir / "model.pt").string());
  auto run_script = [&] {
    c10::InferenceMode guard;
    for (int64_t start = 0; start < n; start += 64) script.forward({x.narrow(0, start, std::min<int64_t>(64, n - start))});
  };
  run_script();
  b.results.push_back(row("exported TorchScript in LibTorch vs histoscan", "images/s",
                          double(n) / median_seconds(b.o.runs, run_script), inf.rate));
  python_predict_row(
      b.o, dir, b.store, b.threads, inf.rate, [&] { return double(b.n) / inference_seconds(b, inf.net, false); }, b.results);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// A Kaggle-style TIFF folder for prediction (tmp/tif), and class folders of the same files for
// the peer (tmp/cls, links to the originals).
void write_bench_folders(const BenchRun& b) {
  fs::create_directories(b.tmp / "tif");
  fs::create_directories(b.tmp / "cls/0");
  fs::create_directories(b.tmp / "cls/1");
  for (std::size_t i = 0; i < b.n; ++i) {
    data::write_patch(b.tmp / "tif" / (b.store.ids[i] + ".tif"), b.store.image(i));
    const auto& e = b.index.entries[b.rows[i]];
    fs::create_symlink(fs::absolute(e.path), b.tmp / "cls" / std::to_string(e.label) / e.path.filename());
  }
}

// Median seconds of `histoscan predict` over the TIFF folder (with amp: `--amp`, net from
// inference_net(b, true)).
double predict_seconds(const BenchRun& b, torch::nn::Sequential& net, bool amp = false) {
  log::info(std::string("bench: predict over a folder of TIFF files") + (amp ? " under --amp" : ""));
  data::SourceOptions unlabeled;
  unlabeled.require_labels = false;
  auto tif_index = data::index_source(b.tmp / "tif", unlabeled);
  pipeline::StreamOptions stream;
  stream.threads = b.threads;
  stream.progress = false;
  stream.amp = amp;
  return median_seconds(b.o.runs, [&] { pipeline::predict_to_csv(net, tif_index, b.tmp / "out.csv", b.device, stream); });
}

// A whole slide of about 2n tissue tiles (reading, tissue detection, tiling and the network):
// its median tiles/s and tile count (with amp: `--amp`, net from inference_net(b, true)).
std::pair<double, std::size_t> scan_rate(const BenchRun& b, torch::nn::Sequential& net, const slide::SynthSlideSpec& spec,
                                         bool amp = false) {
  log::info(std::string("bench: scan a test slide") + (amp ? " under --amp" : ""));
  if (!fs::exists(b.tmp / "slide.tif")) slide::write_synth_slide(b.tmp / "slide.tif", &b.index, spec);
  scan::ScanOptions scan_options;
  scan_options.progress = false;
  scan_options.overwrite = true;
  scan_options.amp = amp;
  std::vector<double> rates;
  std::size_t tiles = 0;
  for (int r = 0; r < b.o.runs; ++r) {
    auto s = scan::scan_slide(net, b.device, b.tmp / "slide.tif", b.tmp / "scan", scan_options);
    tiles = s["tiles_scored"].get<std::size_t>();
    rates.push_back(double(tiles) / s["seconds"].get<double>());  // all of it: thumbnail, tissue, outputs
  }
  std::sort(rates.begin(), rates.end());
  return {rates[rates.size() / 2], tiles};
}

// Seconds `histoscan scan` takes in a child process, whole (the model loaded once per child).
double child_scan(const BenchRun& b, const fs::path& model, const fs::path& input, const fs::path& out) {
  std::string cmd = b.o.exe.string() + " -q scan " + model.string() + " " + input.string() + " --out " + out.string() +
                    " --no-progress --threads " + std::to_string(b.threads);
  auto t0 = Clock::now();
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("bench: the child scan failed: " + cmd);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

nlohmann::json summary_of(const fs::path& dir) { return nlohmann::json::parse(std::ifstream(dir / "summary.json")); }

// Peak memory must not grow with the slide: a child process scans a huge canvas of glass with
// the same tissue mosaic at its centre, and reports its own peak RSS.
nlohmann::json big_slide(const BenchRun& b, const slide::SynthSlideSpec& spec) {
  const auto side = b.o.slide_side;
  log::info("bench: write and scan a " + std::to_string(side) + " x " + std::to_string(side) + " slide");
  slide::SynthSlideSpec huge = spec;
  huge.width = huge.height = side;
  auto t_write = Clock::now();
  slide::write_synth_slide(b.tmp / "huge.tif", &b.index, huge);
  double write_s = std::chrono::duration<double>(Clock::now() - t_write).count();
  // The network as trained: the bench's `net` is folded for inference, which no checkpoint holds.
  model::save_checkpoint(b.tmp / "bench.pt", bench_seed_cnn(),
                         {{"model", "seed-cnn"}, {"model_options", nlohmann::json::object()}, {"threshold", 0.5}});
  child_scan(b, b.tmp / "bench.pt", b.tmp / "huge.tif", b.tmp / "huge-scan");
  auto s = summary_of(b.tmp / "huge-scan");
  return {{"side", side},
          {"file_mib", double(fs::file_size(b.tmp / "huge.tif")) / (1 << 20)},
          {"write_seconds", write_s},
          {"tiles_scored", s["tiles_scored"]},
          {"tiles_total", s["tiles_total"]},
          {"seconds", s["seconds"]},
          {"peak_rss_mib", s["peak_rss_mib"]}};
}

// A cohort against one slide of the same tissue, each scanned by one child `histoscan scan`: 8
// slides of 6 x 6 patches, and one of 24 x 12 (8 times their mosaic). Then 20 such slides, whose
// peak RSS after the first and after the last (summary.json's peak so far) must not grow with
// the cohort. Returns the figures; its rows go into `rows`.
nlohmann::json cohort_bench(const BenchRun& b, std::vector<nlohmann::json>& rows) {
  log::info("bench: a cohort of 8 small slides against one slide of their size, and 20 slides' peak memory");
  const fs::path& tmp = b.tmp;
  model::save_checkpoint(tmp / "cohort.pt", bench_seed_cnn(),
                         {{"model", "seed-cnn"}, {"model_options", nlohmann::json::object()}, {"threshold", 0.5}});
  slide::SynthSlideSpec small;
  small.cols = small.rows = 6;
  small.tumour = cv::Rect(2, 2, 2, 2);
  fs::create_directories(tmp / "cohort8");
  fs::create_directories(tmp / "cohort20");
  for (int k = 0; k < 20; ++k) {
    small.seed = static_cast<std::uint64_t>(k) + 1;
    fs::path f = tmp / "cohort20" / ("s" + std::to_string(100 + k) + ".tif");
    slide::write_synth_slide(f, &b.index, small);
    if (k < 8) fs::copy_file(f, tmp / "cohort8" / f.filename());
  }
  slide::SynthSlideSpec large = small;
  large.cols = 24;
  large.rows = 12;
  large.tumour = cv::Rect(8, 4, 8, 4);
  slide::write_synth_slide(tmp / "large.tif", &b.index, large);
  const fs::path model = tmp / "cohort.pt";
  double large_s = child_scan(b, model, tmp / "large.tif", tmp / "large-scan");
  double large_tiles = summary_of(tmp / "large-scan")["tiles_scored"].get<double>();
  double cohort_s = child_scan(b, model, tmp / "cohort8", tmp / "cohort8-scan");
  double cohort_tiles = 0;
  for (const auto& e : fs::directory_iterator(tmp / "cohort8-scan/slides"))
    cohort_tiles += summary_of(e.path())["tiles_scored"].get<double>();
  child_scan(b, model, tmp / "cohort20", tmp / "cohort20-scan");
  double first_rss = summary_of(tmp / "cohort20-scan/slides/s100")["peak_rss_mib"].get<double>();
  double last_rss = summary_of(tmp / "cohort20-scan/slides/s119")["peak_rss_mib"].get<double>();
  rows = {
      row("scan cohort of 8 slides vs 1 slide of 8x their mosaic", "images/s", cohort_tiles / cohort_s, large_tiles / large_s),
      row("scan cohort of 20 slides: peak RSS after the last vs the first", "MiB", last_rss, first_rss)};
  return {{"large", {{"mosaic", "24x12"}, {"tiles", large_tiles}, {"seconds", large_s}}},
          {"cohort8", {{"mosaic", "8 x 6x6"}, {"tiles", cohort_tiles}, {"seconds", cohort_s}}},
          {"cohort20_peak_rss_mib", {{"after_first", first_rss}, {"after_last", last_rss}}}};
}

struct TrainRates {
  double float32 = 0, amp = 0, channels_last = 0, augment = 0, rank1 = 0, rank2 = 0;  // images/s
};

TrainRates train_rates(const BenchRun& b) {
  TrainRates r;
  log::info("bench: training steps (batch 128, flips and standardization)");
  train::TrainConfig float32;  // --memory-format auto: NCHW on the CPU
  r.float32 = train_images_per_s(b.store, b.o, b.device, float32);
  log::info("bench: training steps under --amp (bfloat16 autocast)");
  auto amp = float32;
  amp.amp = true;
  r.amp = train_images_per_s(b.store, b.o, b.device, amp);
  log::info("bench: training steps in float32, --memory-format channels-last");
  auto channels_last = float32;
  channels_last.memory_format = "channels-last";
  r.channels_last = train_images_per_s(b.store, b.o, b.device, channels_last);
  log::info(std::string("bench: the default recipe's input pipeline (") + train::kDefaultAugment + ")");
  r.augment = augment_images_per_s(b.store, b.o, b.device);
  log::info("bench: data-parallel training, 1 and 2 processes of one thread (Gloo on loopback)");
  data::write_packed(b.store, b.tmp / "bench.h5");
  r.rank1 = dist_train_rate(b.o.exe, b.tmp / "bench.h5", b.tmp, 1, b.o.runs);
  r.rank2 = dist_train_rate(b.o.exe, b.tmp / "bench.h5", b.tmp, 2, b.o.runs);
  return r;
}

struct PeerRates {
  double train = -1, train_preload = -1, predict = -1, predict_preload = -1;  // images/s; -1: not run
};

// The PyTorch peer on the same files, where it and Debian's python3-torch are at hand.
PeerRates peer_rates(const BenchRun& b) {
  PeerRates r;
  const auto& o = b.o;
  bool peer = !o.peer.empty() && fs::exists(o.peer) &&
              std::system("/usr/bin/python3 -c 'import torch, torchvision, PIL' 2>/dev/null") == 0;
  if (!peer) {
    log::warn("bench: no peer rows (" + o.peer.string() +
              " or Debian's python3-torch, python3-torchvision or python3-pil missing)");
    return r;
  }
  log::info("bench: the PyTorch peer (this takes a while)");
  // Two epochs so the peer's first, slower step weighs less; it reports images over seconds trained.
  std::string t = " --threads " + std::to_string(b.threads);
  std::string train = o.peer.string() + " train --data " + (b.tmp / "cls").string() + " --epochs 2" + t;
  std::string pred = o.peer.string() + " predict --data " + (b.tmp / "tif").string() + t;
  r.train = peer_median(o.runs, train);
  r.train_preload = peer_median(o.runs, train + " --preload");
  r.predict = peer_median(o.runs, pred);
  r.predict_preload = peer_median(o.runs, pred + " --preload");
  return r;
}

}  // namespace

nlohmann::json run_bench(const BenchOptions& o) {
  const int threads = resolve_threads(o.threads);
  torch::set_num_threads(threads);
  BenchRun b{o, threads, predict::resolve_device(o.device), data::index_source(o.data, data::SourceOptions{}), {}, 0, {}, {}};
  if (b.index.kind != data::SourceKind::class_folders)
    throw InputError("--data " + o.data.string() +
                     ": the bench needs class folders 0/ and 1/ of patches (e.g. pcam-subset/valid)");
  b.rows = alternate_classes(b.index, static_cast<std::size_t>(o.images));
  b.n = b.rows.size();
  data::LoadOptions load;
  load.threads = threads;
  load.progress = false;

  log::info("bench: matrix multiply");
  const MatmulRates mm = matmul_gflops(o.runs);
  b.results.push_back(row("fp32 matmul 2048^3, torch::mm (BLAS)", "GFLOP/s", mm.blas));
  b.results.push_back(row("fp32 matmul 2048^3, oneDNN (1x1 convolution)", "GFLOP/s", mm.onednn));
  if (mm.onednn_bf16 > 0) b.results.push_back(row("bf16 matmul 2048^3, oneDNN (1x1 convolution)", "GFLOP/s", mm.onednn_bf16));
  decode_rows(b, load);
  Inference inf = inference_rows(b, std::max(mm.blas, mm.onednn), mm.onednn_bf16);
  default_model_rows(b, mm);
  export_rows(b, inf);

  b.tmp = fs::temp_directory_path() / ("histoscan-bench-" + std::to_string(::getpid()));
  write_bench_folders(b);
  const double predict_s = predict_seconds(b, inf.net);
  slide::SynthSlideSpec spec;
  // About 2n tissue tiles (a mosaic cell gives about 3.8 at stride 32 once glass and pale fat are left out).
  spec.cols = spec.rows = std::clamp(static_cast<int>(std::lround(std::sqrt(double(b.n) / 1.9))), 4, 40);
  spec.tumour = cv::Rect(spec.cols / 4, spec.rows / 4, spec.cols / 2, spec.rows / 2);
  const auto [scan_tiles_per_s, scan_tiles] = scan_rate(b, inf.net, spec);
  const double predict_amp_s = predict_seconds(b, inf.amp_net, /*amp=*/true);
  const double scan_amp_tiles_per_s = scan_rate(b, inf.amp_net, spec, /*amp=*/true).first;
  const nlohmann::json big = o.slide_side > 0 ? big_slide(b, spec) : nlohmann::json(nullptr);
  std::vector<nlohmann::json> cohort_rows;
  const nlohmann::json cohort = o.exe.empty() ? nlohmann::json(nullptr) : cohort_bench(b, cohort_rows);
  const TrainRates tr = train_rates(b);
  const PeerRates peer = peer_rates(b);

  auto& results = b.results;
  results.push_back(row("training vs peer (DataLoader)", "images/s", tr.float32, peer.train));
  results.push_back(row("training vs peer --preload", "images/s", tr.float32, peer.train_preload));
  // The peer column of the first is histoscan's float32 training; the peer has no --amp.
  results.push_back(row("training --amp vs float32", "images/s", tr.amp, tr.float32));
  results.push_back(row("training --amp vs peer --preload", "images/s", tr.amp, peer.train_preload));
  // Float32 in channels-last memory: on the CPU not the default (its BatchNorm sums less
  // exactly, docs/performance.md), so a row of its own.
  results.push_back(
      row("training --memory-format channels-last vs peer --preload", "images/s", tr.channels_last, peer.train_preload));
  results.push_back(row(std::string("input pipeline: ") + train::kDefaultAugment + ", standardize", "images/s", tr.augment));
  // The peer column holds one process of one thread: the ratio is the speed-up of 2 ranks.
  results.push_back(row("train, 2 ranks x 1 thread vs 1 rank x 1 thread", "images/s", tr.rank2, tr.rank1));
  results.push_back(row("train, 2 ranks: scaling efficiency", "%", 100.0 * tr.rank2 / (2.0 * tr.rank1)));
  results.push_back(row("predict TIFF folder vs peer (DataLoader)", "images/s", double(b.n) / predict_s, peer.predict));
  results.push_back(row("predict TIFF folder vs peer --preload", "images/s", double(b.n) / predict_s, peer.predict_preload));
  // The peer column of this row is histoscan's own predict: scan should be within 20% of it.
  results.push_back(row("scan slide tiles vs histoscan predict", "images/s", scan_tiles_per_s, double(b.n) / predict_s));
  // The peer column of these two is the same command in float32.
  results.push_back(
      row("predict TIFF folder --amp vs float32", "images/s", double(b.n) / predict_amp_s, double(b.n) / predict_s));
  results.push_back(row("scan slide tiles --amp vs float32", "images/s", scan_amp_tiles_per_s, scan_tiles_per_s));
  for (auto& r : cohort_rows) results.push_back(std::move(r));
  if (!big.is_null()) {
    std::string side = std::to_string(o.slide_side);
    results.push_back(row("scan " + side + "^2 slide: peak RSS", "MiB", big["peak_rss_mib"].get<double>()));
    results.push_back(
        row("scan " + side + "^2 slide: tiles/s", "images/s", big["tiles_scored"].get<double>() / big["seconds"].get<double>()));
  }
  std::error_code ec;
  fs::remove_all(b.tmp, ec);

  return {{"machine",
           {{"cpu", cpu_model_name()},
            {"cores", std::thread::hardware_concurrency()},
            {"threads", threads},
            {"libtorch", TORCH_VERSION},
            {"device", b.device.str()}}},
          {"images", b.n},
          {"runs", o.runs},
          {"seed_cnn_gflop_per_patch", seed_cnn_flops_per_patch() / 1e9},
          {"scan_slide", {{"mosaic", std::to_string(spec.cols) + "x" + std::to_string(spec.rows)}, {"tiles", scan_tiles}}},
          {"big_slide", big},
          {"cohort", cohort},
          {"results", results}};
}

std::string format_table(const nlohmann::json& j) {
  std::ostringstream out;
  char buf[256];
  out << "| measurement | unit | histoscan | peer | ratio |\n| --- | --- | ---: | ---: | ---: |\n";
  for (const auto& r : j.at("results")) {
    auto num = [](const nlohmann::json& v, const char* fmt) {
      if (v.is_null()) return std::string("-");
      char b[32];
      std::snprintf(b, sizeof b, fmt, v.get<double>());
      return std::string(b);
    };
    std::snprintf(buf, sizeof buf, "| %s | %s | %s | %s | %s |\n", r["name"].get<std::string>().c_str(),
                  r["unit"].get<std::string>().c_str(), num(r["histoscan"], "%.1f").c_str(), num(r["peer"], "%.1f").c_str(),
                  num(r["ratio"], "%.2fx").c_str());
    out << buf;
  }
  return out.str();
}

}  // namespace histoscan::bench
