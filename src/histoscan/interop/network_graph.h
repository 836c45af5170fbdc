#pragma once
// A trained network as a plain list of layers, for the exporters (TorchScript source, ONNX):
// what each layer computes and its tensors, with BatchNorm already folded (model::fold_batchnorm)
// and Dropout gone (an exported model is for inference). No LibTorch module types leak out,
// so an exporter is a loop over Layer::Kind.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

namespace histoscan::interop {

struct Layer {
  enum class Kind {
    conv,             // weight O x I x k x k, bias (O values, may be undefined), stride, padding
    relu,             //
    affine,           // x * weight + bias per channel (an eval-mode BatchNorm2d, or the one after a ReLU)
    max_pool,         // kernel, stride, padding
    crop,             // the centre `side` x `side` pixels (all of them when the input is smaller)
    instance_norm,    // each channel of each image standardized apart (eps), no parameters
    global_avg_pool,  // N x C x H x W -> N x C x 1 x 1
    flatten,          // N x ... -> N x (...)
    linear,           // weight O x I, bias O
    residual,         // relu(body(x) + shortcut(x)); shortcut empty: x itself
  };
  Kind kind = Kind::relu;
  std::string name;  // where it sits in the checkpoint, e.g. "4" or "5.body.0"
  torch::Tensor weight, bias;
  int64_t kernel = 0, stride = 1, padding = 0, side = 0;
  double eps = 0;
  std::vector<Layer> body, shortcut;
};

// The layers of `net` in order, after folding its BatchNorm layers (net is changed: for
// inference only from then on). Tensors are float32, contiguous (NCHW), on the CPU.
// Throws InputError naming the layer for a layer or an option the exporters do not know
// (e.g. a dilated or grouped convolution).
std::vector<Layer> describe_network(torch::nn::Sequential& net, const std::string& model_name);

}  // namespace histoscan::interop
