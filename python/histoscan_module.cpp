// `import histoscan`: the C++ library from Python, NumPy arrays in and out (pybind11).
// Models load once and score uint8 N x 96 x 96 x 3 arrays with the GIL released; metrics,
// patches, slide scans and training go through the same library code as the command line.
#include <signal.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "app.h"
#include "commands.h"
#include "cutoff_flags.h"
#include "histoscan/data/image_io.h"
#include "histoscan/data/source.h"
#include "histoscan/data/stain.h"
#include "histoscan/data/store.h"
#include "histoscan/eval/analysis.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/scan/scanner.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/sysinfo.h"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace histoscan::python {
namespace {

// tta= as Python gives it: False or True (the patch as it is, or all 8 views, as --tta), or a
// number of views, 1, 2, 4 or 8 (as --tta=N).
int views_of(const py::handle& tta) {
  if (py::isinstance<py::bool_>(tta)) return tta.cast<bool>() ? predict::kAllViews : 1;
  if (PyIndex_Check(tta.ptr())) {
    const auto views = py::reinterpret_steal<py::int_>(PyNumber_Index(tta.ptr())).cast<long long>();
    if (predict::is_view_count(views)) return static_cast<int>(views);
    throw py::value_error("tta must be False, True or a number of views, 1, 2, 4 or 8; got " + std::to_string(views));
  }
  throw py::type_error("tta must be False, True or a number of views, 1, 2, 4 or 8; got " +
                       std::string(py::str(tta.get_type().attr("__name__"))));
}

// JSON to Python objects (dict, list, float, ..., None for null) through Python's json module.
py::object to_python(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// A histoscan checkpoint (or a model made elsewhere that the library accepts), prepared for
// inference once. Calls from several Python threads take turns on the network.
class Model {
 public:
  Model(const fs::path& path, const std::string& device, bool amp) : path_(path), amp_(amp) {
    checkpoint_ = model::load_checkpoint(path);
    stain_ = data::stain_of_model(checkpoint_.meta, path.string());
    device_ = predict::prepare_inference(checkpoint_.net, device, amp);
  }

  py::array_t<float> predict(const py::array& x, const py::object& tta, int batch) {
    const int views = views_of(tta);
    if (batch < 1) throw py::value_error("batch must be at least 1, got " + std::to_string(batch));
    if (!x.dtype().is(py::dtype::of<std::uint8_t>()))
      throw py::value_error("patches must be uint8 (0-255), got dtype " + std::string(py::str(x.dtype())) +
                            "; convert with x.astype(numpy.uint8) if the values are 0-255");
    const int s = data::kPatchSide, c = data::kPatchChannels;
    if (x.ndim() != 4 || x.shape(1) != s || x.shape(2) != s || x.shape(3) != c) {
      std::string shape = "(";
      for (py::ssize_t i = 0; i < x.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(x.shape(i));
      shape += x.ndim() == 1 ? ",)" : ")";
      throw py::value_error("patches must have shape (N, 96, 96, 3) (RGB, height, width, channels last), got " + shape);
    }
    // A C-contiguous view, copied only when the caller's array is strided (a slice, a transpose).
    auto pixels = py::array_t<std::uint8_t, py::array::c_style>::ensure(x);
    const auto n = static_cast<std::size_t>(x.shape(0));
    std::vector<float> logits;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      std::vector<std::uint8_t> recoloured;
      const auto* input = data::normalized_patches(stain_, pixels.data(), n, recoloured);
      if (n) logits = predict::predict_logits(checkpoint_.net, input, n, batch, device_, views, amp_);
    }
    py::array_t<float> out(static_cast<py::ssize_t>(n));
    auto probs = predict::sigmoid(logits);
    float* o = out.mutable_data();
    for (std::size_t i = 0; i < n; ++i) o[i] = static_cast<float>(probs[i]);
    return out;
  }

  py::dict scan(const fs::path& slide_path, const fs::path& out, const py::kwargs& kwargs) {
    slide::ScanOptions o;
    o.threshold = model::saved_threshold(checkpoint_.meta);
    if (checkpoint_.meta.contains("patch_mpp")) o.target_mpp = checkpoint_.meta["patch_mpp"].get<double>();
    o.amp = amp_;
    o.stain = stain_;
    o.progress = false;
    for (auto [key, value] : kwargs) {
      const auto k = key.cast<std::string>();
      if (k == "mpp") o.target_mpp = value.cast<double>();
      else if (k == "slide_mpp") o.slide_mpp = value.cast<double>();
      else if (k == "level") o.level = value.cast<int>();
      else if (k == "stride") o.stride = value.cast<int>();
      else if (k == "min_tissue") o.min_tissue = value.cast<double>();
      else if (k == "tissue_threshold") o.tissue_threshold = value.cast<double>();
      else if (k == "threshold") o.threshold = value.cast<double>();
      else if (k == "smooth") o.smooth = value.cast<int>();
      else if (k == "top_k") o.top_k = value.cast<int>();
      else if (k == "batch") o.batch = value.cast<int>();
      else if (k == "readers") o.readers = value.cast<int>();
      else if (k == "thumbnail") o.thumbnail = value.cast<int>();
      else if (k == "tta") o.views = views_of(value);
      else if (k == "progress") o.progress = value.cast<bool>();
      else if (k == "overwrite") o.overwrite = value.cast<bool>();
      else
        throw py::type_error("scan() got an unexpected keyword argument '" + k +
                             "' (takes mpp, slide_mpp, level, stride, min_tissue, tissue_threshold, threshold, smooth, top_k, "
                             "batch, readers, thumbnail, tta, progress, overwrite)");
    }
    nlohmann::json summary;
    slide::ScanGrid grid;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      slide::check_scan_options(o);
      summary = scan::scan_slide(checkpoint_.net, device_, slide_path, out, o, &grid);
    }
    // The scored tiles: level-0 top-left corners and probabilities, in row-major grid order.
    std::vector<std::int64_t> xs, ys;
    std::vector<float> ps;
    for (int j = 0; j < grid.ny; ++j)
      for (int i = 0; i < grid.nx; ++i)
        if (grid.scored(i, j)) xs.push_back(grid.x0(i)), ys.push_back(grid.y0(j)), ps.push_back(grid.at(i, j));
    py::dict tiles;
    tiles["x"] = py::array_t<std::int64_t>(static_cast<py::ssize_t>(xs.size()), xs.data());
    tiles["y"] = py::array_t<std::int64_t>(static_cast<py::ssize_t>(ys.size()), ys.data());
    tiles["probability"] = py::array_t<float>(static_cast<py::ssize_t>(ps.size()), ps.data());
    tiles["grid"] =
        py::array_t<float>({static_cast<py::ssize_t>(grid.ny), static_cast<py::ssize_t>(grid.nx)}, grid.probability.data());
    py::dict result = to_python(summary);
    result["tiles"] = tiles;
    return result;
  }

  py::object metadata() const { return to_python(checkpoint_.meta); }
  double threshold() const { return model::saved_threshold(checkpoint_.meta); }
  std::string device() const { return device_.str(); }
  std::string repr() const {
    return "<histoscan.Model " + checkpoint_.meta.value("model", std::string("?")) + " from '" + path_.string() + "' on " +
           device_.str() + ">";
  }

 private:
  fs::path path_;
  bool amp_;
  model::Checkpoint checkpoint_;
  data::StainReference stain_;  // the checkpoint's stain normalization (method none without)
  c10::Device device_{c10::kCPU};
  std::mutex mutex_;
};

// Labels as 0/1 ints, probabilities as doubles, from any sequence or array.
std::vector<int> to_labels(const py::array_t<long long, py::array::c_style | py::array::forcecast>& a) {
  std::vector<int> out;
  out.reserve(static_cast<std::size_t>(a.size()));
  for (py::ssize_t i = 0; i < a.size(); ++i) {
    auto v = a.data()[i];
    if (v != 0 && v != 1)
      throw py::value_error("labels must be 0 or 1, got " + std::to_string(v) + " at index " + std::to_string(i));
    out.push_back(static_cast<int>(v));
  }
  return out;
}

py::object metrics(const py::array_t<long long, py::array::c_style | py::array::forcecast>& labels,
                   const py::array_t<double, py::array::c_style | py::array::forcecast>& probabilities,
                   const py::object& threshold, const py::object& target_sensitivity, const py::object& target_specificity,
                   bool youden, int bootstrap, std::uint64_t seed) {
  if (labels.ndim() != 1 || probabilities.ndim() != 1 || labels.size() != probabilities.size())
    throw py::value_error("labels and probabilities must be 1-D and of the same length, got " + std::to_string(labels.size()) +
                          " and " + std::to_string(probabilities.size()));
  int rules = !threshold.is_none() + !target_sensitivity.is_none() + !target_specificity.is_none() + youden;
  if (rules > 1) throw py::value_error("give at most one of threshold, target_sensitivity, target_specificity and youden");
  if (bootstrap < 0) throw py::value_error("bootstrap must be 0 or more resamples, got " + std::to_string(bootstrap));
  eval::SummaryOptions o;
  o.bootstrap = bootstrap;
  o.seed = seed;
  // The rule as `histoscan metrics` takes it from its flags (None: not given).
  cli::CutoffFlags cutoff;
  auto given = [](const py::object& v) { return v.is_none() ? std::nan("") : v.cast<double>(); };
  cutoff.threshold = given(threshold);
  cutoff.target_sensitivity = given(target_sensitivity);
  cutoff.target_specificity = given(target_specificity);
  cutoff.youden = youden;
  cutoff.request(o.cutoff);
  auto y = to_labels(labels);
  std::vector<double> p(probabilities.data(), probabilities.data() + probabilities.size());
  nlohmann::json j;
  {
    py::gil_scoped_release release;
    j = eval::to_json(eval::summarize(y, p, o));
  }
  return to_python(j);
}

py::tuple read_patches(const fs::path& data, const py::object& labels, const py::object& limit, bool resize, int threads) {
  long long first = -1;
  if (!limit.is_none() && (first = limit.cast<long long>()) < 0)
    throw py::value_error("limit must be 0 or more, got " + std::to_string(first));
  data::SourceOptions so;
  if (!labels.is_none()) so.labels = labels.cast<fs::path>();
  so.require_labels = false;
  so.allow_missing = true;
  data::PatchStore store;
  {
    py::gil_scoped_release release;
    auto index = data::index_source(data, so);
    data::LoadOptions lo;
    lo.threads = threads;
    lo.decode.resize = resize;
    lo.progress = false;
    std::vector<std::size_t> rows(first < 0 ? index.entries.size()
                                            : std::min<std::size_t>(std::size_t(first), index.entries.size()));
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
    store = data::load_patches(index, rows, lo);
  }
  const auto n = static_cast<py::ssize_t>(store.size());
  py::array_t<std::uint8_t> images({n, py::ssize_t(96), py::ssize_t(96), py::ssize_t(3)});
  if (n) std::memcpy(images.mutable_data(), store.pixels.data(), store.pixels.size());
  py::array_t<int> y(n, store.labels.data());
  return py::make_tuple(images, y, store.ids);
}

// --flag value pairs from keyword arguments: per_class=1000 -> --per-class 1000; True -> --flag;
// False and None -> nothing; a list or tuple -> the flag once with each item (CLI11 takes both).
std::vector<std::string> flags_from(const py::kwargs& kwargs) {
  std::vector<std::string> args;
  for (auto [key, value] : kwargs) {
    std::string flag = "--" + key.cast<std::string>();
    for (auto& ch : flag)
      if (ch == '_') ch = '-';
    if (value.is_none()) continue;
    if (py::isinstance<py::bool_>(value)) {
      if (value.cast<bool>()) args.push_back(flag);
      continue;
    }
    if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
      for (auto item : value) args.push_back(flag), args.push_back(py::str(item).cast<std::string>());
      continue;
    }
    args.push_back(flag);
    args.push_back(py::str(value).cast<std::string>());
  }
  return args;
}

// Runs `histoscan train DATA --out OUT ...` (or `--resume RUN`) in this process: progress and
// epochs print as in a terminal; Ctrl-C stops after the step (resume.pt saved) and raises
// KeyboardInterrupt. Returns the run's best model.
std::unique_ptr<Model> train(const py::object& data, const py::object& out, const py::kwargs& kwargs) {
  std::vector<std::string> args{"histoscan", "train"};
  fs::path run;
  if (kwargs.contains("resume") && !kwargs["resume"].is_none()) {
    if (!data.is_none() || !out.is_none())
      throw py::value_error("resume= continues a run with its own data and folder: give neither data nor out");
    run = kwargs["resume"].cast<fs::path>();
  } else {
    if (data.is_none() || out.is_none()) throw py::value_error("train() needs data and out (or resume=RUN_FOLDER)");
    run = out.cast<fs::path>();
    args.push_back(data.cast<fs::path>().string());
    args.push_back("--out");
    args.push_back(run.string());
  }
  for (auto& a : flags_from(kwargs)) args.push_back(std::move(a));
  // The command line sets the log level from -q/-v: the module's level (set_log_level) unless
  // the call says otherwise, and back to it afterwards.
  const auto level = log::level();
  if (!kwargs.contains("quiet") && !kwargs.contains("verbose")) {
    if (level <= log::Level::warn) args.push_back("--quiet");
    if (level == log::Level::debug) args.push_back("--verbose");
  }
  std::string error;
  int status;
  struct sigaction python_handler {};
  sigaction(SIGINT, nullptr, &python_handler);  // the training installs its own; Python's comes back after
  {
    py::gil_scoped_release release;
    status = cli::run_command_line(args, &error);
  }
  sigaction(SIGINT, &python_handler, nullptr);
  log::set_level(level);
  switch (status) {
    case cli::kExitOk:
      break;
    case cli::kExitInterrupted:
      PyErr_SetString(PyExc_KeyboardInterrupt, error.c_str());
      throw py::error_already_set();
    case cli::kExitInputError:
      throw py::value_error(error);
    default:
      throw std::runtime_error(error);
  }
  return std::make_unique<Model>(run / "best.pt", "auto", false);
}

}  // namespace
}  // namespace histoscan::python

PYBIND11_MODULE(histoscan, m) {
  using namespace histoscan::python;
  using histoscan::python::Model;
  m.doc() = "histoscan: train, evaluate and apply CNNs that find metastatic cancer in 96x96 H&E patches";
  m.attr("__version__") = HISTOSCAN_VERSION;
  histoscan::data::quiet_image_library();
  // As the command line's main() does: glibc keeps freed blocks for reuse instead of mapping and
  // unmapping each large one, which made every batch's activations page-fault afresh (inference
  // from NumPy ran at 150 images/s against the command line's 690; 1,018 with this).
  histoscan::reuse_freed_memory();
  // The library's one-line errors a user can fix come out as ValueError; interrupted training as
  // KeyboardInterrupt (raised by train itself); the rest as RuntimeError.
  py::register_exception_translator(
      [](std::exception_ptr p) {  // NOLINT(performance-unnecessary-value-param): pybind11's signature
        try {
          if (p) std::rethrow_exception(p);
        } catch (const histoscan::InputError& e) {
          PyErr_SetString(PyExc_ValueError, e.what());
        }
      });

  py::class_<Model>(m, "Model", "A trained model, loaded once and prepared for inference (histoscan.load)")
      .def(py::init<const fs::path&, const std::string&, bool>(), py::arg("path"), py::arg("device") = "auto",
           py::arg("amp") = false)
      .def("predict", &Model::predict, py::arg("patches"), py::arg("tta") = false, py::arg("batch") = 256,
           "Tumour probabilities (float32, N) of uint8 patches N x 96 x 96 x 3 (RGB, as PIL, OpenCV after cvtColor and PCam's "
           "HDF5 give them). tta: True averages over the 8 rotations and mirrors (as --tta), 2 over the patch and its mirror, "
           "4 also the half turn (as --tta=N). The GIL is released while the network runs.")
      .def("scan", &Model::scan, py::arg("slide"), py::arg("out"),
           "Scans a whole slide into `out` (heatmap.png, tissue.png, tiles.csv, tumour.geojson, summary.json) and returns the "
           "summary as a dict, with 'tiles': level-0 x, y and probability of each scored tile, and the grid (NaN where not "
           "scored). Keyword arguments as scan's flags: stride, mpp, slide_mpp, level, min_tissue, tissue_threshold, threshold, "
           "smooth, top_k, batch, readers, thumbnail, tta, progress, overwrite.")
      .def_property_readonly("metadata", &Model::metadata, "the checkpoint's metadata (model, options, threshold, training, ...)")
      .def_property_readonly("threshold", &Model::threshold, "the probability at or above which a patch is called tumour")
      .def_property_readonly("device", &Model::device)
      .def("__repr__", &Model::repr);

  m.def(
      "load",
      [](const std::optional<fs::path>& path, const std::string& device, bool amp) {
        return std::make_unique<Model>(path ? *path : histoscan::model::default_model().path, device, amp);
      },
      py::arg("path") = py::none(), py::arg("device") = "auto", py::arg("amp") = false,
      "Loads a histoscan checkpoint (best.pt), an exported TorchScript model with its config.json, a WSInfer model folder, or a "
      "built-in model by name ('pcam-resnet'; no path: the default built-in model). device: auto, cpu or cuda; amp: score in "
      "bfloat16.");
  m.def(
      "metrics", &metrics, py::arg("labels"), py::arg("probabilities"), py::kw_only(), py::arg("threshold") = py::none(),
      py::arg("target_sensitivity") = py::none(), py::arg("target_specificity") = py::none(), py::arg("youden") = false,
      py::arg("bootstrap") = 1000, py::arg("seed") = 13,
      "The numbers `histoscan metrics` writes to metrics.json, as a dict: AUC, classification report, confusion matrix, "
      "operating point, bootstrap intervals, calibration, ROC and PR curves. At most one cut-off rule (default threshold 0.5).");
  m.def("read_patches", &read_patches, py::arg("data"), py::kw_only(), py::arg("labels") = py::none(),
        py::arg("limit") = py::none(), py::arg("resize") = false, py::arg("threads") = 0,
        "(images uint8 N x 96 x 96 x 3, labels int32 N (-1 where unknown), ids) from any DATA the command line takes: a Kaggle "
        "folder with its labels CSV, class folders 0/ and 1/, a PCam HDF5 x file, a packed store, a folder of images. In id "
        "order; limit: the first N only.");
  m.def("train", &train, py::arg("data") = py::none(), py::arg("out") = py::none(),
        "Trains as `histoscan train DATA --out OUT`, keyword arguments being its flags (per_class=2000 for --per-class 2000, "
        "tta=True for --tta), and returns the best model. Ctrl-C stops after the current step and raises KeyboardInterrupt; "
        "resume=OUT continues.");
  m.def(
      "set_threads", [](int threads) { return histoscan::cli::set_threads(threads); }, py::arg("threads"),
      "CPU threads for the networks (0: all cores); returns the count used.");
  m.def(
      "set_log_level",
      [](const std::string& level) {
        using histoscan::log::Level;
        if (level == "debug") histoscan::log::set_level(Level::debug);
        else if (level == "info") histoscan::log::set_level(Level::info);
        else if (level == "warn") histoscan::log::set_level(Level::warn);
        else if (level == "quiet") histoscan::log::set_level(Level::quiet);
        else throw py::value_error("log level must be debug, info, warn or quiet, got '" + level + "'");
      },
      py::arg("level"), "What the library logs on stderr: debug, info (the default), warn or quiet.");
}
