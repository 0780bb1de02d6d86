// AVX-512 vector operations for conv3x3.h (included only by isa_avx512.cpp, after its target pragma).
#pragma once
#include <immintrin.h>

namespace {

struct Avx512 {
  using V = __m512;
  using Mask = __mmask16;
  using Control = __m512i;
  static constexpr int width = 16;
  static constexpr int gemm_accumulators = 24;  // Winograd's matrix products: registers for sums
  static constexpr int wgrad_channels = 2;  // input channels per weight-gradient pass: 18 accumulators
  static constexpr bool row_pairs = true;   // forward blocks of 2 rows x 8 pixels: 16 accumulators

  static inline Mask mask(int lanes) { return (Mask)((1u << lanes) - 1u); }
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float x) { return _mm512_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static inline V max(V a, V b) { return _mm512_max_ps(a, b); }
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
  // Non-temporal store (p 64-byte aligned): no read of the line before it is written.
  static inline void store_stream(float* p, V v) { _mm512_stream_ps(p, v); }
  static inline void store_fence() { _mm_sfence(); }
  // The control vector of group_broadcast for input channel j of each group (GS < width).
  template <int GS>
  static inline __m512i group_control(int j) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i group_start = _mm512_andnot_si512(_mm512_set1_epi32(GS - 1), lane);
    return _mm512_add_epi32(group_start, _mm512_set1_epi32(j));
  }
  // Lane l gets lane control[l] of v: input channel j of each group, across its group (an in-lane
  // permute when groups fit in 128-bit lanes).
  template <int GS>
  static inline V group_broadcast(V v, __m512i control) {
    if constexpr (GS <= 4) return _mm512_permutevar_ps(v, control);
    else return _mm512_permutexvar_ps(control, v);
  }
  // Transfers (transfer_kernels.h): the lower half of a vector from memory; lane l <- lane l / 2;
  // lane l <- lane 2l + lane 2l + 1 of the concatenation lo | hi.
  static inline V load_half(const float* p) { return _mm512_castps256_ps512(_mm256_loadu_ps(p)); }
  static inline V dup_lower(V v) {
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), v);
  }
  static inline V pairsum(V lo, V hi) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    return _mm512_add_ps(_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
  }
};

}  // namespace
