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
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/precision.h"
#include "histoscan/model/preprocess.h"
#include "histoscan/model/registry.h"
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
struct MatmulRates {
  double blas = 0, onednn = 0;
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

nlohmann::json run_bench(const BenchOptions& o) {
  const int threads = resolve_threads(o.threads);
  torch::set_num_threads(threads);
  const c10::Device device = predict::resolve_device(o.device);
  data::SourceOptions so;
  auto index = data::index_source(o.data, so);
  if (index.kind != data::SourceKind::class_folders)
    throw InputError("--data " + o.data.string() +
                     ": the bench needs class folders 0/ and 1/ of patches (e.g. pcam-subset/valid)");
  // Both classes in turn, so the peer's ImageFolder finds both folders filled.
  std::vector<std::size_t> by_class[2];
  for (std::size_t i = 0; i < index.entries.size(); ++i) by_class[index.entries[i].label].push_back(i);
  std::vector<std::size_t> rows;
  for (std::size_t k = 0; rows.size() < static_cast<std::size_t>(o.images) && k < index.entries.size(); ++k)
    for (const auto& members : by_class)
      if (k < members.size() && rows.size() < static_cast<std::size_t>(o.images)) rows.push_back(members[k]);
  const std::size_t n = rows.size();
  data::LoadOptions load;
  load.threads = threads;
  load.progress = false;
  nlohmann::json results = nlohmann::json::array();

  log::info("bench: matrix multiply");
  const MatmulRates mm = matmul_gflops(o.runs);
  const double gflops_mm = std::max(mm.blas, mm.onednn);
  results.push_back(row("fp32 matmul 2048^3, torch::mm (BLAS)", "GFLOP/s", mm.blas));
  results.push_back(row("fp32 matmul 2048^3, oneDNN (1x1 convolution)", "GFLOP/s", mm.onednn));

  log::info("bench: decode " + std::to_string(n) + " files into the store");
  double decode_s = median_seconds(o.runs, [&] { data::load_patches(index, rows, load); });
  auto store = data::load_patches(index, rows, load);
  results.push_back(
      row("decode into store (" + std::string(index.entries[0].path.extension()) + ")", "images/s", double(n) / decode_s));

  log::info("bench: inference from memory");
  // seed-cnn as evaluate, predict and scan run it (with amp: all but the last layer in
  // bfloat16), and the median time to score the store with it after one warm-up batch.
  // The bench's seed-cnn as trained: the same weights every call (scored folded, unfolded and
  // saved for the big slide's child scan below).
  auto bench_seed_cnn = [] {
    torch::manual_seed(1);
    return model::make_model("seed-cnn");
  };
  auto inference_net = [&](bool amp) {
    auto net = bench_seed_cnn();
    net->eval();
    model::use_channels_last(*net);
    predict::prepare_inference(net, device.str(), amp);
    return net;
  };
  auto inference_seconds = [&](torch::nn::Sequential& net, bool amp, int cpu_rows = predict::kCpuInferenceRows) {
    predict::predict_logits(net, store.pixels.data(), std::min<std::size_t>(n, 256), 256, device, false, amp, cpu_rows);
    return median_seconds(o.runs,
                          [&] { predict::predict_logits(net, store.pixels.data(), n, 256, device, false, amp, cpu_rows); });
  };
  auto net = inference_net(false);  // float32, also for the predict and scan rows below
  double infer_rate = double(n) / inference_seconds(net, false);
  double flops = seed_cnn_flops_per_patch();
  results.push_back(row("inference from memory", "images/s", infer_rate));
  results.push_back(row("inference compute", "GFLOP/s", infer_rate * flops / 1e9));
  results.push_back(row("inference compute / the faster matmul", "%", 100.0 * infer_rate * flops / 1e9 / gflops_mm));
  {
    // The peer column of this row is the same network scored with its BatchNorm layers as
    // trained (prepare_inference without model::fold_batchnorm).
    auto as_trained = bench_seed_cnn();
    as_trained->eval();
    model::use_channels_last(*as_trained);
    as_trained->to(device);
    results.push_back(row("inference, BatchNorm folded vs as trained", "images/s", infer_rate,
                          double(n) / inference_seconds(as_trained, false)));
  }
  if (!device.is_cuda()) {
    // The peer column of these rows is the same network scored kCpuInferenceRows (16) rows at
    // a time, as evaluate, predict and scan score on the CPU.
    for (int rows : {8, 32, 64})
      results.push_back(row("inference " + std::to_string(rows) + " rows at a time vs 16", "images/s",
                            double(n) / inference_seconds(net, false, rows), infer_rate));
  }
  auto amp_net = inference_net(true);
  // The peer column of this row is histoscan's own float32 inference.
  results.push_back(row("inference --amp vs float32", "images/s", double(n) / inference_seconds(amp_net, true), infer_rate));

  {
    // The same seed-cnn exported (histoscan export): ONNX in OpenCV's DNN module and TorchScript
    // in LibTorch, on the store as they take it (float N x 3 x 96 x 96 in [0, 1], 64 at a time);
    // the peer column is histoscan's own inference from memory.
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
    auto u8 = torch::from_blob(store.pixels.data(), {static_cast<int64_t>(n), 96, 96, 3}, torch::kUInt8);
    auto x = model::to_float_channels_last(u8).contiguous();
    cv::setNumThreads(threads);
    cv::dnn::Net onnx = cv::dnn::readNetFromONNX((dir / "model.onnx").string());
    onnx.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    auto run_onnx = [&] {
      for (int64_t start = 0; start < static_cast<int64_t>(n); start += 64) {
        auto chunk = x.narrow(0, start, std::min<int64_t>(64, static_cast<int64_t>(n) - start)).contiguous();
        const int sizes[4] = {static_cast<int>(chunk.size(0)), 3, 96, 96};
        onnx.setInput(cv::Mat(4, sizes, CV_32F, chunk.data_ptr<float>()), "image");
        onnx.forward("probability");
      }
    };
    run_onnx();
    results.push_back(
        row("exported ONNX in OpenCV DNN vs histoscan", "images/s", double(n) / median_seconds(o.runs, run_onnx), infer_rate));
    auto script = torch::jit::load((dir / "model.pt").string());
    auto run_script = [&] {
      c10::InferenceMode guard;
      for (int64_t start = 0; start < static_cast<int64_t>(n); start += 64)
        script.forward({x.narrow(0, start, std::min<int64_t>(64, static_cast<int64_t>(n) - start))});
    };
    run_script();
    results.push_back(row("exported TorchScript in LibTorch vs histoscan", "images/s",
                          double(n) / median_seconds(o.runs, run_script), infer_rate));
    python_predict_row(
        o, dir, store, threads, infer_rate, [&] { return double(n) / inference_seconds(net, false); }, results);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  // Kaggle-style TIFF folder for prediction, and class folders of the same files for the peer.
  fs::path tmp = fs::temp_directory_path() / ("histoscan-bench-" + std::to_string(::getpid()));
  fs::create_directories(tmp / "tif");
  fs::create_directories(tmp / "cls/0");
  fs::create_directories(tmp / "cls/1");
  for (std::size_t i = 0; i < n; ++i) {
    data::write_patch(tmp / "tif" / (store.ids[i] + ".tif"), store.image(i));
    const auto& e = index.entries[rows[i]];
    fs::create_symlink(fs::absolute(e.path), tmp / "cls" / std::to_string(e.label) / e.path.filename());
  }

  log::info("bench: predict over a folder of TIFF files");
  data::SourceOptions unlabeled;
  unlabeled.require_labels = false;
  auto tif_index = data::index_source(tmp / "tif", unlabeled);
  predict::StreamOptions stream;
  stream.threads = threads;
  stream.progress = false;
  double predict_s = median_seconds(o.runs, [&] { predict::predict_to_csv(net, tif_index, tmp / "out.csv", device, stream); });

  // A whole slide: reading, tissue detection, tiling and the network, against predict's rate.
  log::info("bench: scan a test slide");
  slide::SynthSlideSpec spec;
  // About 2n tissue tiles (a mosaic cell gives about 3.8 at stride 32 once glass and pale fat are left out).
  spec.cols = spec.rows = std::clamp(static_cast<int>(std::lround(std::sqrt(double(n) / 1.9))), 4, 40);
  spec.tumour = cv::Rect(spec.cols / 4, spec.rows / 4, spec.cols / 2, spec.rows / 2);
  slide::write_synth_slide(tmp / "slide.tif", &index, spec);
  scan::ScanOptions scan_options;
  scan_options.progress = false;
  scan_options.overwrite = true;
  std::vector<double> scan_rates;
  std::size_t scan_tiles = 0;
  for (int r = 0; r < o.runs; ++r) {
    auto s = scan::scan_slide(net, device, tmp / "slide.tif", tmp / "scan", scan_options);
    scan_tiles = s["tiles_scored"].get<std::size_t>();
    scan_rates.push_back(double(scan_tiles) / s["seconds"].get<double>());  // all of it: thumbnail, tissue, outputs
  }
  std::sort(scan_rates.begin(), scan_rates.end());
  double scan_rate = scan_rates[scan_rates.size() / 2];

  nlohmann::json big = nullptr;
  if (o.slide_side > 0) {
    // Peak memory must not grow with the slide: a child process scans a huge canvas of glass
    // with the same tissue mosaic at its centre, and reports its own peak RSS.
    log::info("bench: write and scan a " + std::to_string(o.slide_side) + " x " + std::to_string(o.slide_side) + " slide");
    slide::SynthSlideSpec huge = spec;
    huge.width = huge.height = o.slide_side;
    auto t_write = std::chrono::steady_clock::now();
    slide::write_synth_slide(tmp / "huge.tif", &index, huge);
    double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_write).count();
    // The network as trained: `net` itself is folded for inference, which no checkpoint holds.
    model::save_checkpoint(tmp / "bench.pt", bench_seed_cnn(),
                           {{"model", "seed-cnn"}, {"model_options", nlohmann::json::object()}, {"threshold", 0.5}});
    std::string cmd = o.exe.string() + " -q scan " + (tmp / "bench.pt").string() + " " + (tmp / "huge.tif").string() + " --out " +
                      (tmp / "huge-scan").string() + " --no-progress --threads " + std::to_string(threads);
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("bench: the child scan failed: " + cmd);
    std::ifstream f(tmp / "huge-scan/summary.json");
    auto s = nlohmann::json::parse(f);
    big = {{"side", o.slide_side},
           {"file_mib", double(fs::file_size(tmp / "huge.tif")) / (1 << 20)},
           {"write_seconds", write_s},
           {"tiles_scored", s["tiles_scored"]},
           {"tiles_total", s["tiles_total"]},
           {"seconds", s["seconds"]},
           {"peak_rss_mib", s["peak_rss_mib"]}};
  }

  // A cohort against one slide of the same tissue, each scanned by one child `histoscan scan`
  // (the model loaded once per child) and timed whole: 8 slides of 6 x 6 patches, and one of
  // 24 x 12 (8 times their mosaic). Then 20 such slides, whose peak RSS after the first and
  // after the last (summary.json's peak so far) must not grow with the cohort.
  nlohmann::json cohort = nullptr;
  std::vector<nlohmann::json> cohort_rows;
  if (!o.exe.empty()) {
    log::info("bench: a cohort of 8 small slides against one slide of their size, and 20 slides' peak memory");
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
      slide::write_synth_slide(f, &index, small);
      if (k < 8) fs::copy_file(f, tmp / "cohort8" / f.filename());
    }
    slide::SynthSlideSpec large = small;
    large.cols = 24;
    large.rows = 12;
    large.tumour = cv::Rect(8, 4, 8, 4);
    slide::write_synth_slide(tmp / "large.tif", &index, large);
    auto child_scan = [&](const fs::path& input, const fs::path& out) {
      std::string cmd = o.exe.string() + " -q scan " + (tmp / "cohort.pt").string() + " " + input.string() + " --out " +
                        out.string() + " --no-progress --threads " + std::to_string(threads);
      auto t0 = std::chrono::steady_clock::now();
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("bench: the child scan failed: " + cmd);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    auto summary_of = [](const fs::path& dir) { return nlohmann::json::parse(std::ifstream(dir / "summary.json")); };
    double large_s = child_scan(tmp / "large.tif", tmp / "large-scan");
    double large_tiles = summary_of(tmp / "large-scan")["tiles_scored"].get<double>();
    double cohort_s = child_scan(tmp / "cohort8", tmp / "cohort8-scan");
    double cohort_tiles = 0;
    for (const auto& e : fs::directory_iterator(tmp / "cohort8-scan/slides"))
      cohort_tiles += summary_of(e.path())["tiles_scored"].get<double>();
    child_scan(tmp / "cohort20", tmp / "cohort20-scan");
    double first_rss = summary_of(tmp / "cohort20-scan/slides/s100")["peak_rss_mib"].get<double>();
    double last_rss = summary_of(tmp / "cohort20-scan/slides/s119")["peak_rss_mib"].get<double>();
    cohort = {{"large", {{"mosaic", "24x12"}, {"tiles", large_tiles}, {"seconds", large_s}}},
              {"cohort8", {{"mosaic", "8 x 6x6"}, {"tiles", cohort_tiles}, {"seconds", cohort_s}}},
              {"cohort20_peak_rss_mib", {{"after_first", first_rss}, {"after_last", last_rss}}}};
    cohort_rows = {
        row("scan cohort of 8 slides vs 1 slide of 8x their mosaic", "images/s", cohort_tiles / cohort_s, large_tiles / large_s),
        row("scan cohort of 20 slides: peak RSS after the last vs the first", "MiB", last_rss, first_rss)};
  }

  log::info("bench: training steps (batch 128, flips and standardization)");
  train::TrainConfig float32;  // --memory-format auto: NCHW on the CPU
  double train_rate = train_images_per_s(store, o, device, float32);
  log::info("bench: training steps under --amp (bfloat16 autocast)");
  auto amp = float32;
  amp.amp = true;
  double train_amp_rate = train_images_per_s(store, o, device, amp);
  log::info("bench: training steps in float32, --memory-format channels-last");
  auto channels_last = float32;
  channels_last.memory_format = "channels-last";
  double train_cl_rate = train_images_per_s(store, o, device, channels_last);
  log::info(std::string("bench: the default recipe's input pipeline (") + train::kDefaultAugment + ")");
  double augment_rate = augment_images_per_s(store, o, device);

  log::info("bench: data-parallel training, 1 and 2 processes of one thread (Gloo on loopback)");
  data::write_packed(store, tmp / "bench.h5");
  double rank1 = dist_train_rate(o.exe, tmp / "bench.h5", tmp, 1, o.runs);
  double rank2 = dist_train_rate(o.exe, tmp / "bench.h5", tmp, 2, o.runs);

  double peer_train = -1, peer_train_preload = -1, peer_predict = -1, peer_predict_preload = -1;
  bool peer = !o.peer.empty() && fs::exists(o.peer) &&
              std::system("/usr/bin/python3 -c 'import torch, torchvision, PIL' 2>/dev/null") == 0;
  if (peer) {
    log::info("bench: the PyTorch peer (this takes a while)");
    // Two epochs so the peer's first, slower step weighs less; it reports images over seconds trained.
    std::string t = " --threads " + std::to_string(threads);
    std::string train = o.peer.string() + " train --data " + (tmp / "cls").string() + " --epochs 2" + t;
    std::string pred = o.peer.string() + " predict --data " + (tmp / "tif").string() + t;
    peer_train = peer_median(o.runs, train);
    peer_train_preload = peer_median(o.runs, train + " --preload");
    peer_predict = peer_median(o.runs, pred);
    peer_predict_preload = peer_median(o.runs, pred + " --preload");
  } else {
    log::warn("bench: no peer rows (" + o.peer.string() +
              " or Debian's python3-torch, python3-torchvision or python3-pil missing)");
  }
  results.push_back(row("training vs peer (DataLoader)", "images/s", train_rate, peer_train));
  results.push_back(row("training vs peer --preload", "images/s", train_rate, peer_train_preload));
  // The peer column of the first is histoscan's float32 training; the peer has no --amp.
  results.push_back(row("training --amp vs float32", "images/s", train_amp_rate, train_rate));
  results.push_back(row("training --amp vs peer --preload", "images/s", train_amp_rate, peer_train_preload));
  // Float32 in channels-last memory: on the CPU not the default (its BatchNorm sums less
  // exactly, docs/performance.md), so a row of its own.
  results.push_back(
      row("training --memory-format channels-last vs peer --preload", "images/s", train_cl_rate, peer_train_preload));
  results.push_back(row(std::string("input pipeline: ") + train::kDefaultAugment + ", standardize", "images/s", augment_rate));
  // The peer column holds one process of one thread: the ratio is the speed-up of 2 ranks.
  results.push_back(row("train, 2 ranks x 1 thread vs 1 rank x 1 thread", "images/s", rank2, rank1));
  results.push_back(row("train, 2 ranks: scaling efficiency", "%", 100.0 * rank2 / (2.0 * rank1)));
  results.push_back(row("predict TIFF folder vs peer (DataLoader)", "images/s", double(n) / predict_s, peer_predict));
  results.push_back(row("predict TIFF folder vs peer --preload", "images/s", double(n) / predict_s, peer_predict_preload));
  // The peer column of this row is histoscan's own predict: scan should be within 20% of it.
  results.push_back(row("scan slide tiles vs histoscan predict", "images/s", scan_rate, double(n) / predict_s));
  for (auto& r : cohort_rows) results.push_back(std::move(r));
  if (!big.is_null()) {
    std::string side = std::to_string(o.slide_side);
    results.push_back(row("scan " + side + "^2 slide: peak RSS", "MiB", big["peak_rss_mib"].get<double>()));
    results.push_back(
        row("scan " + side + "^2 slide: tiles/s", "images/s", big["tiles_scored"].get<double>() / big["seconds"].get<double>()));
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);

  return {{"machine",
           {{"cpu", cpu_model_name()},
            {"cores", std::thread::hardware_concurrency()},
            {"threads", threads},
            {"libtorch", TORCH_VERSION},
            {"device", device.str()}}},
          {"images", n},
          {"runs", o.runs},
          {"seed_cnn_gflop_per_patch", flops / 1e9},
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
