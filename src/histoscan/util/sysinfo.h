#pragma once
// What the process costs: peak resident memory, for reports and benchmarks; how it gets
// memory from the system; and what the CPU is (/proc/cpuinfo, read here only).
#include <initializer_list>
#include <string>

namespace histoscan {

// The CPU's "model name" in /proc/cpuinfo ("AMD EPYC ..."); "unknown" where there is none.
std::string cpu_model_name();

// The CPU's "vendor_id" in /proc/cpuinfo ("GenuineIntel", "AuthenticAMD"); "unknown" where
// there is none.
std::string cpu_vendor();

// True when the first "flags" line of /proc/cpuinfo names any of `flags` (e.g. "avx512_bf16").
bool cpu_has_any_flag(std::initializer_list<const char*> flags);

// Peak resident set size of this process so far, in MiB (VmHWM of /proc/self/status; 0
// where that is not available).
double peak_rss_mib();

// Makes freed memory stay with the process for its next allocation, large blocks included.
// By default glibc maps every block over 32 MiB fresh from the kernel and unmaps it when freed,
// so each training step's activations (75 MB a tensor in seed-cnn's first stage at batch 128)
// are new pages that the kernel zero-fills and faults in again, step after step. Here large
// blocks come from the heap, and the heap gives its free top back only beyond 2 GiB: float32
// training ran 1.7x as fast (docs/performance.md). Peak resident memory is still the working
// set's peak. Call it first in main. No-op off glibc.
void reuse_freed_memory();

}  // namespace histoscan
