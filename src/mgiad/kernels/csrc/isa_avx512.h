// AVX-512 vector operations for conv3x3.h (included only by isa_avx512.cpp, after its target pragma).
#pragma once
#include <immintrin.h>

namespace {

struct Avx512 {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int width = 16;
  static constexpr int wgrad_channels = 4;  // input channels per weight-gradient pass: 12 accumulators

  static inline Mask mask(int lanes) { return (Mask)((1u << lanes) - 1u); }
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float x) { return _mm512_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  template <bool MASKED>
  static inline V load(const float* p, Mask m) {
    if constexpr (MASKED) return _mm512_maskz_loadu_ps(m, p);
    else return _mm512_loadu_ps(p);
  }
  template <bool MASKED>
  static inline void store(float* p, V v, Mask m) {
    if constexpr (MASKED) _mm512_mask_storeu_ps(p, m, v);
    else _mm512_storeu_ps(p, v);
  }
  // Lane l gets lane (l / GS) * GS + J of v: input channel J of each group, across its group.
  template <int GS, int J>
  static inline V group_broadcast(V v) {
    if constexpr (GS == 4) {
      return _mm512_permute_ps(v, J * 0x55);
    } else if constexpr (GS == 2) {
      return _mm512_permute_ps(v, J | (J << 2) | ((2 + J) << 4) | ((2 + J) << 6));
    } else {
      static_assert(GS == 8, "group_broadcast: GS < width");
      const __m512i index = _mm512_set_epi32(8 + J, 8 + J, 8 + J, 8 + J, 8 + J, 8 + J, 8 + J, 8 + J,
                                             J, J, J, J, J, J, J, J);
      return _mm512_permutexvar_ps(index, v);
    }
  }
};

}  // namespace
