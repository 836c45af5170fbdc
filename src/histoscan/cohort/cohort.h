#pragma once
// A cohort: many slides scanned into one folder, resumable and robust to bad slides.
//
//   DIR/cohort.json              the settings every slide was scanned with (a re-run must match)
//   DIR/slides/NAME/...          one slide's scan outputs (and detections.csv where its truth is
//                                known), then status.json, written last
//   DIR/cohort.csv               one row a slide, in input order
//   DIR/failures.csv             slide,path,error for each slide that failed
//   DIR/metrics/                 slide-level metrics, plots and report.html (labelled slides)
//   DIR/lesions.json             the FROC of slides with tumour outlines or labelled normal
//   DIR/cohort.html              the slides by probability with their heatmaps, the slide ROC
//
// Nothing here runs a network: the scan of one slide is a callback (the CLI's runs
// scan::scan_slide's stages), and which slide comes next is another (a counter in one
// process, c10d's store across ranks).
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace histoscan::cohort {

namespace fs = std::filesystem;

// One slide of a cohort.
struct SlideEntry {
  fs::path path;
  std::string name;      // its folder under DIR/slides and its key in cohort.csv: the file name without extension
  int label = -1;        // 1 tumour, 0 normal, -1 not given
  double mpp = 0;        // microns per level-0 pixel from the manifest (0: the slide's own)
  fs::path annotations;  // tumour outlines from the manifest (QuPath GeoJSON or ASAP XML): Dice and FROC
  std::string origin;    // where it was named, for messages: "m.csv line 3" or the argument
};

// True when INPUT... is one slide file (not a folder, not a .csv): `scan` then writes into
// --out itself, as it always has.
bool is_single_slide(const std::vector<std::string>& inputs);

// The slides INPUT... name, in order: slide files; folders (their slide files by name, not
// recursing); manifest CSVs (.csv) with a `slide` column (a path, relative to the manifest's
// folder) and optional `label` (0/1, normal/tumour), `mpp` and `annotations`. Throws
// InputError naming the file and line for a missing column, an unknown label, a bad mpp, a
// missing slide, a slide named twice or two slides with the same name.
std::vector<SlideEntry> collect_slides(const std::vector<std::string>& inputs);

// Parses a manifest label: "0"/"normal" -> 0, "1"/"tumour"/"tumor" -> 1 (any case), "" -> -1;
// nullopt for anything else.
std::optional<int> parse_label(const std::string& text);

// Makes DIR ready: a new or empty folder, or one holding a cohort scanned with the same
// `settings` (a resume). Refuses (InputError) a non-empty folder that is not a cohort unless
// overwrite, and a cohort of other settings unless rescan. Writes DIR/cohort.json.
void prepare_cohort_dir(const fs::path& dir, const nlohmann::json& settings, bool rescan, bool overwrite);

// Scans one slide into `dir` (which exists) and returns its summary.json.
using ScanFn = std::function<nlohmann::json(const SlideEntry& slide, const fs::path& dir)>;
// The index of the next slide to take; at or past the end when none is left.
using NextFn = std::function<std::size_t()>;

struct Tally {
  std::size_t scanned = 0, skipped = 0, failed = 0;
};

// Takes slides through `next` until none is left: a slide whose status.json says done is
// skipped (unless rescan); any other is scanned, and an error on it (anything but
// Interrupted) becomes its failed status, logged, and the loop goes on. A slide with
// annotations, or labelled normal, is then evaluated lesion by lesion (lesions.h) into its
// status.json; annotations that do not parse fail the slide.
Tally scan_slides(const fs::path& dir, const std::vector<SlideEntry>& slides, const ScanFn& scan, const NextFn& next,
                  bool rescan);

// What the cohort's table says, counted.
struct Outcome {
  std::size_t ok = 0, failed = 0, tumour = 0;
  bool metrics = false;  // slide-level metrics were written
  double froc = -1;      // the FROC score when lesions.json was written
};

// Writes cohort.csv, failures.csv, metrics/ (when slides of both labels succeeded),
// lesions.json (when some slide has a lesion to find) and cohort.html from the slides'
// status.json files. `threshold` is the call's cut-off.
Outcome write_cohort_outputs(const fs::path& dir, const std::vector<SlideEntry>& slides, double threshold);

// DIR/slides/NAME.
fs::path slide_dir(const fs::path& dir, const SlideEntry& slide);

}  // namespace histoscan::cohort
