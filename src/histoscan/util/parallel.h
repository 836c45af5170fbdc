#pragma once
// A plain parallel loop for I/O-bound work (decoding files); tensor work uses LibTorch's own threads.
#include <cstddef>
#include <functional>

namespace histoscan {

// Calls fn(i) for i in [0, n) on `threads` threads (0: all cores). The first exception
// thrown by any call stops handing out work and is rethrown here.
void parallel_for(std::size_t n, int threads, const std::function<void(std::size_t)>& fn);

// Number of threads meant by a --threads value: 0 means all cores.
int resolve_threads(int threads);

}  // namespace histoscan
