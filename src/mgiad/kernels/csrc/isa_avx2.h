// AVX2 + FMA vector operations for conv3x3.h (included only by isa_avx2.cpp, after its target pragma).
#pragma once
#include <immintrin.h>

namespace {

struct Avx2 {
  using V = __m256;
  using Mask = __m256i;
  using Control = __m256i;
  static constexpr int width = 8;
  static constexpr int gemm_accumulators = 12;  // Winograd's matrix products: registers for sums
  static constexpr int wgrad_channels = 1;  // input channels per weight-gradient pass: 9 accumulators
  static constexpr bool row_pairs = false;  // forward blocks of 1 row x 8 pixels: 8 accumulators

  static inline Mask mask(int lanes) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), lane);
  }
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(float x) { return _mm256_set1_ps(x); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static inline V max(V a, V b) { return _mm256_max_ps(a, b); }
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
  // Non-temporal store (p 32-byte aligned): no read of the line before it is written.
  static inline void store_stream(float* p, V v) { _mm256_stream_ps(p, v); }
  static inline void store_fence() { _mm_sfence(); }
  // The control vector of group_broadcast for input channel j of each group (GS = 2 or 4).
  template <int GS>
  static inline __m256i group_control(int j) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i group_start = _mm256_andnot_si256(_mm256_set1_epi32(GS - 1), lane);
    return _mm256_add_epi32(group_start, _mm256_set1_epi32(j));
  }
  // Lane l gets lane control[l] of v (inside its 128-bit lane): input channel j of each group.
  template <int GS>
  static inline V group_broadcast(V v, __m256i control) {
    return _mm256_permutevar_ps(v, control);
  }
  // Transfers (transfer_kernels.h): the lower half of a vector from memory; lane l <- lane l / 2;
  // lane l <- lane 2l + lane 2l + 1 of the concatenation lo | hi.
  static inline V load_half(const float* p) { return _mm256_castps128_ps256(_mm_loadu_ps(p)); }
  static inline V dup_lower(V v) { return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)); }
  static inline V pairsum(V lo, V hi) {
    const V h = _mm256_hadd_ps(lo, hi);  // l01 l23 h01 h23 | l45 l67 h45 h67
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), 0xD8));
  }
};

}  // namespace
