#pragma once
// Networks by name: adding one is its builder in its own file and a line in registry.cpp's table
// (or register_model, from a program that links the library); the CLI, checkpoints and export
// need no change.
// Every network is an nn::Sequential so its parameters are named as in PyTorch's
// nn.Sequential and a checkpoint maps one to one onto the PyTorch definition.
#include <functional>
#include <string>
#include <vector>

#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

namespace histoscan::model {

using Factory = std::function<torch::nn::Sequential(const nlohmann::json& options)>;

struct ModelInfo {
  std::string name, description;
  Factory factory;
};

// Adds a network at run time (tests, programs that link the library); throws std::logic_error
// when the name is taken.
void register_model(ModelInfo info);

// Builds network `name` with `options` (an object; {} for defaults). Throws InputError
// listing the known names when `name` is unknown.
torch::nn::Sequential make_model(const std::string& name, const nlohmann::json& options = nlohmann::json::object());

std::vector<ModelInfo> list_models();

// Puts every 4-d parameter (convolution weights) in channels-last memory, which oneDNN runs
// about twice as fast on CPU; values and names are unchanged. Call after loading weights.
void use_channels_last(torch::nn::Module& net);

// Whether `net` holds a 1x1 convolution of stride above 1 with fewer than 16 input channels
// (resnet with width below 16). On the CPU, LibTorch 1.13's oneDNN computes such a layer's
// weight gradient in channels-last memory past the end of its workspace (oneDNN issue 6035:
// nhwc, input channels below its block of 16): the heap is corrupted and training crashes a
// few steps later. Such a network trains in NCHW memory on the CPU (train::trains_channels_last).
bool has_unsafe_channels_last_gradient(torch::nn::Module& net);

// FLOP of one forward pass on a side x side patch: 2 x the multiply-accumulates of its
// convolutions (each output element times its kernel's taps and input channels, so a 3x3 on a
// 1x1 map counts as the dense kernel computes it) and linear layers, found by running the
// layers in order on zeros. Other layers' arithmetic is small and not counted.
double flops_per_patch(torch::nn::Sequential& net, int64_t side = 96);

// Trainable parameters of `net`.
long long count_parameters(const torch::nn::Module& net);

}  // namespace histoscan::model
