#include "histoscan/train/state.h"

#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "histoscan/model/archive.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::train {

using model::load_archive;

namespace {

nlohmann::json to_json(const LoopState& s) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& r : s.history)
    history.push_back({r.epoch, r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.val_auc, r.lr, r.seconds});
  // Infinity is not JSON: an unset best is stored as null.
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"epoch", s.epoch},
          {"step", s.step},
          {"loss_sum", s.loss_sum},
          {"correct", s.correct},
          {"seen", s.seen},
          {"lr", s.lr},
          {"best_loss", number(s.best_loss)},
          {"plateau_best", number(s.plateau_best)},
          {"since_best", s.since_best},
          {"since_plateau_best", s.since_plateau_best},
          {"best_epoch", s.best_epoch},
          {"finished", s.finished},
          {"wall_seconds", s.wall_seconds},
          {"longest_epoch_seconds", s.longest_epoch_seconds},
          {"ema_updates", s.ema_updates},
          {"history", history}};
}

void from_json(const nlohmann::json& j, LoopState& s) {
  auto number = [](const nlohmann::json& v) { return v.is_null() ? std::numeric_limits<double>::infinity() : v.get<double>(); };
  s.epoch = j.at("epoch");
  s.step = j.at("step");
  s.loss_sum = j.at("loss_sum");
  s.correct = j.at("correct");
  s.seen = j.at("seen");
  s.lr = j.at("lr");
  s.best_loss = number(j.at("best_loss"));
  s.plateau_best = number(j.at("plateau_best"));
  s.since_best = j.at("since_best");
  s.since_plateau_best = j.at("since_plateau_best");
  s.best_epoch = j.at("best_epoch");
  s.finished = j.at("finished");
  s.wall_seconds = j.value("wall_seconds", 0.0);  // absent from runs before --max-minutes
  s.longest_epoch_seconds = j.value("longest_epoch_seconds", 0.0);
  s.ema_updates = j.value("ema_updates", std::int64_t{0});
  s.history.clear();
  for (const auto& h : j.at("history")) {
    auto val = [&](int i) { return h.at(i).is_null() ? std::nan("") : h.at(i).get<double>(); };
    s.history.push_back({h.at(0).get<int>(), val(1), val(2), val(3), val(4), val(5), val(6), val(7)});
  }
}

// Dropout draws from LibTorch's default CPU generator: its state is part of the run's.
at::Generator torch_cpu_generator() { return at::detail::getDefaultCPUGenerator(); }

}  // namespace

void save_state(const std::filesystem::path& path, const torch::nn::Sequential& net, torch::optim::Optimizer& opt,
                const LoopState& state, const std::mt19937_64& rng) {
  torch::serialize::OutputArchive archive, model_archive, opt_archive, best_archive, ema_archive;
  net->save(model_archive);
  opt.save(opt_archive);
  for (std::size_t i = 0; i < state.best_weights.size(); ++i) best_archive.write(std::to_string(i), state.best_weights[i]);
  for (std::size_t i = 0; i < state.ema_weights.size(); ++i) ema_archive.write(std::to_string(i), state.ema_weights[i]);
  archive.write("ema", ema_archive);
  archive.write("ema_count", c10::IValue(static_cast<int64_t>(state.ema_weights.size())));
  archive.write("model", model_archive);
  archive.write("optimizer", opt_archive);
  archive.write("best", best_archive);
  archive.write("best_count", c10::IValue(static_cast<int64_t>(state.best_weights.size())));
  archive.write("order", torch::tensor(state.order.empty() ? std::vector<int64_t>{} : state.order, torch::kInt64));
  archive.write("loop", c10::IValue(to_json(state).dump()));
  std::ostringstream rng_text;
  rng_text << rng;
  archive.write("rng", c10::IValue(rng_text.str()));
  {
    auto gen = torch_cpu_generator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    archive.write("torch_rng", gen.get_state());
  }
  AtomicPath out(path);
  archive.save_to(out.temp().string());
  out.commit();
}

void load_state(const std::filesystem::path& path, torch::nn::Sequential& net, torch::optim::Optimizer& opt, LoopState& state,
                std::mt19937_64& rng) {
  if (!std::filesystem::exists(path))
    throw InputError(path.string() + " does not exist; --resume needs a run folder written by this version of 'histoscan train'");
  try {
    torch::serialize::InputArchive archive, model_archive, opt_archive, best_archive;
    // Onto the device the run trains on (its weights are there already), wherever it was saved.
    const auto params = net->parameters();
    const c10::Device device = params.empty() ? c10::Device(c10::kCPU) : params.front().device();
    load_archive(archive, path, path.string(), "start a new run instead of --resume", device);
    archive.read("model", model_archive);
    net->load(model_archive);
    archive.read("optimizer", opt_archive);
    opt.load(opt_archive);
    c10::IValue value;
    archive.read("loop", value);
    from_json(nlohmann::json::parse(value.toStringRef()), state);
    archive.read("best_count", value);
    archive.read("best", best_archive);
    state.best_weights.assign(static_cast<std::size_t>(value.toInt()), torch::Tensor());
    for (std::size_t i = 0; i < state.best_weights.size(); ++i) best_archive.read(std::to_string(i), state.best_weights[i]);
    torch::serialize::InputArchive ema_archive;
    state.ema_weights.clear();
    if (archive.try_read("ema_count", value) && archive.try_read("ema", ema_archive)) {  // absent before --ema
      state.ema_weights.assign(static_cast<std::size_t>(value.toInt()), torch::Tensor());
      for (std::size_t i = 0; i < state.ema_weights.size(); ++i) ema_archive.read(std::to_string(i), state.ema_weights[i]);
    }
    torch::Tensor order;
    archive.read("order", order);
    state.order.assign(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + order.numel());
    archive.read("rng", value);
    std::istringstream rng_text(value.toStringRef());
    rng_text >> rng;
    torch::Tensor gen_state;
    archive.read("torch_rng", gen_state);
    auto gen = torch_cpu_generator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(gen_state);
  } catch (const InputError&) {
    throw;
  } catch (const nlohmann::json::exception&) {
    throw InputError(path.string() + " is damaged; start a new run instead of --resume");
  } catch (const std::exception&) {
    // c10::Error, and on damaged files also the TorchScript parser's own exceptions
    throw InputError(path.string() + " is damaged or belongs to another network; start a new run instead of --resume");
  }
}

}  // namespace histoscan::train
