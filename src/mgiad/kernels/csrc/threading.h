// When an operator's work is worth the thread pool. Waking the pool and joining it costs a few
// microseconds, more than the work on small maps (batch 1 of a 16-channel network: a transfer is
// about 2 us of arithmetic). at::parallel_for runs on the calling thread when its range is not
// larger than the grain.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mgiad_kernels {

// Work (FLOPs, or bytes moved for the memory-bound operators) below this runs on one thread.
constexpr int64_t kSerialWork = int64_t{1} << 20;

// at::parallel_for's grain for `units` of `work` each: all of them (one thread) when the total is
// small, else `grain`.
inline int64_t grain_for(int64_t units, int64_t work, int64_t grain = 1) {
  return units * work < kSerialWork ? std::max<int64_t>(units, 1) : grain;
}

inline bool runs_serially(int64_t units, int64_t work) { return units * work < kSerialWork; }

}  // namespace mgiad_kernels
