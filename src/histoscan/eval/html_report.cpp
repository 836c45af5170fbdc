#include "histoscan/eval/html_report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <ostream>
#include <stdexcept>

#include "histoscan/data/image_io.h"
#include "histoscan/eval/plots.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::eval {

namespace {

// The policy makes the browser itself refuse anything but inline styles and data: images,
// so a stray external reference fails visibly instead of leaking a request.
constexpr const char* kHead = R"(<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
)";

// Plots keep the size they were drawn at (800 px wide), so their labels stay legible;
// screens wide enough get two a row instead of shrinking them.
constexpr const char* kStyle = R"(<style>
:root { --ink: #1d2733; --muted: #5b6675; --line: #d8dee6; --band: #f4f6f9; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; }
header { background: #18324d; color: #fff; padding: 22px 32px 16px; }
header h1 { margin: 0 0 8px; font-size: 26px; font-weight: 600; }
nav a { color: #cfe1f3; margin-right: 18px; text-decoration: none; font-size: 14px; }
nav a:hover { text-decoration: underline; }
main { max-width: 1760px; margin: 0 auto; padding: 8px 32px 40px; }
section { margin-top: 28px; }
h2 { font-size: 20px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 18px 0 8px; }
p.note { color: var(--muted); margin: 4px 0 12px; font-size: 14px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 6px 14px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); font-weight: 600; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { color: var(--muted); font-weight: 500; width: 12em; }
table.kv td { word-break: break-all; }
.plots { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.plots figure { margin: 0; max-width: 100%; border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
.plots img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 14px; margin-top: 6px; }
.patches { display: flex; flex-wrap: wrap; gap: 14px; }
.patch { width: 152px; margin: 0; font-size: 13px; }
.patch .frame { position: relative; width: 152px; height: 152px; border: 3px solid #d62728; border-radius: 4px; }
.patch.fn .frame { border-color: #ff7f0e; }
.patch img { display: block; width: 146px; height: 146px; image-rendering: pixelated; }
.patch .frame::after { content: ""; position: absolute; left: 33.33%; top: 33.33%; width: 33.33%; height: 33.33%;
  border: 1px dashed rgba(255, 255, 255, 0.85); }
.patch .prob { font-weight: 600; color: var(--ink); }
.patch .id { font-family: "DejaVu Sans Mono", monospace; font-size: 11px; word-break: break-all; color: var(--muted); }
footer { color: var(--muted); font-size: 13px; margin-top: 36px; border-top: 1px solid var(--line); padding-top: 10px; }
</style>
)";

// True when a cell reads as a number, so the table right-aligns it with its column.
bool is_numeric(const std::string& cell) {
  if (cell.empty()) return false;
  char* end = nullptr;
  std::strtod(cell.c_str(), &end);
  return *end == '\0' || (*end == '%' && end[1] == '\0');
}

std::vector<unsigned char> read_binary(const std::filesystem::path& file, const std::filesystem::path& report) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError("cannot write " + report.string() + ": plot " + file.string() + " cannot be read");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_table(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) {
    out << "<p class=\"note\">Not available.</p>\n";
    return;
  }
  out << "<table>\n<thead><tr>";
  for (const auto& cell : rows[0]) out << "<th>" << html_escape(cell) << "</th>";
  out << "</tr></thead>\n<tbody>\n";
  for (std::size_t r = 1; r < rows.size(); ++r) {
    out << "<tr>";
    for (std::size_t c = 0; c < rows[r].size(); ++c)
      out << (c > 0 && is_numeric(rows[r][c]) ? "<td class=\"num\">" : "<td>") << html_escape(rows[r][c]) << "</td>";
    out << "</tr>\n";
  }
  out << "</tbody>\n</table>\n";
}

void write_summary(std::ostream& out, const std::vector<std::pair<std::string, std::string>>& summary) {
  out << "<section id=\"summary\">\n<h2>Model and data</h2>\n<table class=\"kv\">\n<tbody>\n";
  for (const auto& [key, value] : summary)
    out << "<tr><th scope=\"row\">" << html_escape(key) << "</th><td>" << html_escape(value) << "</td></tr>\n";
  out << "</tbody>\n</table>\n</section>\n";
}

void write_plots(std::ostream& out, const ReportInput& input, const std::filesystem::path& report) {
  out << "<section id=\"plots\">\n<h2>Plots</h2>\n<div class=\"plots\">\n";
  for (const auto& [caption, file] : input.plots)
    out << "<figure><img alt=\"" << html_escape(caption) << "\" src=\"data:image/png;base64,"
        << base64_encode(read_binary(file, report)) << "\"><figcaption>" << html_escape(caption) << "</figcaption></figure>\n";
  out << "</div>\n</section>\n";
}

void write_patches(std::ostream& out, const std::vector<ReportPatch>& patches, const char* kind) {
  if (patches.empty()) {
    out << "<p class=\"note\">None.</p>\n";
    return;
  }
  out << "<div class=\"patches\">\n";
  for (const auto& p : patches) {
    if (p.rgb.size() != data::kPatchBytes)
      throw std::invalid_argument("report patch " + p.id + " has " + std::to_string(p.rgb.size()) + " bytes, not " +
                                  std::to_string(data::kPatchBytes) + " (96x96 RGB)");
    char prob[64];
    std::snprintf(prob, sizeof prob, "p(tumour) = %.3f", p.probability);
    out << "<figure class=\"patch " << kind << "\"><div class=\"frame\"><img alt=\"patch " << html_escape(p.id)
        << "\" src=\"data:image/png;base64," << base64_encode(png_bytes_rgb(p.rgb.data(), data::kPatchSide, data::kPatchSide))
        << "\"></div>"
        << "<figcaption><span class=\"prob\">" << prob << "</span><br>true label: " << (p.label == 1 ? "1 tumour" : "0 normal")
        << "<br><span class=\"id\">" << html_escape(p.id) << "</span></figcaption></figure>\n";
  }
  out << "</div>\n";
}

void write_errors(std::ostream& out, const ReportInput& input) {
  out << "<section id=\"errors\">\n<h2>Most confidently wrong patches</h2>\n"
      << "<p class=\"note\">Sorted by how sure the model was. The dashed square marks the centre 32&times;32 pixels, "
         "whose content decides a patch's label.</p>\n"
      << "<h3>False positives: normal tissue called tumour (" << input.false_positives.size() << ")</h3>\n";
  write_patches(out, input.false_positives, "fp");
  out << "<h3>False negatives: tumour called normal (" << input.false_negatives.size() << ")</h3>\n";
  write_patches(out, input.false_negatives, "fn");
  out << "</section>\n";
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string base64_encode(const std::vector<unsigned char>& bytes) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t left = bytes.size() - i;
    std::uint32_t chunk = std::uint32_t{bytes[i]} << 16;
    if (left > 1) chunk |= std::uint32_t{bytes[i + 1]} << 8;
    if (left > 2) chunk |= bytes[i + 2];
    out += kAlphabet[(chunk >> 18) & 63];
    out += kAlphabet[(chunk >> 12) & 63];
    out += left > 1 ? kAlphabet[(chunk >> 6) & 63] : '=';
    out += left > 2 ? kAlphabet[chunk & 63] : '=';
  }
  return out;
}

void write_html_report(const std::filesystem::path& path, const ReportInput& input) {
  const std::string title = html_escape(input.title.empty() ? "histoscan report" : input.title);
  write_file_atomic(path, [&](std::ostream& out) {
    out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        << kHead << "<title>" << title << "</title>\n"
        << kStyle << "</head>\n<body>\n<header><h1>" << title << "</h1>\n<nav>"
        << "<a href=\"#summary\">Model and data</a><a href=\"#metrics\">Metrics</a>"
        << "<a href=\"#operating-point\">Operating points</a><a href=\"#plots\">Plots</a>"
        << "<a href=\"#errors\">Confident errors</a></nav></header>\n<main>\n";
    write_summary(out, input.summary);
    out << "<section id=\"metrics\">\n<h2>Metrics</h2>\n";
    write_table(out, input.metrics_table);
    out << "</section>\n<section id=\"operating-point\">\n<h2>Operating points</h2>\n";
    write_table(out, input.operating_table);
    out << "</section>\n";
    write_plots(out, input, path);
    write_errors(out, input);
    out << "<footer>Written by histoscan. This page is self-contained: it loads nothing from the network.</footer>\n"
        << "</main>\n</body>\n</html>\n";
  });
}

}  // namespace histoscan::eval
