// AVX2 + FMA vector operations for conv3x3.h (included only by isa_avx2.cpp, after its target pragma).
#pragma once
#include <immintrin.h>

namespace {

struct Avx2 {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int width = 8;
  static constexpr int wgrad_channels = 2;  // input channels per weight-gradient pass: 6 accumulators

  static inline Mask mask(int lanes) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), lane);
  }
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(float x) { return _mm256_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  template <bool MASKED>
  static inline V load(const float* p, Mask m) {
    if constexpr (MASKED) return _mm256_maskload_ps(p, m);
    else return _mm256_loadu_ps(p);
  }
  template <bool MASKED>
  static inline void store(float* p, V v, Mask m) {
    if constexpr (MASKED) _mm256_maskstore_ps(p, m, v);
    else _mm256_storeu_ps(p, v);
  }
  // Lane l gets lane (l / GS) * GS + J of v (GS = 2 or 4: inside 128-bit lanes).
  template <int GS, int J>
  static inline V group_broadcast(V v) {
    if constexpr (GS == 4) {
      return _mm256_permute_ps(v, J * 0x55);
    } else {
      static_assert(GS == 2, "group_broadcast: GS < width");
      return _mm256_permute_ps(v, J | (J << 2) | ((2 + J) << 4) | ((2 + J) << 6));
    }
  }
};

}  // namespace
