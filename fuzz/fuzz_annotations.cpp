// libFuzzer target: parse_annotations (pugixml for ASAP XML, nlohmann-json for GeoJSON) on
// arbitrary bytes, and evaluate_lesions on what parses, over a small grid. InputError is the
// expected rejection; anything else (a crash, a sanitizer report, another exception) is a finding.
#include <cstdint>
#include <string>

#include "histoscan/cohort/lesions.h"
#include "histoscan/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto a = histoscan::cohort::parse_annotations(text, "fuzz");
    // Rasterize what parsed on a 20 x 20 grid of a 0.5 µm/px slide: coordinates of any size.
    static const auto grid = [] {
      auto g = histoscan::slide::make_grid(96 + 19 * 32, 96 + 19 * 32, 2.0, 32);
      for (std::size_t k = 0; k < g.probability.size(); ++k) g.probability[k] = static_cast<float>(k % 7) / 7.f;
      return g;
    }();
    histoscan::cohort::evaluate_lesions(grid, 0.5, &a, 0.5);
  } catch (const histoscan::InputError&) {
  }
  return 0;
}
