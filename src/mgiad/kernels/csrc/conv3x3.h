// Grouped 3x3 convolution kernels, written once over an ISA traits struct (Avx512 or Avx2).
// NHWC: a vector holds `Isa::width` consecutive channels of one pixel (several groups when the
// group is narrower than the vector). Each input channel j of a group is broadcast across its group
// (a permute inside the vector, or a scalar broadcast from memory when a group fills whole vectors),
// then multiplied by the vector of weights w[o, j, kh, kw] of the output channels o in the vector.
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

// Input channel j of each group in the vector of channels [c0, c0 + width) of one pixel; control
// is Isa::group_control<GS>(j) (unused when a group fills whole vectors).
template <class Isa, int GS, bool MASKED>
MGIAD_INLINE typename Isa::V group_channel(const float* pixel, int64_t c0, int64_t group_base, int j,
                                           typename Isa::Control control, typename Isa::Mask m) {
  if constexpr (GS >= Isa::width) {
    return Isa::set1(pixel[group_base + j]);
  } else {
    return Isa::template group_broadcast<GS>(Isa::template load<MASKED>(pixel + c0, m), control);
  }
}

template <class Isa, int GS>
MGIAD_INLINE typename Isa::Control control_for(int j) {
  if constexpr (GS >= Isa::width) return typename Isa::Control{};
  else return Isa::template group_control<GS>(j);
}

// One input row's contribution to PB consecutive output pixels (x0 ...) of up to two output rows,
// channels [c0, c0 + width): acc0 through the taps w0_kh (if USE0), acc1 through w1_kh (if USE1).
// Each permuted input vector serves up to 3 taps of each row.
template <class Isa, int GS, int PB, bool MASKED, bool USE0, bool USE1>
MGIAD_INLINE void conv_input_row(typename Isa::V (&acc0)[PB], typename Isa::V (&acc1)[PB], const float* row,
                                 const float* w0_kh, const float* w1_kh, int64_t C, int64_t x0, int64_t c0,
                                 bool has_left, bool has_right, typename Isa::Mask m) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const int64_t group_base = c0 - c0 % GS;
  for (int j = 0; j < GS; ++j) {
    const auto control = control_for<Isa, GS>(j);
    V wa[3], wb[3];
    for (int kw = 0; kw < 3; ++kw) {
      if constexpr (USE0) wa[kw] = Isa::template load<false>(w0_kh + (kw * GS + j) * VW, m);
      if constexpr (USE1) wb[kw] = Isa::template load<false>(w1_kh + (kw * GS + j) * VW, m);
    }
    unroll<PB + 2>([&](auto i_) __attribute__((always_inline)) {
      constexpr int I = decltype(i_)::value;  // input pixel x0 + I - 1 feeds output pixel I - kw
      if constexpr (I == 0) { if (!has_left) return; }
      if constexpr (I == PB + 1) { if (!has_right) return; }
      const V v = group_channel<Isa, GS, MASKED>(row + (x0 + I - 1) * C, c0, group_base, j, control, m);
      unroll<3>([&](auto kw_) __attribute__((always_inline)) {
        constexpr int KW = decltype(kw_)::value;
        if constexpr (I - KW >= 0 && I - KW < PB) {
          if constexpr (USE0) acc0[I - KW] = Isa::fma(v, wa[KW], acc0[I - KW]);
          if constexpr (USE1) acc1[I - KW] = Isa::fma(v, wb[KW], acc1[I - KW]);
        }
      });
    });
  }
}

// Stores PB output pixels of one row (channels [c0, c0 + width)) through the epilogue of epilogue.h:
// alpha * acc + beta + add_scale * add, ReLU, + residual, computed in registers.
template <class Isa, int PB, bool MASKED>
MGIAD_INLINE void store_with_epilogue(const ConvShape& s, float* out_px, int64_t c0, typename Isa::V (&acc)[PB],
                                      typename Isa::Mask m) {
  using V = typename Isa::V;
  const mgiad_kernels::Epilogue& e = *s.epilogue;
  const int64_t C = s.C, at = out_px - s.out_base;  // the same pixel in add and residual
  const V alpha = Isa::template load<MASKED>(e.alpha + c0, m), beta = Isa::template load<MASKED>(e.beta + c0, m);
  const V scale = Isa::template load<MASKED>(e.add_scale + c0, m);
  for (int p = 0; p < PB; ++p) {
    const int64_t i = at + p * C + c0;
    V v = Isa::fma(acc[p], alpha, beta);
    if (e.add) v = Isa::fma(Isa::template load<MASKED>(e.add + i, m), scale, v);
    if (e.relu) v = Isa::max(v, Isa::zero());
    if (e.residual) v = Isa::add(v, Isa::template load<MASKED>(e.residual + i, m));
    if (!MASKED && s.stream_out) Isa::store_stream(out_px + p * C + c0, v);
    else Isa::template store<MASKED>(out_px + p * C + c0, v, m);
  }
}

// PB output pixels (x0 ...) of R (1 or 2) output rows y (, y + 1), channels [c0, c0 + width):
// accumulators in registers; with R = 2 the input rows y and y + 1 are permuted once for both.
// Between input rows it prefetches the same pixels of the input rows that the next R output rows
// read first and of those output rows (a few at a time: a burst would stall on the fill buffers).
template <class Isa, int GS, int R, int PB, bool MASKED>
MGIAD_INLINE void conv_block(const ConvShape& s, const float* in_img, const float* w_block, float* out_px,
                             int64_t y, int64_t x0, int64_t c0, typename Isa::Mask m) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width, PARTS = R + 2;
  const int64_t C = s.C, W = s.W, row_size = W * C;
  const bool has_left = x0 > 0, has_right = x0 + PB < W, prefetch = y + R + 2 <= s.H;
  auto row = [&](int64_t yin) { return in_img + yin * row_size; };
  auto taps = [&](int kh) { return w_block + kh * 3 * GS * VW; };
  auto prefetch_part = [&](int part) __attribute__((always_inline)) {
    if (!prefetch) return;
    for (int p = part * PB / PARTS; p < (part + 1) * PB / PARTS; ++p)
      for (int k = 0; k < R; ++k) {
        __builtin_prefetch(row(y + 1 + R + k) + (x0 + p) * C + c0);
        if (!s.stream_out) __builtin_prefetch(out_px + (R + k) * row_size + p * C + c0, 1);
        if (s.epilogue) {  // the maps the epilogue reads for those output rows
          const int64_t at = out_px - s.out_base + (R + k) * row_size + p * C + c0;
          if (s.epilogue->add) __builtin_prefetch(s.epilogue->add + at);
          if (s.epilogue->residual) __builtin_prefetch(s.epilogue->residual + at);
        }
      }
  };
  V acc0[PB], acc1[PB];
  for (int p = 0; p < PB; ++p) acc0[p] = acc1[p] = Isa::zero();
  if constexpr (R == 2) {
    if (y > 0)
      conv_input_row<Isa, GS, PB, MASKED, true, false>(acc0, acc1, row(y - 1), taps(0), nullptr, C, x0, c0, has_left, has_right, m);
    prefetch_part(0);
    for (int k = 0; k < 2; ++k) {
      conv_input_row<Isa, GS, PB, MASKED, true, true>(acc0, acc1, row(y + k), taps(1 + k), taps(k), C, x0, c0, has_left, has_right, m);
      prefetch_part(1 + k);
    }
    if (y + 2 < s.H)
      conv_input_row<Isa, GS, PB, MASKED, false, true>(acc0, acc1, row(y + 2), nullptr, taps(2), C, x0, c0, has_left, has_right, m);
    prefetch_part(3);
  } else {
    for (int kh = 0; kh < 3; ++kh) {
      if (y + kh - 1 >= 0 && y + kh - 1 < s.H)
        conv_input_row<Isa, GS, PB, MASKED, true, false>(acc0, acc1, row(y + kh - 1), taps(kh), nullptr, C, x0, c0, has_left, has_right, m);
      prefetch_part(kh);
    }
  }
  if (s.epilogue) {
    store_with_epilogue<Isa, PB, MASKED>(s, out_px, c0, acc0, m);
    if constexpr (R == 2) store_with_epilogue<Isa, PB, MASKED>(s, out_px + W * C, c0, acc1, m);
    return;
  }
  if (!MASKED && s.stream_out) {
    for (int p = 0; p < PB; ++p) Isa::store_stream(out_px + p * C + c0, acc0[p]);
    if constexpr (R == 2)
      for (int p = 0; p < PB; ++p) Isa::store_stream(out_px + (W + p) * C + c0, acc1[p]);
    return;
  }
  for (int p = 0; p < PB; ++p) Isa::template store<MASKED>(out_px + p * C + c0, acc0[p], m);
  if constexpr (R == 2)
    for (int p = 0; p < PB; ++p) Isa::template store<MASKED>(out_px + (W + p) * C + c0, acc1[p], m);
}

template <class Isa, int GS, int R, int PB>
void conv_pixels(const ConvShape& s, const float* in_img, const float* w_packed, float* out_row, int64_t y,
                 int64_t x0) {
  constexpr int VW = Isa::width;
  for (int64_t c0 = 0; c0 < s.C; c0 += VW) {
    const float* w_block = w_packed + (c0 / VW) * 9 * GS * VW;
    if (GS >= VW || c0 + VW <= s.C) {
      conv_block<Isa, GS, R, PB, false>(s, in_img, w_block, out_row + x0 * s.C, y, x0, c0, Isa::mask(VW));
    } else if constexpr (GS < VW) {
      conv_block<Isa, GS, R, PB, true>(s, in_img, w_block, out_row + x0 * s.C, y, x0, c0, Isa::mask(s.C - c0));
    }
  }
}

template <class Isa, int GS, int R>
void conv_rows_of(const ConvShape& s, const float* in_img, const float* w_packed, float* out_row, int64_t y) {
  int64_t x0 = 0;
  for (; x0 + 8 <= s.W; x0 += 8) conv_pixels<Isa, GS, R, 8>(s, in_img, w_packed, out_row, y, x0);
  if (x0 + 4 <= s.W) {
    conv_pixels<Isa, GS, R, 4>(s, in_img, w_packed, out_row, y, x0);
    x0 += 4;
  }
  for (; x0 < s.W; ++x0) conv_pixels<Isa, GS, R, 1>(s, in_img, w_packed, out_row, y, x0);
}

// Output rows [row_begin, row_end) of the N*H rows, in pairs of rows of one image where the ISA has
// the registers for it.
template <class Isa, int GS>
void conv_rows(const ConvShape& s, const float* in, const float* w_packed, float* out,
               int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end;) {
    const int64_t n = r / s.H, y = r % s.H;
    const float* in_img = in + n * s.H * s.W * s.C;
    float* out_row = out + r * s.W * s.C;
    if (Isa::row_pairs && r + 1 < row_end && y + 1 < s.H) {
      conv_rows_of<Isa, GS, 2>(s, in_img, w_packed, out_row, y);
      r += 2;
    } else {
      conv_rows_of<Isa, GS, 1>(s, in_img, w_packed, out_row, y);
      r += 1;
    }
  }
  if (s.stream_out) Isa::store_fence();
}

// Weight gradient from one input row, input channels J0 .. J0 + JC - 1 of each group, all taps:
// tap (kh, kw) pairs input pixel xin with grad-output pixel xin - kw + 1 of g_rows[kh] (the row
// yin - kh + 1; KH_VALID's bit kh says whether it is inside the image). Accumulators (9 * JC
// vectors) are loaded from and stored back to grad_block.
template <class Isa, int GS, int JC, int KH_VALID, bool MASKED>
MGIAD_INLINE void weight_grad_taps(const ConvShape& s, const float* in_row, const float* const* g_rows,
                                   float* grad_block, int J0, int64_t c0, bool prefetch, typename Isa::Mask m) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const int64_t C = s.C, W = s.W, group_base = c0 - c0 % GS;
  V a[3][3][JC];
  auto at = [&](int kh, int kw, int jj) { return grad_block + ((kh * 3 + kw) * GS + J0 + jj) * VW; };
  for (int kh = 0; kh < 3; ++kh)
    if (KH_VALID >> kh & 1)
      for (int kw = 0; kw < 3; ++kw)
        for (int jj = 0; jj < JC; ++jj) a[kh][kw][jj] = Isa::template load<false>(at(kh, kw, jj), m);
  typename Isa::Control control[JC];
  for (int jj = 0; jj < JC; ++jj) control[jj] = control_for<Isa, GS>(J0 + jj);
  const int64_t row_size = W * C;
  auto step = [&](int64_t xin, bool first, bool last) __attribute__((always_inline)) {
    if (prefetch) {
      __builtin_prefetch(in_row + row_size + xin * C + c0);
      __builtin_prefetch(g_rows[0] + row_size + xin * C + c0);
    }
    V v[JC];
    for (int jj = 0; jj < JC; ++jj)
      v[jj] = group_channel<Isa, GS, MASKED>(in_row + xin * C, c0, group_base, J0 + jj, control[jj], m);
    unroll<3>([&](auto kh_) __attribute__((always_inline)) {
      constexpr int KH = decltype(kh_)::value;
      if constexpr (KH_VALID >> KH & 1) {
        unroll<3>([&](auto kw_) __attribute__((always_inline)) {
          constexpr int KW = decltype(kw_)::value;
          if (KW == 0 && last) return;
          if (KW == 2 && first) return;
          const V g = Isa::template load<MASKED>(g_rows[KH] + (xin - KW + 1) * C + c0, m);
          for (int jj = 0; jj < JC; ++jj) a[KH][KW][jj] = Isa::fma(v[jj], g, a[KH][KW][jj]);
        });
      }
    });
  };
  if (W == 1) {
    step(0, true, true);
  } else {
    step(0, true, false);
    for (int64_t xin = 1; xin < W - 1; ++xin) step(xin, false, false);
    step(W - 1, false, true);
  }
  for (int kh = 0; kh < 3; ++kh)
    if (KH_VALID >> kh & 1)
      for (int kw = 0; kw < 3; ++kw)
        for (int jj = 0; jj < JC; ++jj) Isa::template store<false>(at(kh, kw, jj), a[kh][kw][jj], m);
}

// The first pass over the row also prefetches (if `prefetch`) the same channels of the next input row
// and of the grad-output row it adds (first touched there).
template <class Isa, int GS, int KH_VALID, bool MASKED>
void weight_grad_row_channels(const ConvShape& s, const float* in_row, const float* const* g_rows,
                              float* grad_block, int64_t c0, bool prefetch, typename Isa::Mask m) {
  constexpr int JC = GS < Isa::wgrad_channels ? GS : Isa::wgrad_channels;
  for (int j0 = 0; j0 < GS; j0 += JC)
    weight_grad_taps<Isa, GS, JC, KH_VALID, MASKED>(s, in_row, g_rows, grad_block, j0, c0, prefetch && j0 == 0, m);
}

template <class Isa, int GS, int KH_VALID>
void weight_grad_row(const ConvShape& s, const float* in_row, const float* const* g_rows, float* grad_packed,
                     bool prefetch) {
  constexpr int VW = Isa::width;
  for (int64_t c0 = 0; c0 < s.C; c0 += VW) {
    float* grad_block = grad_packed + (c0 / VW) * 9 * GS * VW;
    if (GS >= VW || c0 + VW <= s.C) {
      weight_grad_row_channels<Isa, GS, KH_VALID, false>(s, in_row, g_rows, grad_block, c0, prefetch, Isa::mask(VW));
    } else if constexpr (GS < VW) {
      weight_grad_row_channels<Isa, GS, KH_VALID, true>(s, in_row, g_rows, grad_block, c0, prefetch, Isa::mask(s.C - c0));
    }
  }
}

// Adds the weight gradient of input rows [row_begin, row_end) of the N*H rows (each with the up to
// three grad-output rows it reaches) to grad_packed.
template <class Isa, int GS>
void weight_grad_rows(const ConvShape& s, const float* in, const float* grad_out, float* grad_packed,
                      int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t yin = r % s.H;
    const float* in_row = in + r * s.W * s.C;
    const float* g_row = grad_out + r * s.W * s.C;  // same row; kh = 1
    const float* g_rows[3] = {g_row + s.W * s.C, g_row, g_row - s.W * s.C};
    const bool below = yin + 1 < s.H, above = yin > 0;  // rows reached by kh = 0 and kh = 2
    const bool prefetch = r + 1 < row_end && yin + 2 < s.H;  // next row and its kh = 0 row in this image
    if (below && above) weight_grad_row<Isa, GS, 0b111>(s, in_row, g_rows, grad_packed, prefetch);
    else if (below) weight_grad_row<Isa, GS, 0b011>(s, in_row, g_rows, grad_packed, prefetch);
    else if (above) weight_grad_row<Isa, GS, 0b110>(s, in_row, g_rows, grad_packed, prefetch);
    else weight_grad_row<Isa, GS, 0b010>(s, in_row, g_rows, grad_packed, prefetch);
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
