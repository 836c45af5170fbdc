#pragma once
// A cohort of slides scanned with one network: cohort/ (no network) does the folder, the
// per-slide status and the tables; this runs plan_scan, score_tiles and write_scan_outputs
// for each slide it takes, in one process or as one rank of a job.
#include <filesystem>
#include <optional>
#include <vector>

#include <c10/core/Device.h>
#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

#include "histoscan/cohort/cohort.h"
#include "histoscan/scan/scanner.h"

namespace histoscan::dist {
class Group;
}

namespace histoscan::scan {

struct CohortScanOptions {
  fs::path out;
  nlohmann::json settings;  // what cohort.json records and a re-run must match
  bool rescan = false;      // scan slides done before again
  bool overwrite = false;   // write into a non-empty --out that holds no cohort
};

struct CohortScanResult {
  cohort::Tally tally;                     // this process's slides
  std::optional<cohort::Outcome> outcome;  // the cohort's table: rank 0 (or the only process) only
};

// Rank 0 (or the only process) prepares `out` first (InputError on every rank when it
// refuses); every rank then takes the next slide (from `group`'s counter in the job's store,
// or in order) and scans it with `net` on `device` into out/slides/NAME, a slide's failure
// becoming its row; rank 0 writes the tables once every rank is done. `options` as for one
// slide: require_tissue, require_mpp and overwrite are set here, a slide's manifest mpp
// replaces slide_mpp.
CohortScanResult scan_cohort(torch::nn::Sequential& net, c10::Device device, const std::vector<cohort::SlideEntry>& slides,
                             const ScanOptions& options, const CohortScanOptions& cohort_options, dist::Group* group);

}  // namespace histoscan::scan
