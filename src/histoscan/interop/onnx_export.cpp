#include "histoscan/interop/onnx_export.h"

#include <fstream>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <opencv2/dnn.hpp>

#include "histoscan/util/error.h"

namespace histoscan::interop {

namespace {

class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto* g) : g_(g) {}

  // A float initializer named `name` holding t (shape kept).
  std::string constant(const std::string& name, const torch::Tensor& t) {
    auto c = t.to(torch::kCPU, torch::kFloat32).contiguous();
    auto* init = g_->add_initializer();
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : c.sizes()) init->add_dims(d);
    init->set_raw_data(std::string(reinterpret_cast<const char*>(c.data_ptr<float>()), c.numel() * sizeof(float)));
    return name;
  }

  std::string int64s(const std::string& name, const std::vector<int64_t>& v) {
    auto* init = g_->add_initializer();
    init->set_name(name);
    init->set_data_type(onnx::TensorProto::INT64);
    init->add_dims(static_cast<int64_t>(v.size()));
    for (auto x : v) init->add_int64_data(x);
    return name;
  }

  // Adds node `op` on `inputs` with one output, named after `hint`; returns the output's name.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint,
                   const std::vector<onnx::AttributeProto>& attrs = {}) {
    auto* n = g_->add_node();
    n->set_op_type(op);
    std::string out = hint + "_" + std::to_string(count_++);
    n->set_name(out);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(out);
    for (const auto& a : attrs) *n->add_attribute() = a;
    return out;
  }

  static onnx::AttributeProto attribute(const std::string& name, onnx::AttributeProto::AttributeType type) {
    onnx::AttributeProto a;
    a.set_name(name);
    a.set_type(type);
    return a;
  }
  static onnx::AttributeProto ints(const std::string& name, const std::vector<int64_t>& v) {
    auto a = attribute(name, onnx::AttributeProto::INTS);
    for (auto x : v) a.add_ints(x);
    return a;
  }
  static onnx::AttributeProto integer(const std::string& name, int64_t v) {
    auto a = attribute(name, onnx::AttributeProto::INT);
    a.set_i(v);
    return a;
  }
  static onnx::AttributeProto real(const std::string& name, float v) {
    auto a = attribute(name, onnx::AttributeProto::FLOAT);
    a.set_f(v);
    return a;
  }

  // The layers on `x` (square maps of `side` pixels, `channels` deep); returns the output.
  std::string layers(const std::vector<Layer>& ls, std::string x, int64_t& side, int64_t& channels) {
    for (const auto& l : ls) {
      const std::string p = "l" + l.name;
      switch (l.kind) {
        case Layer::Kind::conv: {
          std::vector<std::string> in{x, constant(p + ".weight", l.weight)};
          if (l.bias.defined()) in.push_back(constant(p + ".bias", l.bias));
          x = node("Conv", in, p + ".conv",
                   {ints("kernel_shape", {l.kernel, l.kernel}), ints("strides", {l.stride, l.stride}),
                    ints("pads", {l.padding, l.padding, l.padding, l.padding})});
          side = (side + 2 * l.padding - l.kernel) / l.stride + 1;
          channels = l.weight.size(0);
          break;
        }
        case Layer::Kind::relu:
          x = node("Relu", {x}, p + ".relu");
          break;
        case Layer::Kind::affine:
          // x * scale + shift per channel as a BatchNormalization of mean 0, variance 1 and
          // epsilon 0 (exactly that arithmetic): OpenCV 4.6 refuses a product with a 1 x C x 1 x 1
          // tensor when the batch is larger than 1.
          x = node("BatchNormalization",
                   {x, constant(p + ".scale", l.weight), constant(p + ".shift", l.bias),
                    constant(p + ".mean", torch::zeros_like(l.weight)), constant(p + ".var", torch::ones_like(l.weight))},
                   p + ".affine", {real("epsilon", 0.0f)});
          break;
        case Layer::Kind::max_pool:
          x = node("MaxPool", {x}, p + ".maxpool",
                   {ints("kernel_shape", {l.kernel, l.kernel}), ints("strides", {l.stride, l.stride}),
                    ints("pads", {l.padding, l.padding, l.padding, l.padding})});
          side = (side + 2 * l.padding - l.kernel) / l.stride + 1;
          break;
        case Layer::Kind::crop: {
          const int64_t keep = std::min(l.side, side), start = (side - keep) / 2;
          if (keep < side) {
            x = node("Slice",
                     {x, int64s(p + ".starts", {start, start}), int64s(p + ".ends", {start + keep, start + keep}),
                      int64s(p + ".axes", {2, 3})},
                     p + ".crop");
            side = keep;
          }
          break;
        }
        case Layer::Kind::instance_norm:
          x = node("InstanceNormalization",
                   {x, constant(p + ".ones", torch::ones({channels})), constant(p + ".zeros", torch::zeros({channels}))},
                   p + ".instnorm", {real("epsilon", static_cast<float>(l.eps))});
          break;
        case Layer::Kind::global_avg_pool:
          x = node("GlobalAveragePool", {x}, p + ".avgpool");
          side = 1;
          break;
        case Layer::Kind::flatten:
          x = node("Flatten", {x}, p + ".flatten", {integer("axis", 1)});
          break;
        case Layer::Kind::linear: {
          std::vector<std::string> in{x, constant(p + ".weight", l.weight)};
          if (l.bias.defined()) in.push_back(constant(p + ".bias", l.bias));
          x = node("Gemm", in, p + ".linear", {integer("transB", 1)});
          channels = l.weight.size(0);
          break;
        }
        case Layer::Kind::residual: {
          int64_t s_body = side, c_body = channels, s_short = side, c_short = channels;
          auto body = layers(l.body, x, s_body, c_body);
          auto shortcut = layers(l.shortcut, x, s_short, c_short);
          x = node("Relu", {node("Add", {body, shortcut}, p + ".add")}, p + ".relu");
          side = s_body, channels = c_body;
          break;
        }
      }
    }
    return x;
  }

 private:
  onnx::GraphProto* g_;
  int count_ = 0;
};

void set_shape(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("N");
  for (auto d : dims) shape->add_dim()->set_dim_value(d);
}

}  // namespace

void save_onnx(const std::vector<Layer>& layers, const nlohmann::json& meta, const fs::path& path) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.set_producer_name("histoscan");
  model.set_producer_version(meta.contains("export") ? meta["export"]["by"].value("histoscan", "") : "");
  model.set_doc_string("histoscan tumour model: input 'image' float32 N x 3 x 96 x 96 RGB in [0, 1]; output 'probability' N x 1");
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  auto* prop = model.add_metadata_props();
  prop->set_key("histoscan_metadata");
  prop->set_value(meta.dump());

  auto* g = model.mutable_graph();
  g->set_name("histoscan_" + meta.value("model", std::string("model")));
  set_shape(g->add_input(), "image", {3, 96, 96});
  GraphWriter w(g);
  // Per-image standardization, (x - mean) / std over channels and pixels, as an instance
  // normalization of the image seen as one channel of 288 x 96 (OpenCV 4.6's DNN module knows
  // neither MeanVarianceNormalization nor a division by a per-image tensor). Its epsilon is far
  // below any real patch's variance; a constant patch comes out 0 where histoscan keeps it.
  std::string x = w.node("Reshape", {"image", w.int64s("standardize.as_one_channel", {0, 1, 3 * 96, 96})}, "standardize.reshape");
  x = w.node("InstanceNormalization",
             {x, w.constant("standardize.one", torch::ones({1})), w.constant("standardize.zero", torch::zeros({1}))},
             "standardize", {GraphWriter::real("epsilon", 1e-12f)});
  x = w.node("Reshape", {x, w.int64s("standardize.as_rgb", {0, 3, 96, 96})}, "standardize.back");
  int64_t side = 96, channels = 3;
  x = w.layers(layers, x, side, channels);
  auto* last = g->add_node();
  last->set_op_type("Sigmoid");
  last->set_name("probability");
  last->add_input(x);
  last->add_output("probability");
  set_shape(g->add_output(), "probability", {1});
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw InputError("the ONNX graph for model " + meta.value("model", std::string("?")) + " fails ONNX's checker: " + e.what());
  }
  std::ofstream out(path, std::ios::binary);
  if (!out || !model.SerializeToOstream(&out))
    throw InputError("cannot write " + path.string() + " (disk full or folder not writable?)");
}

torch::Tensor run_onnx_with_opencv(const fs::path& path, const torch::Tensor& x) {
  auto input = x.to(torch::kCPU, torch::kFloat32).contiguous();
  cv::dnn::Net net = cv::dnn::readNetFromONNX(path.string());
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const int sizes[4] = {static_cast<int>(input.size(0)), 3, static_cast<int>(input.size(2)), static_cast<int>(input.size(3))};
  cv::Mat blob(4, sizes, CV_32F, input.data_ptr<float>());
  net.setInput(blob, "image");
  cv::Mat out = net.forward("probability");
  auto result = torch::from_blob(out.ptr<float>(), {static_cast<int64_t>(out.total())}, torch::kFloat32).clone();
  return result.reshape({input.size(0), -1});
}

}  // namespace histoscan::interop
