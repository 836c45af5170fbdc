#include "histoscan/scan/cohort_scan.h"

#include <string>

#include <torch/torch.h>

#include "histoscan/dist/dist.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::scan {

CohortScanResult scan_cohort(torch::nn::Sequential& net, c10::Device device, const std::vector<cohort::SlideEntry>& slides,
                             const ScanOptions& options, const CohortScanOptions& c, dist::Group* group) {
  const bool rank0 = !group || group->rank() == 0;
  std::string refusal;
  if (rank0) {
    try {
      cohort::prepare_cohort_dir(c.out, c.settings, c.rescan, c.overwrite);
    } catch (const InputError& e) {
      if (!group) throw;
      refusal = e.what();
    }
  }
  if (group && !group->all_ok(refusal.empty(), "preparing the cohort folder"))
    throw InputError(refusal.empty() ? "rank 0 refused --out " + c.out.string() + "; see its message" : refusal);

  ScanOptions o = options;
  o.require_tissue = true;
  o.require_mpp = true;
  o.overwrite = true;  // the slide's own folder: a scan cut short is redone in place
  auto scan = [&](const cohort::SlideEntry& s, const fs::path& dir) {
    auto mine = o;
    if (s.mpp > 0) mine.slide_mpp = s.mpp;
    auto plan = slide::plan_scan(s.path, mine);
    auto stats = score_tiles(net, device, plan, mine);
    auto summary = slide::write_scan_outputs(dir, plan, mine, stats.scored, stats.seconds);
    log::info(s.name + ": " + slide::describe_scan(summary));
    return summary;
  };
  std::size_t counter = 0;
  cohort::NextFn next = [&] { return counter++; };
  if (group) next = [&] { return static_cast<std::size_t>(group->counter_add("histoscan/cohort/next", 1) - 1); };

  CohortScanResult result;
  result.tally = cohort::scan_slides(c.out, slides, scan, next, c.rescan);
  if (group) {
    log::info(group->launch().describe() + ": scanned " + std::to_string(result.tally.scanned) + ", skipped " +
              std::to_string(result.tally.skipped) + " done before, " + std::to_string(result.tally.failed) +
              " failed; waiting for the other ranks' last slides");
    group->all_ok(true, "waiting for every rank's last slide");
  }
  if (rank0) result.outcome = cohort::write_cohort_outputs(c.out, slides, o.threshold);
  return result;
}

}  // namespace histoscan::scan
