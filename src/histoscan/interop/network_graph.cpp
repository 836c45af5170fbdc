#include "histoscan/interop/network_graph.h"

#include <variant>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/instancenorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/version.h>

#include "histoscan/model/dropout.h"
#include "histoscan/model/fold.h"
#include "histoscan/model/resnet.h"
#include "histoscan/util/error.h"

namespace histoscan::interop {

namespace nn = torch::nn;

// LibTorch's option variants: c10::variant until PyTorch 2.1, std::variant since.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
using std::get_if;
using std::holds_alternative;
#else
using c10::get_if;
using c10::holds_alternative;
#endif

namespace {

Layer make(Layer::Kind kind, const std::string& name) {
  Layer l;
  l.kind = kind;
  l.name = name;
  return l;
}

torch::Tensor plain(const torch::Tensor& t) { return t.defined() ? t.detach().to(torch::kCPU, torch::kFloat32).contiguous() : t; }

struct Walker {
  std::string model;

  [[noreturn]] void refuse(const std::string& name, const std::string& what) const {
    throw InputError("model " + model + ": layer " + name + " is " + what +
                     ", which histoscan's exporters do not write; export a network built from the layers of 'histoscan models'");
  }

  // a x a from an ExpandingArray<2>, or refusal when its two values differ.
  template <typename Array>
  int64_t square(const Array& a, const std::string& name, const std::string& what) const {
    if ((*a)[0] != (*a)[1]) refuse(name, "a " + what + " that differs between height and width");
    return (*a)[0];
  }

  Layer conv(const nn::Conv2dImpl& c, const std::string& name) const {
    const auto& o = c.options;
    if (o.groups() != 1) refuse(name, "a grouped convolution");
    if (square(o.dilation(), name, "dilation") != 1) refuse(name, "a dilated convolution");
    if (!holds_alternative<torch::enumtype::kZeros>(o.padding_mode())) refuse(name, "a convolution padded other than with zeros");
    const auto* pad = get_if<torch::ExpandingArray<2>>(&o.padding());
    if (!pad) refuse(name, "a convolution with 'same' or 'valid' padding");
    Layer l = make(Layer::Kind::conv, name);
    l.weight = plain(c.weight);
    l.bias = plain(c.bias);
    l.kernel = square(o.kernel_size(), name, "kernel size");
    l.stride = square(o.stride(), name, "stride");
    l.padding = square(*pad, name, "padding");
    return l;
  }

  void walk(nn::Sequential& seq, const std::string& prefix, std::vector<Layer>& out) const {
    const auto children = seq->named_children();
    for (const auto& child : children) {
      const std::string name = prefix + child.key();
      nn::Module* m = child.value().get();
      if (auto* c = m->as<nn::Conv2d>()) {
        out.push_back(conv(*c, name));
      } else if (m->as<nn::ReLU>()) {
        out.push_back(make(Layer::Kind::relu, name));
      } else if (auto* ra = m->as<model::ReluAffine>()) {
        out.push_back(make(Layer::Kind::relu, name));
        Layer a = make(Layer::Kind::affine, name);
        a.weight = plain(ra->scale);
        a.bias = plain(ra->shift);
        out.push_back(a);
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        if (!bn->options.track_running_stats()) refuse(name, "a BatchNorm2d without running statistics");
        auto scale = torch::rsqrt(bn->running_var + bn->options.eps());
        if (bn->options.affine()) scale = scale * bn->weight;
        auto shift = -bn->running_mean * scale;
        if (bn->options.affine()) shift = shift + bn->bias;
        Layer a = make(Layer::Kind::affine, name);
        a.weight = plain(scale);
        a.bias = plain(shift);
        out.push_back(a);
      } else if (auto* mp = m->as<nn::MaxPool2d>()) {
        const auto& o = mp->options;
        if (o.ceil_mode()) refuse(name, "a max pooling with ceil_mode");
        if (square(o.dilation(), name, "dilation") != 1) refuse(name, "a dilated max pooling");
        Layer l = make(Layer::Kind::max_pool, name);
        l.kernel = square(o.kernel_size(), name, "kernel size");
        l.stride = square(o.stride(), name, "stride");
        l.padding = square(o.padding(), name, "padding");
        out.push_back(l);
      } else if (auto* crop = m->as<model::CentreCrop>()) {
        Layer l = make(Layer::Kind::crop, name);
        l.side = crop->side();
        out.push_back(l);
      } else if (auto* in = m->as<nn::InstanceNorm2d>()) {
        if (in->options.affine() || in->options.track_running_stats())
          refuse(name, "an InstanceNorm2d with parameters or running statistics");
        Layer l = make(Layer::Kind::instance_norm, name);
        l.eps = in->options.eps();
        out.push_back(l);
      } else if (auto* ap = m->as<nn::AdaptiveAvgPool2d>()) {
        const auto& size = ap->options.output_size();
        if (!(*size)[0] || !(*size)[1] || *(*size)[0] != 1 || *(*size)[1] != 1)
          refuse(name, "an adaptive average pooling to other than 1 x 1");
        out.push_back(make(Layer::Kind::global_avg_pool, name));
      } else if (auto* f = m->as<nn::Flatten>()) {
        if (f->options.start_dim() != 1 || f->options.end_dim() != -1)
          refuse(name, "a Flatten of other than all but the first dimension");
        out.push_back(make(Layer::Kind::flatten, name));
      } else if (auto* lin = m->as<nn::Linear>()) {
        Layer l = make(Layer::Kind::linear, name);
        l.weight = plain(lin->weight);
        l.bias = plain(lin->bias);
        out.push_back(l);
      } else if (auto* block = m->as<model::BasicBlock>()) {
        Layer l = make(Layer::Kind::residual, name);
        walk(block->body, name + ".body.", l.body);
        walk(block->shortcut, name + ".shortcut.", l.shortcut);
        out.push_back(std::move(l));
      } else if (m->as<model::Dropout>() || m->as<nn::Dropout>()) {
        // the identity in evaluation
      } else {
        auto type = m->name();  // "torch::nn::SigmoidImpl": said without the Impl
        if (type.size() > 4 && type.compare(type.size() - 4, 4, "Impl") == 0) type.resize(type.size() - 4);
        refuse(name, "a " + type);
      }
    }
  }
};

}  // namespace

std::vector<Layer> describe_network(nn::Sequential& net, const std::string& model_name) {
  torch::NoGradGuard no_grad;
  net->to(torch::kCPU);
  model::fold_batchnorm(net);
  std::vector<Layer> layers;
  Walker{model_name}.walk(net, "", layers);
  return layers;
}

}  // namespace histoscan::interop
