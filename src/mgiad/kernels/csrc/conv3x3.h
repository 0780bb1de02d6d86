// Grouped 3x3 convolution kernels, written once over an ISA traits struct (Avx512 or Avx2).
// NHWC: a vector holds `Isa::width` consecutive channels of one pixel (several groups when the
// group is narrower than the vector). Each input channel j of a group is broadcast across its group
// (an in-lane permute, or a scalar broadcast from memory when a group fills whole vectors), then
// multiplied by the vector of weights w[o, j, kh, kw] of the output channels o in the vector.
// Included only after the including file's target pragma, and after <cstdint> and <utility>.
#pragma once
#include "kernels.h"

namespace {

using mgiad_kernels::ConvShape;

#define MGIAD_INLINE inline __attribute__((always_inline))

// f(integral_constant<int, 0>), ..., f(integral_constant<int, N - 1>), unrolled at compile time.
template <int N, class F>
MGIAD_INLINE void unroll(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

// Input channel J of each group in the vector of channels [c0, c0 + width) of one pixel.
template <class Isa, int GS, int J, bool MASKED>
MGIAD_INLINE typename Isa::V group_channel(const float* pixel, int64_t c0, int64_t group_base,
                                           typename Isa::Mask m) {
  if constexpr (GS >= Isa::width) {
    return Isa::set1(pixel[group_base + J]);
  } else {
    return Isa::template group_broadcast<GS, J>(Isa::template load<MASKED>(pixel + c0, m));
  }
}

// PB consecutive output pixels (x0 ...) of row y, channels [c0, c0 + width): accumulators in registers.
template <class Isa, int GS, int PB, bool MASKED>
MGIAD_INLINE void conv_block(const ConvShape& s, const float* in_img, const float* w_block,
                             float* out_px, int64_t y, int64_t x0, int64_t c0, typename Isa::Mask m) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const int64_t C = s.C, W = s.W, group_base = c0 - c0 % GS;
  const bool has_left = x0 > 0, has_right = x0 + PB < W;
  V acc[PB];
  for (int p = 0; p < PB; ++p) acc[p] = Isa::zero();
  for (int kh = 0; kh < 3; ++kh) {
    const int64_t yin = y + kh - 1;
    if (yin < 0 || yin >= s.H) continue;
    const float* row = in_img + yin * W * C;
    const float* w_row = w_block + kh * 3 * GS * VW;
    unroll<GS>([&](auto j_) __attribute__((always_inline)) {
      constexpr int J = decltype(j_)::value;
      const V w0 = Isa::template load<false>(w_row + (0 * GS + J) * VW, m);
      const V w1 = Isa::template load<false>(w_row + (1 * GS + J) * VW, m);
      const V w2 = Isa::template load<false>(w_row + (2 * GS + J) * VW, m);
      unroll<PB + 2>([&](auto i_) __attribute__((always_inline)) {
        constexpr int I = decltype(i_)::value;  // input pixel x0 + I - 1
        if constexpr (I == 0) { if (!has_left) return; }
        if constexpr (I == PB + 1) { if (!has_right) return; }
        const V v = group_channel<Isa, GS, J, MASKED>(row + (x0 + I - 1) * C, c0, group_base, m);
        if constexpr (I < PB) acc[I] = Isa::fma(v, w0, acc[I]);
        if constexpr (I >= 1 && I - 1 < PB) acc[I - 1] = Isa::fma(v, w1, acc[I - 1]);
        if constexpr (I >= 2) acc[I - 2] = Isa::fma(v, w2, acc[I - 2]);
      });
    });
  }
  for (int p = 0; p < PB; ++p) Isa::template store<MASKED>(out_px + p * C + c0, acc[p], m);
}

template <class Isa, int GS, bool MASKED>
void conv_row_channels(const ConvShape& s, const float* in_img, const float* w_block, float* out_row,
                       int64_t y, int64_t c0, typename Isa::Mask m) {
  int64_t x0 = 0;
  for (; x0 + 8 <= s.W; x0 += 8)
    conv_block<Isa, GS, 8, MASKED>(s, in_img, w_block, out_row + x0 * s.C, y, x0, c0, m);
  if (x0 + 4 <= s.W) {
    conv_block<Isa, GS, 4, MASKED>(s, in_img, w_block, out_row + x0 * s.C, y, x0, c0, m);
    x0 += 4;
  }
  for (; x0 < s.W; ++x0)
    conv_block<Isa, GS, 1, MASKED>(s, in_img, w_block, out_row + x0 * s.C, y, x0, c0, m);
}

template <class Isa, int GS>
void conv_rows(const ConvShape& s, const float* in, const float* w_packed, float* out,
               int64_t row_begin, int64_t row_end) {
  constexpr int VW = Isa::width;
  const int64_t blocks = (s.C + VW - 1) / VW;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / s.H, y = r % s.H;
    const float* in_img = in + n * s.H * s.W * s.C;
    float* out_row = out + r * s.W * s.C;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * VW;
      const float* w_block = w_packed + b * 9 * GS * VW;
      if (GS >= VW || c0 + VW <= s.C) {
        conv_row_channels<Isa, GS, false>(s, in_img, w_block, out_row, y, c0, Isa::mask(VW));
      } else if constexpr (GS < VW) {
        conv_row_channels<Isa, GS, true>(s, in_img, w_block, out_row, y, c0, Isa::mask(s.C - c0));
      }
    }
  }
}

// Weight gradient of input channels J0 .. J0 + JC - 1 (of each group), taps (kh, 0..2), from one
// input row and one grad-output row; accumulators loaded from and stored back to grad_kh.
template <class Isa, int GS, int J0, int JC, bool MASKED>
MGIAD_INLINE void weight_grad_taps(const ConvShape& s, const float* in_row, const float* g_row,
                                   float* grad_kh, int64_t c0, typename Isa::Mask m) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const int64_t C = s.C, W = s.W, group_base = c0 - c0 % GS;
  V a[3][JC];
  for (int kw = 0; kw < 3; ++kw)
    for (int jj = 0; jj < JC; ++jj) a[kw][jj] = Isa::template load<false>(grad_kh + (kw * GS + J0 + jj) * VW, m);
  // input pixel xin feeds output pixel xin - kw + 1 through tap kw
  auto step = [&](int64_t xin, bool first, bool last) __attribute__((always_inline)) {
    V v[JC];
    unroll<JC>([&](auto jj_) __attribute__((always_inline)) {
      constexpr int JJ = decltype(jj_)::value;
      v[JJ] = group_channel<Isa, GS, J0 + JJ, MASKED>(in_row + xin * C, c0, group_base, m);
    });
    unroll<3>([&](auto kw_) __attribute__((always_inline)) {
      constexpr int KW = decltype(kw_)::value;
      if (KW == 0 && last) return;
      if (KW == 2 && first) return;
      const V g = Isa::template load<MASKED>(g_row + (xin - KW + 1) * C + c0, m);
      for (int jj = 0; jj < JC; ++jj) a[KW][jj] = Isa::fma(v[jj], g, a[KW][jj]);
    });
  };
  if (W == 1) {
    step(0, true, true);
  } else {
    step(0, true, false);
    for (int64_t xin = 1; xin < W - 1; ++xin) step(xin, false, false);
    step(W - 1, false, true);
  }
  for (int kw = 0; kw < 3; ++kw)
    for (int jj = 0; jj < JC; ++jj) Isa::template store<false>(grad_kh + (kw * GS + J0 + jj) * VW, a[kw][jj], m);
}

template <class Isa, int GS, bool MASKED>
void weight_grad_row_channels(const ConvShape& s, const float* in_img, const float* g_row, float* grad_block,
                              int64_t y, int64_t c0, typename Isa::Mask m) {
  constexpr int JC = GS < Isa::wgrad_channels ? GS : Isa::wgrad_channels;
  for (int kh = 0; kh < 3; ++kh) {
    const int64_t yin = y + kh - 1;
    if (yin < 0 || yin >= s.H) continue;
    const float* in_row = in_img + yin * s.W * s.C;
    float* grad_kh = grad_block + kh * 3 * GS * Isa::width;
    unroll<GS / JC>([&](auto q_) __attribute__((always_inline)) {
      constexpr int Q = decltype(q_)::value;
      weight_grad_taps<Isa, GS, Q * JC, JC, MASKED>(s, in_row, g_row, grad_kh, c0, m);
    });
  }
}

template <class Isa, int GS>
void weight_grad_rows(const ConvShape& s, const float* in, const float* grad_out, float* grad_packed,
                      int64_t row_begin, int64_t row_end) {
  constexpr int VW = Isa::width;
  const int64_t blocks = (s.C + VW - 1) / VW;
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / s.H, y = r % s.H;
    const float* in_img = in + n * s.H * s.W * s.C;
    const float* g_row = grad_out + r * s.W * s.C;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t c0 = b * VW;
      float* grad_block = grad_packed + b * 9 * GS * VW;
      if (GS >= VW || c0 + VW <= s.C) {
        weight_grad_row_channels<Isa, GS, false>(s, in_img, g_row, grad_block, y, c0, Isa::mask(VW));
      } else if constexpr (GS < VW) {
        weight_grad_row_channels<Isa, GS, true>(s, in_img, g_row, grad_block, y, c0, Isa::mask(s.C - c0));
      }
    }
  }
}

// Instantiates the entry points of kernels.h for one ISA (group sizes 2, 4, 8, 16).
#define MGIAD_DEFINE_ISA(isa, Isa)                                                                      \
  namespace mgiad_kernels {                                                                             \
  int vector_width_##isa() { return Isa::width; }                                                       \
  void conv_rows_##isa(const ConvShape& s, const float* in, const float* w, float* out, int64_t r0,     \
                       int64_t r1) {                                                                    \
    switch (s.group_size) {                                                                             \
      case 2: return conv_rows<Isa, 2>(s, in, w, out, r0, r1);                                          \
      case 4: return conv_rows<Isa, 4>(s, in, w, out, r0, r1);                                          \
      case 8: return conv_rows<Isa, 8>(s, in, w, out, r0, r1);                                          \
      case 16: return conv_rows<Isa, 16>(s, in, w, out, r0, r1);                                        \
    }                                                                                                   \
  }                                                                                                     \
  void weight_grad_rows_##isa(const ConvShape& s, const float* in, const float* g, float* grad,         \
                              int64_t r0, int64_t r1) {                                                 \
    switch (s.group_size) {                                                                             \
      case 2: return weight_grad_rows<Isa, 2>(s, in, g, grad, r0, r1);                                  \
      case 4: return weight_grad_rows<Isa, 4>(s, in, g, grad, r0, r1);                                  \
      case 8: return weight_grad_rows<Isa, 8>(s, in, g, grad, r0, r1);                                  \
      case 16: return weight_grad_rows<Isa, 16>(s, in, g, grad, r0, r1);                                \
    }                                                                                                   \
  }                                                                                                     \
  }

}  // namespace
