#pragma once
// Runs a risky read in another process first. Some libraries crash, instead of reporting an
// error, on damaged files (HDF5 1.10 in its metadata cache, LibTorch 1.13 in its TorchScript
// parser: both found by fuzzing); a crash there is contained and the caller turns it into a
// one-line error naming the file. That process also watches its own memory, since some
// damaged headers make these libraries allocate and fill gigabytes.
#include <string>

namespace histoscan {

struct ProbeOutcome {
  enum Kind { kFinished, kThrew, kCrashed, kTooMuchMemory, kHung };
  Kind kind = kFinished;
  std::string how;  // kCrashed: the signal's name (e.g. "Segmentation fault") or exit status
};

// A probe: reads of a file named in `arg` (with whatever else the caller packs into it).
// A plain function, not a closure: it runs in another process, which gets only the string.
using ProbeFn = void (*)(const std::string& arg);

// Runs probe(arg) in a helper process and says how that went: kFinished when the probe
// returned, kThrew when it threw (the exception stays there: a caller wanting its message
// repeats the reads itself), kCrashed when the helper died, kTooMuchMemory when the helper's
// resident set grew by more than `memory_limit_mib` during the probe (checked every 20 ms of
// its CPU time, so a probe filling gigabytes stops soon after the limit), kHung when it ran past
// `time_limit_s` (the helper is killed).
//
// The helper is forked on the first call and serves later calls too, until it crashes or
// grows too much; then the next call forks a new one. (A fork per call costs milliseconds
// that fuzzing multiplies by a million.) It is a copy of this process at that first call with
// only the calling thread, writes nothing to stdout or stderr (/dev/null), ignores SIGINT,
// and ends when this process does. Calls are
// serialised.
ProbeOutcome probe_in_child(ProbeFn probe, const std::string& arg, double memory_limit_mib, unsigned time_limit_s = 300);

// Called in the helper right after fork (the fuzz targets use it to keep libFuzzer from
// recording a crash the helper contains). Null by default.
void set_probe_child_hook(void (*hook)());

}  // namespace histoscan
