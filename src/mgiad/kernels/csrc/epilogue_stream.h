// The epilogue of epilogue.h for an output that bypasses the caches: read from a block `y` that a
// kernel has just computed into a small buffer (still in L1/L2), written to `out` with
// non-temporal stores, so that the output's lines are never read from memory before they are
// written (a plain store reads each line first: a third more traffic for a transfer).
// Written once over an ISA traits struct; included only after the including file's target pragma.
#pragma once
#include "epilogue.h"

namespace {

// Pixels [p0, p1): y holds them contiguously (pixel p at (p - p0) * C), out, add and residual at
// p * C. Needs C a multiple of Isa::width and out aligned to the vector.
template <class Isa>
void epilogue_stream(const mgiad_kernels::Epilogue& e, const float* y, float* out, int64_t C, int64_t p0,
                     int64_t p1) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const auto m = Isa::mask(VW);
  for (int64_t p = p0; p < p1; ++p) {
    const float* yp = y + (p - p0) * C;
    const int64_t at = p * C;
    for (int64_t c = 0; c < C; c += VW) {
      V v = Isa::fma(Isa::template load<false>(yp + c, m), Isa::template load<false>(e.alpha + c, m),
                     Isa::template load<false>(e.beta + c, m));
      if (e.add)
        v = Isa::fma(Isa::template load<false>(e.add + at + c, m), Isa::template load<false>(e.add_scale + c, m), v);
      if (e.relu) v = Isa::max(v, Isa::zero());
      if (e.residual) v = Isa::add(v, Isa::template load<false>(e.residual + at + c, m));
      Isa::store_stream(out + at + c, v);
    }
  }
  Isa::store_fence();
}

}  // namespace
