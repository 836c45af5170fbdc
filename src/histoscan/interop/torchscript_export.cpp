#include "histoscan/interop/torchscript_export.h"

#include <cstdio>
#include <sstream>

#include <torch/csrc/jit/api/module.h>
#include <torch/script.h>

#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::interop {

namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  std::string s = buf;
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// Attribute name for tensor `what` of layer `name`: "l5_body_0_weight".
std::string attr(const std::string& name, const char* what) {
  std::string a = "l" + name + "_" + what;
  for (char& c : a)
    if (c == '.') c = '_';
  return a;
}

// Writes the code of `layers` applied to variable `v` (each line `v = f(v)`), registering
// their tensors on `module` when it is given.
class Emitter {
 public:
  explicit Emitter(torch::jit::Module* module) : module_(module) {}

  void emit(const std::vector<Layer>& layers, const std::string& v, std::ostringstream& s) {
    for (const auto& l : layers) {
      switch (l.kind) {
        case Layer::Kind::conv:
          s << "        " << v << " = torch.conv2d(" << v << ", self." << tensor(l.name, "weight", l.weight) << ", "
            << (l.bias.defined() ? "self." + tensor(l.name, "bias", l.bias) : "None") << ", [" << l.stride << ", " << l.stride
            << "], [" << l.padding << ", " << l.padding << "], [1, 1], 1)\n";
          break;
        case Layer::Kind::relu:
          s << "        " << v << " = torch.relu(" << v << ")\n";
          break;
        case Layer::Kind::affine:
          s << "        " << v << " = " << v << " * self." << tensor(l.name, "scale", l.weight.view({1, -1, 1, 1})) << " + self."
            << tensor(l.name, "shift", l.bias.view({1, -1, 1, 1})) << "\n";
          break;
        case Layer::Kind::max_pool:
          s << "        " << v << " = torch.max_pool2d(" << v << ", [" << l.kernel << ", " << l.kernel << "], [" << l.stride
            << ", " << l.stride << "], [" << l.padding << ", " << l.padding << "], [1, 1], False)\n";
          break;
        case Layer::Kind::crop:
          s << "        " << v << "_h = min(" << l.side << ", " << v << ".size(2))\n"
            << "        " << v << "_w = min(" << l.side << ", " << v << ".size(3))\n"
            << "        " << v << " = " << v << ".narrow(2, (" << v << ".size(2) - " << v << "_h) // 2, " << v
            << "_h).narrow(3, (" << v << ".size(3) - " << v << "_w) // 2, " << v << "_w)\n";
          break;
        case Layer::Kind::instance_norm:
          s << "        " << v << " = torch.instance_norm(" << v << ", None, None, None, None, True, 0.1, " << number(l.eps)
            << ", False)\n";
          break;
        case Layer::Kind::global_avg_pool:
          s << "        " << v << " = torch.adaptive_avg_pool2d(" << v << ", [1, 1])\n";
          break;
        case Layer::Kind::flatten:
          s << "        " << v << " = torch.flatten(" << v << ", 1)\n";
          break;
        case Layer::Kind::linear:
          s << "        " << v << " = torch.linear(" << v << ", self." << tensor(l.name, "weight", l.weight) << ", "
            << (l.bias.defined() ? "self." + tensor(l.name, "bias", l.bias) : "None") << ")\n";
          break;
        case Layer::Kind::residual: {
          const std::string b = "b" + std::to_string(next_), r = "r" + std::to_string(next_);
          ++next_;
          s << "        " << b << " = " << v << "\n";
          emit(l.body, b, s);
          s << "        " << r << " = " << v << "\n";
          emit(l.shortcut, r, s);
          s << "        " << v << " = torch.relu(" << b << " + " << r << ")\n";
          break;
        }
      }
    }
  }

 private:
  std::string tensor(const std::string& layer, const char* what, const torch::Tensor& t) {
    std::string name = attr(layer, what);
    module_->register_parameter(name, t.contiguous(), /*is_buffer=*/false);
    return name;
  }

  torch::jit::Module* module_;
  int next_ = 0;
};

std::string source(const std::vector<Layer>& layers, ScriptOutput output, int views, torch::jit::Module* module) {
  std::ostringstream s;
  s << "def logit(self, x: Tensor) -> Tensor:\n"
       "        # the network on standardized N x 3 x 96 x 96 input: N x 1 logits of tumour\n";
  Emitter(module).emit(layers, "x", s);
  s << "        return x\n\n"
       "def standardize(self, x: Tensor) -> Tensor:\n"
       "        # each image over its pixels and channels (population std); a constant image as it is\n"
       "        mean = x.mean([1, 2, 3], keepdim=True)\n"
       "        std = x.std([1, 2, 3], False, True)\n"
       "        return torch.where(std > 0, (x - mean) / std.clamp_min(1e-12), x)\n\n"
       "def forward(self, x: Tensor) -> Tensor:\n"
       "        assert x.dim() == 4 and x.size(1) == 3 and x.size(2) == 96 and x.size(3) == 96, "
       "\"histoscan model: expected an N x 3 x 96 x 96 batch (RGB, NCHW)\"\n"
       "        if not x.is_floating_point():\n"
       "            x = x.float() / 255.0\n"
       "        # channels-last (memory format 2) as histoscan runs it: the standardization's means and\n"
       "        # oneDNN's convolutions then sum in histoscan's order (within 1e-7 of its probabilities;\n"
       "        # NCHW: 1e-5)\n"
       "        x = self.standardize(x.float().contiguous(memory_format=2))\n";
  if (views == 1) {
    s << "        z = self.logit(x)\n";
    if (output == ScriptOutput::probability) s << "        return torch.sigmoid(z).reshape([-1])\n";
  } else {
    // histoscan's views in its order (predict_logits): views / 2 turns a quarter apart, each
    // also mirrored left-right.
    const int step = 4 / (views / 2);
    s << "        # the mean probability of " << views << " dihedral views (" << views / 2
      << " turns, each also mirrored)\n"
         "        p = torch.sigmoid(self.logit(x)).reshape([-1]) + torch.sigmoid(self.logit(torch.flip(x, [3]))).reshape([-1])\n";
    if (step < 4)
      s << "        for k in range(" << step << ", 4, " << step
        << "):\n"
           "            v = torch.rot90(x, k, [2, 3])\n"
           "            p = p + torch.sigmoid(self.logit(v)).reshape([-1]) + torch.sigmoid(self.logit(torch.flip(v, "
           "[3]))).reshape([-1])\n";
    s << "        p = p / " << views << "\n";
    if (output == ScriptOutput::probability) {
      s << "        return p\n";
    } else {
      s << "        p = p.clamp(1e-7, 1 - 1e-7)\n"
           "        z = (torch.log(p) - torch.log1p(-p)).reshape([-1, 1])\n";
    }
  }
  if (output == ScriptOutput::two_logits) s << "        return torch.cat([torch.zeros_like(z), z], 1)\n";
  return s.str();
}

}  // namespace

void save_torchscript(const std::vector<Layer>& layers, const nlohmann::json& meta, const fs::path& path, ScriptOutput output,
                      int views) {
  torch::jit::Module module(c10::QualifiedName("__torch__.histoscan.TumourModel"));
  const std::string code = source(layers, output, views, &module);
  module.register_attribute("histoscan_metadata", c10::StringType::get(), meta.dump());
  module.define(code);
  module.eval();
  AtomicPath out(path);
  try {
    module.save(out.temp().string());
  } catch (const c10::Error&) {
    throw InputError("cannot write " + path.string() + " (disk full or folder not writable?)");
  }
  out.commit();
}

nlohmann::json wsinfer_config(double mpp) {
  return {{"spec_version", "1.0"},
          {"architecture", "histoscan"},
          {"num_classes", 2},
          {"class_names", {"normal", "tumor"}},
          {"patch_size_pixels", 96},
          {"spacing_um_px", mpp},
          {"transform", {{{"name", "Resize"}, {"arguments", {{"size", 96}}}}, {{"name", "ToTensor"}}}}};
}

}  // namespace histoscan::interop
