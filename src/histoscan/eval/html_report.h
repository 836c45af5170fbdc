#pragma once
// EVAL_DIR/report.html: one self-contained page (inline CSS, images as data: URIs, no
// script, no external URL) that a reader can open offline or mail as a single file.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace histoscan::eval {

// A misclassified patch shown in the report; rgb holds 96x96x3 bytes, row-major.
struct ReportPatch {
  std::string id;
  int label = 0;
  double probability = 0;  // predicted p(tumour)
  std::vector<std::uint8_t> rgb;
};

// Everything the page shows; tables are rows of cells, their first row the header.
struct ReportInput {
  std::string title;                                                 // e.g. "histoscan evaluation"
  std::vector<std::pair<std::string, std::string>> summary;          // model and data: (key, value)
  std::vector<std::vector<std::string>> metrics_table;               // e.g. metric, value, 95% CI low, high
  std::vector<std::vector<std::string>> operating_table;             // operating points
  std::vector<std::pair<std::string, std::filesystem::path>> plots;  // caption, PNG file to embed
  std::vector<ReportPatch> false_positives, false_negatives;         // most confidently wrong first
};

// Writes the page atomically, with sections "summary", "metrics", "operating-point",
// "plots" and "errors". InputError naming the file when a plot can't be read or the page
// can't be written; std::invalid_argument for a patch that isn't 96x96x3.
void write_html_report(const std::filesystem::path& path, const ReportInput& input);

// Text made safe inside HTML elements and quoted attributes.
std::string html_escape(const std::string& text);

// Standard base64 (RFC 4648, with padding), for data: URIs.
std::string base64_encode(const std::vector<unsigned char>& bytes);

}  // namespace histoscan::eval
