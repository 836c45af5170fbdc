#pragma once
// What the process costs: peak resident memory, for reports and benchmarks.

namespace histoscan {

// Peak resident set size of this process so far, in MiB (VmHWM of /proc/self/status; 0
// where that is not available).
double peak_rss_mib();

}  // namespace histoscan
