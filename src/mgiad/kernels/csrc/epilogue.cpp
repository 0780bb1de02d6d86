// apply_epilogue (epilogue.h): one pixel loop per combination of the optional maps and the ReLU,
// channels innermost (vectorised by the compiler); target_clones compiles each for AVX-512, AVX2 and
// plain x86-64, and the dynamic loader picks one for this CPU.
#include "epilogue.h"

namespace mgiad_kernels {
namespace {

#define MGIAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

template <bool ADD, bool RELU, bool RESIDUAL>
MGIAD_CLONES void epilogue_pixels(const float* y, float* out, int64_t C, int64_t p0, int64_t p1,
                                  const float* __restrict alpha, const float* __restrict beta,
                                  const float* __restrict add, const float* __restrict add_scale,
                                  const float* __restrict residual) {
  for (int64_t p = p0; p < p1; ++p) {
    const float* yp = y + p * C;
    float* o = out + p * C;  // y's pixel itself, or another buffer's
    for (int64_t c = 0; c < C; ++c) {
      float v = alpha[c] * yp[c] + beta[c];
      if constexpr (ADD) v += add_scale[c] * add[p * C + c];
      if constexpr (RELU) v = v > 0.f ? v : 0.f;
      if constexpr (RESIDUAL) v += residual[p * C + c];
      o[c] = v;
    }
  }
}

template <bool ADD, bool RELU>
void with_residual(const Epilogue& e, const float* y, float* out, int64_t C, int64_t p0, int64_t p1) {
  if (e.residual) epilogue_pixels<ADD, RELU, true>(y, out, C, p0, p1, e.alpha, e.beta, e.add, e.add_scale, e.residual);
  else epilogue_pixels<ADD, RELU, false>(y, out, C, p0, p1, e.alpha, e.beta, e.add, e.add_scale, nullptr);
}

}  // namespace

void apply_epilogue(const Epilogue& e, const float* y, float* out, int64_t C, int64_t p0, int64_t p1) {
  if (e.add) {
    if (e.relu) with_residual<true, true>(e, y, out, C, p0, p1);
    else with_residual<true, false>(e, y, out, C, p0, p1);
  } else {
    if (e.relu) with_residual<false, true>(e, y, out, C, p0, p1);
    else with_residual<false, false>(e, y, out, C, p0, p1);
  }
}

}  // namespace mgiad_kernels
