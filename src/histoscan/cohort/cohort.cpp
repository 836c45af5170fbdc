#include "histoscan/cohort/cohort.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <set>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/cohort/lesions.h"
#include "histoscan/eval/analysis.h"
#include "histoscan/eval/html_report.h"
#include "histoscan/eval/outputs.h"
#include "histoscan/slide/scan_plan.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/csv.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cohort {

namespace {

std::string lower_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

// What OpenSlide reads, and the plain images `scan` takes.
bool is_slide_file(const fs::path& p) {
  static const std::set<std::string> ext = {".svs",  ".tif",     ".tiff", ".ndpi", ".vms", ".vmu", ".scn",
                                            ".mrxs", ".svslide", ".bif",  ".png",  ".jpg", ".jpeg"};
  return ext.count(lower_extension(p)) > 0;
}

bool is_csv(const fs::path& p) { return lower_extension(p) == ".csv"; }

SlideEntry entry_for(const fs::path& path, const std::string& origin) {
  SlideEntry e;
  e.path = path;
  e.name = path.stem().string();
  e.origin = origin;
  return e;
}

std::vector<SlideEntry> read_manifest(const fs::path& csv) {
  std::vector<SlideEntry> out;
  const fs::path base = csv.parent_path();
  try {
    CsvReader<4> reader(csv.string());
    reader.read_header(io::ignore_extra_column | io::ignore_missing_column, "slide", "label", "mpp", "annotations");
    if (!reader.has_column("slide"))
      throw InputError(csv.string() +
                       ": the header has no 'slide' column; a manifest names its columns slide[,label][,mpp][,annotations]");
    std::string slide, label, mpp, annotations;
    while (reader.read_row(slide, label, mpp, annotations)) {
      const std::string at = csv.string() + " line " + std::to_string(reader.get_file_line());
      if (slide.empty()) throw InputError(at + ": empty slide; every row names a slide file");
      fs::path path = fs::path(slide).is_absolute() ? fs::path(slide) : base / slide;
      if (!fs::is_regular_file(path))
        throw InputError(at + ": slide " + slide + " does not exist (" + path.string() +
                         "; paths are relative to the manifest's folder)");
      SlideEntry e = entry_for(path, at);
      auto l = parse_label(label);
      if (!l) throw InputError(at + ": label '" + label + "' of " + slide + " is not 0, 1, normal or tumour (or empty: unknown)");
      e.label = *l;
      if (!mpp.empty()) {
        char* end = nullptr;
        e.mpp = std::strtod(mpp.c_str(), &end);
        if (*end != '\0' || !(e.mpp > 0 && e.mpp < 1000))
          throw InputError(at + ": mpp '" + mpp + "' of " + slide +
                           " is not a positive number of microns per pixel (or empty: the slide's own)");
      }
      if (!annotations.empty()) {
        e.annotations = fs::path(annotations).is_absolute() ? fs::path(annotations) : base / annotations;
        if (!fs::is_regular_file(e.annotations))
          throw InputError(at + ": annotations " + annotations + " of " + slide + " do not exist (" + e.annotations.string() +
                           ")");
      }
      out.push_back(std::move(e));
    }
  } catch (const io::error::can_not_open_file&) {
    throw InputError(csv.string() + ": cannot open the manifest; check it exists and is readable");
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + "; fix the manifest (slide[,label][,mpp][,annotations])");
  }
  if (out.empty()) throw InputError(csv.string() + ": no slides below the header");
  return out;
}

nlohmann::json read_status(const fs::path& dir) {
  std::ifstream in(dir / "status.json");
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return nullptr;  // only written atomically, so this is someone else's file: scan again
  }
}

// The first line of an error, for one row of failures.csv.
std::string one_line(std::string what) {
  what = what.substr(0, what.find('\n'));
  return what.size() > 400 ? what.substr(0, 400) + "..." : what;
}

std::string fixed(double v, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// One slide as the table sees it.
struct Row {
  const SlideEntry* slide;
  nlohmann::json status;  // status.json, null when the slide was never scanned
  bool ok() const { return status.is_object() && status.value("status", "") == "ok"; }
  const nlohmann::json& summary() const { return status["summary"]; }
  bool has_lesions() const { return ok() && status.contains("lesions"); }
  std::string error() const {
    if (status.is_object() && status.contains("error")) return status["error"].get<std::string>();
    return "not scanned (a rank stopped before it finished); run the same command again to scan it";
  }
};

void write_tables(const fs::path& dir, const std::vector<Row>& rows, bool labelled, bool annotated) {
  write_file_atomic(dir / "cohort.csv", [&](std::ostream& f) {
    f << "slide,status,call,top_k_mean,max_probability,tumour_mm2,tissue_mm2,tiles_scored,seconds" << (labelled ? ",label" : "")
      << (annotated ? ",dice" : "") << '\n';
    for (const auto& r : rows) {
      f << csv_field(r.slide->name) << ',';
      if (r.ok()) {
        const auto& s = r.summary();
        f << "ok," << s["call"].get<std::string>() << ',' << fixed(s["top_k_mean_probability"].get<double>(), 6) << ','
          << fixed(s["max_probability"].get<double>(), 6) << ',' << fixed(s["tumour_area_mm2"].get<double>(), 4) << ','
          << fixed(s["tissue_area_mm2"].get<double>(), 4) << ',' << s["tiles_scored"].get<std::size_t>() << ','
          << fixed(s["seconds"].get<double>(), 1);
      } else {
        f << "failed,,,,,,,";
      }
      if (labelled) f << ',' << (r.slide->label < 0 ? std::string() : std::to_string(r.slide->label));
      if (annotated) {
        f << ',';
        if (r.has_lesions() && r.status["lesions"]["dice"].is_number()) f << fixed(r.status["lesions"]["dice"].get<double>(), 4);
      }
      f << '\n';
    }
  });
  write_file_atomic(dir / "failures.csv", [&](std::ostream& f) {
    f << "slide,path,error\n";
    for (const auto& r : rows)
      if (!r.ok())
        f << csv_field(r.slide->name) << ',' << csv_field(r.slide->path.string()) << ',' << csv_field(r.error()) << '\n';
  });
}

// A heatmap's thumbnail as a data: URI (JPEG, 240 px wide), or "" when it can't be read.
std::string thumbnail_uri(const fs::path& png) {
  cv::Mat img = cv::imread(png.string(), cv::IMREAD_COLOR);
  if (img.empty()) return "";
  cv::Mat small;
  double k = 240.0 / img.cols;
  cv::resize(img, small, cv::Size(), k, k, cv::INTER_AREA);
  std::vector<unsigned char> bytes;
  if (!cv::imencode(".jpg", small, bytes, {cv::IMWRITE_JPEG_QUALITY, 80})) return "";
  return "data:image/jpeg;base64," + eval::base64_encode(bytes);
}

std::vector<unsigned char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

constexpr const char* kHtmlHead = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>histoscan cohort</title>
<style>
body { margin: 0; color: #1d2733; font: 15px/1.5 system-ui, "DejaVu Sans", Arial, sans-serif; }
header { background: #18324d; color: #fff; padding: 22px 32px 16px; }
header h1 { margin: 0; font-size: 26px; font-weight: 600; }
main { max-width: 1500px; margin: 0 auto; padding: 8px 32px 40px; }
section { margin-top: 28px; }
h2 { font-size: 20px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid #d8dee6; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 6px 12px; border-bottom: 1px solid #d8dee6; text-align: left; vertical-align: middle; }
thead th { background: #f4f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.tumour { color: #b2182b; font-weight: 600; }
img.heat { display: block; width: 240px; height: auto; border: 1px solid #d8dee6; }
p.note { color: #5b6675; font-size: 14px; }
</style></head><body>
)";

void write_html(const fs::path& dir, const std::vector<Row>& rows, const Outcome& o, double threshold,
                const eval::Summary* metrics, const Froc* froc) {
  std::vector<const Row*> ok;
  for (const auto& r : rows)
    if (r.ok()) ok.push_back(&r);
  std::stable_sort(ok.begin(), ok.end(), [](const Row* a, const Row* b) {
    return a->summary()["top_k_mean_probability"].get<double>() > b->summary()["top_k_mean_probability"].get<double>();
  });
  write_file_atomic(dir / "cohort.html", [&](std::ostream& f) {
    f << kHtmlHead << "<header><h1>histoscan cohort: " << rows.size() << " slides</h1></header>\n<main>\n";
    f << "<section id=\"summary\"><h2>Summary</h2><table><tbody>"
      << "<tr><th>slides</th><td class=\"num\">" << rows.size() << "</td></tr>"
      << "<tr><th>scanned</th><td class=\"num\">" << o.ok << "</td></tr>"
      << "<tr><th>failed</th><td class=\"num\">" << o.failed << "</td></tr>"
      << "<tr><th>called tumour</th><td class=\"num\">" << o.tumour << "</td></tr>"
      << "<tr><th>call</th><td>top-k mean probability &ge; " << fixed(threshold, 4) << "</td></tr>"
      << "</tbody></table></section>\n";
    if (metrics) {
      const auto& ci = metrics->intervals.auc;
      const auto& op = metrics->point;
      const auto& c = op.confusion;
      auto num = [](double v) { return std::isfinite(v) ? fixed(v, 4) : std::string("undefined"); };
      f << "<section id=\"metrics\"><h2>Slide-level metrics</h2><table><tbody>"
        << "<tr><th>slides with a label</th><td>" << metrics->n << " (" << metrics->positives << " tumour, " << metrics->negatives
        << " normal)</td></tr><tr><th>AUC (95% bootstrap interval)</th><td>" << num(metrics->auc) << " (" << num(ci.low) << " to "
        << num(ci.high) << ")</td></tr><tr><th>sensitivity</th><td>" << num(op.sensitivity)
        << "</td></tr><tr><th>specificity</th><td>" << num(op.specificity) << "</td></tr><tr><th>confusion (TN FP FN TP)</th><td>"
        << c.tn << ' ' << c.fp << ' ' << c.fn << ' ' << c.tp
        << "</td></tr></tbody></table><p class=\"note\">metrics/ holds metrics.json, the plots and report.html.</p></section>\n";
      f << "<section id=\"roc\"><h2>Slide-level ROC</h2><img alt=\"slide-level ROC\" src=\"data:image/png;base64,"
        << eval::base64_encode(file_bytes(dir / "metrics" / "roc.png")) << "\"></section>\n";
    }
    if (froc) {
      f << "<section id=\"lesions\"><h2>Lesion-level: FROC (CAMELYON16)</h2><table><thead><tr><th>false positives per slide</th>";
      for (double rate : kFrocRates) f << "<th>" << rate << "</th>";
      f << "<th>FROC score</th></tr></thead><tbody><tr><td>sensitivity</td>";
      for (double v : froc->at) f << "<td class=\"num\">" << fixed(v, 4) << "</td>";
      f << "<td class=\"num\">" << fixed(froc->score, 4) << "</td></tr></tbody></table><p class=\"note\">" << froc->lesions
        << " lesions to find on " << froc->slides
        << " slides with known truth; lesions.json has the curve, cohort.csv each slide's Dice.</p></section>\n";
    }
    f << "<section id=\"slides\"><h2>Slides, most likely tumour first</h2><table><thead><tr><th>slide</th><th>heatmap</th>"
         "<th>call</th><th>top-k mean</th><th>max p</th><th>tumour mm&sup2;</th><th>tissue "
         "mm&sup2;</th><th>label</th></tr></thead><tbody>\n";
    for (const Row* r : ok) {
      const auto& s = r->summary();
      std::string uri = thumbnail_uri(slide_dir(dir, *r->slide) / "heatmap.png");
      bool tumour = s["call"] == "tumour";
      f << "<tr><td>" << eval::html_escape(r->slide->name) << "</td><td>"
        << (uri.empty() ? std::string("(no heatmap)")
                        : "<img class=\"heat\" alt=\"heatmap of " + eval::html_escape(r->slide->name) + "\" src=\"" + uri + "\">")
        << "</td><td" << (tumour ? " class=\"tumour\"" : "") << ">" << s["call"].get<std::string>() << "</td><td class=\"num\">"
        << fixed(s["top_k_mean_probability"].get<double>(), 3) << "</td><td class=\"num\">"
        << fixed(s["max_probability"].get<double>(), 3) << "</td><td class=\"num\">"
        << fixed(s["tumour_area_mm2"].get<double>(), 2) << "</td><td class=\"num\">"
        << fixed(s["tissue_area_mm2"].get<double>(), 2) << "</td><td>"
        << (r->slide->label < 0 ? ""
            : r->slide->label   ? "tumour"
                                : "normal")
        << "</td></tr>\n";
    }
    f << "</tbody></table></section>\n";
    if (o.failed) {
      f << "<section id=\"failures\"><h2>Failed slides</h2><table><thead><tr><th>slide</th><th>error</th></tr></thead><tbody>\n";
      for (const auto& r : rows)
        if (!r.ok())
          f << "<tr><td>" << eval::html_escape(r.slide->name) << "</td><td>" << eval::html_escape(r.error()) << "</td></tr>\n";
      f << "</tbody></table></section>\n";
    }
    f << "</main></body></html>\n";
  });
}

// What a slide's truth is for lesion-level evaluation: "" when it has none (no annotations,
// not labelled normal), else the annotations' path or "normal".
std::string lesion_truth(const SlideEntry& s) {
  if (!s.annotations.empty()) return s.annotations.string();
  return s.label == 0 ? "normal" : "";
}

// Evaluates a scanned slide's lesions against `truth` (null: a normal slide) from its
// summary and the tiles.csv in `out`, writes its detections.csv (CAMELYON16's submission
// format: probability,x,y, no header) and returns what status.json keeps.
nlohmann::json evaluate_slide_lesions(const SlideEntry& s, const fs::path& out, const nlohmann::json& summary,
                                      const Annotations* truth) {
  auto grid = read_scan_grid(out / "tiles.csv", summary);
  auto detections = detect_lesions(grid);
  write_file_atomic(out / "detections.csv", [&](std::ostream& f) {
    char line[96];
    for (const auto& d : detections) {
      std::snprintf(line, sizeof line, "%.6f,%.1f,%.1f\n", d.probability, d.x, d.y);
      f << line;
    }
  });
  auto r =
      evaluate_lesions(grid, detections, summary.at("slide_mpp").get<double>(), truth, summary.at("threshold").get<double>());
  auto j = to_json(r);
  j["truth"] = lesion_truth(s);
  j["ignored_annotations"] = truth ? truth->ignored : 0;
  return j;
}

// The slide's annotations, read when it has any (InputError when they do not parse).
std::optional<Annotations> truth_of(const SlideEntry& s) {
  if (s.annotations.empty()) return std::nullopt;
  return read_annotations(s.annotations);
}

}  // namespace

std::optional<int> parse_label(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t.empty()) return -1;
  if (t == "0" || t == "normal") return 0;
  if (t == "1" || t == "tumour" || t == "tumor") return 1;
  return std::nullopt;
}

bool is_single_slide(const std::vector<std::string>& inputs) {
  return inputs.size() == 1 && !fs::is_directory(inputs[0]) && !is_csv(inputs[0]);
}

std::vector<SlideEntry> collect_slides(const std::vector<std::string>& inputs) {
  std::vector<SlideEntry> slides;
  for (const auto& input : inputs) {
    fs::path p(input);
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file() && is_slide_file(e.path())) files.push_back(e.path());
      if (files.empty()) throw InputError(input + ": no slide files in this folder (.svs .tif .ndpi .mrxs .scn .png .jpg ...)");
      std::sort(files.begin(), files.end());
      for (const auto& f : files) slides.push_back(entry_for(f, input));
    } else if (is_csv(p)) {
      if (!fs::exists(p)) throw InputError(input + " does not exist");
      auto m = read_manifest(p);
      slides.insert(slides.end(), m.begin(), m.end());
    } else {
      if (!fs::exists(p)) throw InputError(input + " does not exist; give slide files, folders of slides or a manifest CSV");
      slides.push_back(entry_for(p, input));
    }
  }
  std::map<std::string, const SlideEntry*> by_name, by_path;
  for (const auto& s : slides) {
    std::error_code ec;
    std::string key = fs::weakly_canonical(s.path, ec).string();
    if (auto it = by_path.find(key); it != by_path.end())
      throw InputError(s.origin + ": slide " + s.path.string() + " is named twice (also at " + it->second->origin +
                       "); name each slide once");
    if (auto it = by_name.find(s.name); it != by_name.end())
      throw InputError(
          s.origin + ": slides " + it->second->path.string() + " and " + s.path.string() + " have the same name '" + s.name +
          "', and each slide's outputs go to a folder of that name; rename one or scan them into different --out folders");
    by_path[key] = &s;
    by_name[s.name] = &s;
  }
  return slides;
}

fs::path slide_dir(const fs::path& dir, const SlideEntry& slide) { return dir / "slides" / slide.name; }

void prepare_cohort_dir(const fs::path& dir, const nlohmann::json& settings, bool rescan, bool overwrite) {
  const fs::path record = dir / "cohort.json";
  if (fs::is_regular_file(record)) {
    nlohmann::json before;
    try {
      before = nlohmann::json::parse(std::ifstream(record));
    } catch (const nlohmann::json::exception&) {
      throw InputError(record.string() + " is damaged; remove it (and scan with --rescan) or choose another --out");
    }
    if (before.value("settings", nlohmann::json()) != settings && !rescan) {
      std::string what;
      const auto& old = before.value("settings", nlohmann::json::object());
      for (const auto& [key, value] : settings.items())
        if (!old.contains(key) || old[key] != value) {
          what = key + " was " + (old.contains(key) ? old[key].dump() : std::string("unset")) + ", now " + value.dump();
          break;
        }
      throw InputError("--out " + dir.string() + " holds a cohort scanned with other settings (" + what +
                       "); pass --rescan to scan every slide again with these, or choose another --out");
    }
  } else {
    prepare_output_dir(dir, overwrite, "--out");
  }
  fs::create_directories(dir / "slides");
  write_file_atomic(record, [&](std::ostream& f) { f << nlohmann::json{{"settings", settings}}.dump(2) << '\n'; });
}

Tally scan_slides(const fs::path& dir, const std::vector<SlideEntry>& slides, const ScanFn& scan, const NextFn& next,
                  bool rescan) {
  Tally t;
  for (std::size_t i = next(); i < slides.size(); i = next()) {
    const auto& s = slides[i];
    const fs::path out = slide_dir(dir, s);
    const std::string truth = lesion_truth(s);
    Row done{&s, read_status(out)};
    if (!rescan && done.ok()) {
      // Done before; its lesions are evaluated again only when its truth changed.
      if (truth != (done.status.contains("lesions") ? done.status["lesions"].value("truth", "") : std::string())) {
        try {
          if (truth.empty()) done.status.erase("lesions");
          else {
            auto annotations = truth_of(s);
            done.status["lesions"] = evaluate_slide_lesions(s, out, done.summary(), annotations ? &*annotations : nullptr);
          }
        } catch (const std::exception& e) {
          done.status = {{"status", "failed"}, {"error", one_line(e.what())}, {"path", s.path.string()}};
          log::warn("slide " + s.name + " failed: " + one_line(e.what()));
        }
        write_file_atomic(out / "status.json", [&](std::ostream& f) { f << done.status.dump(2) << '\n'; });
      }
      log::info("slide " + s.name + ": done before, skipped (--rescan scans it again)");
      ++t.skipped;
      continue;
    }
    fs::create_directories(out);
    fs::remove(out / "status.json");  // from here until the new one, the slide is not done
    nlohmann::json status;
    try {
      auto annotations = truth_of(s);  // a file that does not parse fails the slide before its scan
      auto summary = scan(s, out);
      status = {{"status", "ok"}, {"summary", summary}};
      if (!truth.empty()) status["lesions"] = evaluate_slide_lesions(s, out, summary, annotations ? &*annotations : nullptr);
      ++t.scanned;
    } catch (const Interrupted&) {
      throw;
    } catch (const std::exception& e) {
      std::string error = one_line(e.what());
      log::warn("slide " + s.name + " failed: " + error);
      for (const auto& file : slide::scan_output_files()) fs::remove(out / file);  // no half-set of outputs
      fs::remove(out / "detections.csv");
      status = {{"status", "failed"}, {"error", error}, {"path", s.path.string()}};
      ++t.failed;
    }
    write_file_atomic(out / "status.json", [&](std::ostream& f) { f << status.dump(2) << '\n'; });
  }
  return t;
}

Outcome write_cohort_outputs(const fs::path& dir, const std::vector<SlideEntry>& slides, double threshold) {
  std::vector<Row> rows;
  bool labelled = false;
  Outcome o;
  eval::ModelResult r;
  r.name = (dir / "cohort.csv").string();
  for (const auto& s : slides) {
    rows.push_back({&s, read_status(slide_dir(dir, s))});
    labelled = labelled || s.label >= 0;
    if (!rows.back().ok()) {
      ++o.failed;
      continue;
    }
    ++o.ok;
    const auto& summary = rows.back().summary();
    o.tumour += summary["call"] == "tumour";
    if (s.label >= 0) {
      r.ids.push_back(s.name);
      r.labels.push_back(s.label);
      r.probs.push_back(summary["top_k_mean_probability"].get<double>());
    }
  }
  bool annotated = false;
  std::vector<LesionResult> lesions;
  for (const auto& row : rows) {
    annotated = annotated || !row.slide->annotations.empty();
    if (row.has_lesions()) lesions.push_back(lesion_result_from_json(row.status["lesions"]));
  }
  write_tables(dir, rows, labelled, annotated);
  std::unique_ptr<Froc> froc;
  std::size_t to_find = 0;
  for (const auto& l : lesions) to_find += l.lesions;
  if (to_find > 0) {
    froc = std::make_unique<Froc>(compute_froc(lesions));
    nlohmann::json rates = nlohmann::json::object();
    for (std::size_t k = 0; k < kFrocRates.size(); ++k) rates[format_number(kFrocRates[k])] = froc->at[k];
    write_file_atomic(dir / "lesions.json", [&](std::ostream& f) {
      f << nlohmann::json{{"froc_score", froc->score},
                          {"sensitivity_at_fp_per_slide", rates},
                          {"slides", froc->slides},
                          {"lesions", froc->lesions},
                          {"curve", {{"fp_per_slide", froc->fp_per_slide}, {"sensitivity", froc->sensitivity}}},
                          {"definition",
                           "CAMELYON16 (Bejnordi et al., JAMA 2017; the challenge's Evaluation_FROC.py): see docs/cohorts.md"}}
               .dump(2)
        << '\n';
    });
    o.froc = froc->score;
  } else {
    fs::remove(dir / "lesions.json");
    if (annotated) log::warn("no scanned slide has a tumour outline larger than isolated tumour cells; no FROC");
  }
  const auto positives = static_cast<std::size_t>(std::count(r.labels.begin(), r.labels.end(), 1));
  if (positives > 0 && positives < r.labels.size()) {
    eval::SummaryOptions options;
    options.cutoff.value = threshold;
    r.summary = eval::summarize(r.labels, r.probs, options);
    fs::create_directories(dir / "metrics");
    eval::write_model_outputs(dir / "metrics", r, nullptr,
                              "slide-level: top-k mean probability of each scanned slide in " + dir.string());
    o.metrics = true;
  } else {
    std::error_code ec;
    fs::remove_all(dir / "metrics", ec);  // an earlier run's, which this table no longer supports
  }
  if (!o.metrics && labelled) {
    log::warn("slide-level metrics need scanned slides of both labels; " + std::to_string(positives) + " tumour and " +
              std::to_string(r.labels.size() - positives) + " normal here");
  }
  write_html(dir, rows, o, threshold, o.metrics ? &r.summary : nullptr, froc.get());
  return o;
}

}  // namespace histoscan::cohort
