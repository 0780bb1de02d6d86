// Transfer kernels (see transfers.h), written once over an ISA traits struct (Avx512 or Avx2).
// NHWC: a vector holds `Isa::width` consecutive channels of one pixel. Multiplier 2 reads half a
// vector of input channels and duplicates each lane (dup_lower); the transposed map sums adjacent
// lanes of two vectors (pairsum). The depthwise kernels walk each row in tiles of columns, and every
// block of channels passes over a tile while its inputs are in L1, so memory is read once, in order.
// Included only after the including file's target pragma, after <cstdint>, <utility>, <algorithm>.
#pragma once
#include "epilogue_stream.h"
#include "transfers.h"

namespace {

using mgiad_kernels::DwShape;

#define MGIAD_TINLINE inline __attribute__((always_inline))

template <bool B>
using Bool = std::integral_constant<bool, B>;

// f(integral_constant<int, 0>), ..., f(integral_constant<int, N - 1>), unrolled at compile time.
template <int N, class F>
MGIAD_TINLINE void repeat(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

// Lane l <- p[l / 2] (m_half masks the floats read when MASKED).
template <class Isa, bool MASKED>
MGIAD_TINLINE typename Isa::V load_dup(const float* p, typename Isa::Mask m_half) {
  if constexpr (MASKED) return Isa::dup_lower(Isa::template load<true>(p, m_half));
  else return Isa::dup_lower(Isa::load_half(p));
}

// The input vector of a block of output channels: p points at input channel o0 / M.
template <class Isa, int M, bool MASKED>
MGIAD_TINLINE typename Isa::V load_input(const float* p, typename Isa::Mask m_out, typename Isa::Mask m_half) {
  if constexpr (M == 1) return Isa::template load<MASKED>(p, m_out);
  else return load_dup<Isa, MASKED>(p, m_half);
}

// Stores a vector: masked, streamed (non-temporal, p aligned) or plain.
template <class Isa, bool MASKED>
MGIAD_TINLINE void put(float* p, typename Isa::V v, typename Isa::Mask m, bool stream) {
  if (!MASKED && stream) Isa::store_stream(p, v);
  else Isa::template store<MASKED>(p, v, m);
}

// ------------------------------------------------------------------ depthwise 3x3, stride 2
// Input rows 2 yo - 1 + kh of output row yo; valid[kh]: inside the image.
struct InputRows {
  const float* row[3];
  bool valid[3];
};

inline InputRows input_rows(const DwShape& s, const float* in_img, int64_t yo) {
  InputRows r;
  for (int kh = 0; kh < 3; ++kh) {
    const int64_t yi = 2 * yo - 1 + kh;
    r.valid[kh] = yi >= 0 && yi < s.H;
    r.row[kh] = r.valid[kh] ? in_img + yi * s.W * s.C : in_img;
  }
  return r;
}

// f(left, right, xo) for output columns xo in [x_begin, x_end); left / right (compile-time
// booleans) say whether input columns 2 xo - 1 and 2 xo + 1 lie inside the image.
template <class F>
MGIAD_TINLINE void for_columns(const DwShape& s, int64_t x_begin, int64_t x_end, F&& f) {
  int64_t xo = x_begin;
  if (xo == 0 && xo < x_end) {
    if (s.W > 1) f(Bool<false>{}, Bool<true>{}, int64_t{0});
    else f(Bool<false>{}, Bool<false>{}, int64_t{0});
    ++xo;
  }
  const int64_t interior_end = std::min(x_end, s.W / 2);  // 2 xo + 1 < W
  for (; xo < interior_end; ++xo) f(Bool<true>{}, Bool<true>{}, xo);
  for (; xo < x_end; ++xo) f(Bool<true>{}, Bool<false>{}, xo);
}

// Output columns per tile: the tile's input (3 rows, 2 T + 1 columns) stays in L1 while every block
// of channels passes over it.
inline int64_t column_tile(const DwShape& s) { return std::max<int64_t>(2, std::min<int64_t>(16, 1024 / s.C)); }

// f(kh_constant, row) for each valid input row of an output row.
template <class F>
MGIAD_TINLINE void for_rows(const InputRows& rows, F&& f) {
  repeat<3>([&](auto kh) __attribute__((always_inline)) {
    if (rows.valid[kh]) f(kh, rows.row[kh]);
  });
}

// Output channels [o0, o0 + width) of one output row; the 9 weights stay in registers.
template <class Isa, int M, bool MASKED>
void dw_forward_block(const DwShape& s, const InputRows& rows, const float* w, float* out_row, int64_t o0,
                      int64_t x0, int64_t x1, typename Isa::Mask m_out, typename Isa::Mask m_half) {
  using V = typename Isa::V;
  const int64_t Cin = s.C, Cout = M * s.C, c_in = o0 / M;
  V wt[9];
  for (int t = 0; t < 9; ++t) wt[t] = Isa::template load<false>(w + t * s.w_stride + o0, m_out);
  for_columns(s, x0, x1, [&](auto left, auto right, int64_t xo) __attribute__((always_inline)) {
    V acc = Isa::zero();
    for_rows(rows, [&](auto kh, const float* row) __attribute__((always_inline)) {
      const float* p = row + (2 * xo - 1) * Cin + c_in;
      if constexpr (decltype(left)::value)
        acc = Isa::fma(load_input<Isa, M, MASKED>(p, m_out, m_half), wt[3 * kh], acc);
      acc = Isa::fma(load_input<Isa, M, MASKED>(p + Cin, m_out, m_half), wt[3 * kh + 1], acc);
      if constexpr (decltype(right)::value)
        acc = Isa::fma(load_input<Isa, M, MASKED>(p + 2 * Cin, m_out, m_half), wt[3 * kh + 2], acc);
    });
    put<Isa, MASKED>(out_row + xo * Cout + o0, acc, m_out, s.stream_out);
  });
}

template <class Isa, int M>
void dw_forward_rows(const DwShape& s, const float* in, const float* w, float* out, int64_t r0, int64_t r1) {
  constexpr int VW = Isa::width;
  const int64_t Cout = M * s.C, tile = column_tile(s);
  for (int64_t r = r0; r < r1; ++r) {
    const InputRows rows = input_rows(s, in + (r / s.Ho) * s.H * s.W * s.C, r % s.Ho);
    float* out_row = out + r * s.Wo * Cout;
    // The input rows that the next output row reads and this one does not (2 yo + 2, 2 yo + 3),
    // prefetched tile by tile: the hardware's prefetchers miss this access pattern (a third faster).
    const int64_t yo = r % s.Ho, next_row = 2 * yo + 2;
    const int64_t next_rows = r + 1 < r1 && yo + 1 < s.Ho ? std::min<int64_t>(2, s.H - next_row) : 0;
    const float* next = next_rows > 0 ? in + ((r / s.Ho) * s.H + next_row) * s.W * s.C : nullptr;
    for (int64_t x0 = 0; x0 < s.Wo; x0 += tile) {
      const int64_t x1 = std::min(s.Wo, x0 + tile);
      const int64_t begin = std::max<int64_t>(0, 2 * x0 - 1) * s.C, end = std::min<int64_t>(s.W, 2 * x1 + 1) * s.C;
      for (int64_t k = 0; k < next_rows; ++k)  // this tile's columns, a cache line at a time
        for (int64_t i = begin; i < end; i += 16) __builtin_prefetch(next + k * s.W * s.C + i);
      for (int64_t o0 = 0; o0 < Cout; o0 += VW) {
        const int lanes = static_cast<int>(std::min<int64_t>(VW, Cout - o0));
        if (lanes == VW)
          dw_forward_block<Isa, M, false>(s, rows, w, out_row, o0, x0, x1, Isa::mask(VW), Isa::mask(VW / 2));
        else
          dw_forward_block<Isa, M, true>(s, rows, w, out_row, o0, x0, x1, Isa::mask(lanes),
                                         Isa::mask((lanes + 1) / 2));
      }
    }
  }
  if (s.stream_out) Isa::store_fence();
}

// Input channels [c0, c0 + width) of input row yi of the input gradient: each input pixel gathers
// the 1, 2 or 4 output pixels whose taps reach it (output channels M c0 ..., in 1 or 2 vectors).
template <class Isa, int M, bool MASKED>
void dw_grad_input_block(const DwShape& s, const float* g_img, int64_t yi, const float* w, float* gx_row,
                         int64_t c0, int64_t x0, int64_t x1, typename Isa::Mask m_in, typename Isa::Mask m_lo,
                         typename Isa::Mask m_hi) {
  using V = typename Isa::V;
  constexpr int VW = Isa::width;
  const int64_t Cout = M * s.C, row_size = s.Wo * Cout, o0 = M * c0;
  int rows = 0, kh_of[2];
  const float* g_rows[2];
  if (yi % 2 == 0) {
    kh_of[rows] = 1, g_rows[rows++] = g_img + (yi / 2) * row_size;
  } else {
    if ((yi + 1) / 2 < s.Ho) kh_of[rows] = 0, g_rows[rows++] = g_img + ((yi + 1) / 2) * row_size;
    kh_of[rows] = 2, g_rows[rows++] = g_img + ((yi - 1) / 2) * row_size;
  }
  auto tap = [&](V& lo, V& hi, const float* g_row, int t, int64_t xo) __attribute__((always_inline)) {
    const float* p = g_row + xo * Cout + o0;
    const float* wt = w + t * s.w_stride + o0;
    lo = Isa::fma(Isa::template load<MASKED>(p, m_lo), Isa::template load<false>(wt, m_lo), lo);
    if constexpr (M == 2)
      hi = Isa::fma(Isa::template load<MASKED>(p + VW, m_hi), Isa::template load<false>(wt + VW, m_hi), hi);
  };
  auto store = [&](int64_t xi, V lo, V hi) __attribute__((always_inline)) {
    if constexpr (M == 2) lo = Isa::pairsum(lo, hi);
    put<Isa, MASKED>(gx_row + xi * s.C + c0, lo, m_in, s.stream_out);
  };
  for (int64_t xi = x0; xi < x1; xi += 2) {  // x0 even
    V lo = Isa::zero(), hi = Isa::zero();  // even column xi: tap kw = 1 of output column xi / 2
    for (int k = 0; k < rows; ++k) tap(lo, hi, g_rows[k], 3 * kh_of[k] + 1, xi / 2);
    store(xi, lo, hi);
    if (xi + 1 >= x1) break;
    lo = hi = Isa::zero();  // odd column: kw = 0 of output column xi / 2 + 1, kw = 2 of xi / 2
    const bool next = xi / 2 + 1 < s.Wo;
    for (int k = 0; k < rows; ++k) {
      if (next) tap(lo, hi, g_rows[k], 3 * kh_of[k], xi / 2 + 1);
      tap(lo, hi, g_rows[k], 3 * kh_of[k] + 2, xi / 2);
    }
    store(xi + 1, lo, hi);
  }
}

template <class Isa, int M>
void dw_grad_input_rows(const DwShape& s, const float* g, const float* w, float* gx, int64_t r0, int64_t r1) {
  constexpr int VW = Isa::width;
  const int64_t tile = column_tile(s);
  for (int64_t r = r0; r < r1; ++r) {
    const float* g_img = g + (r / s.H) * s.Ho * s.Wo * M * s.C;
    float* gx_row = gx + r * s.W * s.C;
    for (int64_t x0 = 0; x0 < s.W; x0 += 2 * tile) {
      const int64_t x1 = std::min(s.W, x0 + 2 * tile);
      for (int64_t c0 = 0; c0 < s.C; c0 += VW) {
        const int lanes = static_cast<int>(std::min<int64_t>(VW, s.C - c0));
        const int lo = std::min(VW, M * lanes), hi = std::max(0, M * lanes - VW);
        if (lanes == VW)
          dw_grad_input_block<Isa, M, false>(s, g_img, r % s.H, w, gx_row, c0, x0, x1, Isa::mask(VW),
                                             Isa::mask(VW), Isa::mask(VW));
        else
          dw_grad_input_block<Isa, M, true>(s, g_img, r % s.H, w, gx_row, c0, x0, x1, Isa::mask(lanes),
                                            Isa::mask(lo), Isa::mask(hi));
      }
    }
  }
  if (s.stream_out) Isa::store_fence();
}

// Adds the weight gradient of output channels [o0, o0 + width) over one output row to gw (packed):
// 9 accumulators, one per tap.
template <class Isa, int M, bool MASKED>
void dw_grad_weight_block(const DwShape& s, const InputRows& rows, const float* g_row, float* gw, int64_t o0,
                          int64_t x0, int64_t x1, typename Isa::Mask m_out, typename Isa::Mask m_half) {
  using V = typename Isa::V;
  const int64_t Cin = s.C, Cout = M * s.C, c_in = o0 / M;
  V acc[9];
  for (int t = 0; t < 9; ++t) acc[t] = Isa::template load<false>(gw + t * s.w_stride + o0, m_out);
  for_columns(s, x0, x1, [&](auto left, auto right, int64_t xo) __attribute__((always_inline)) {
    const V g = Isa::template load<MASKED>(g_row + xo * Cout + o0, m_out);
    for_rows(rows, [&](auto kh, const float* row) __attribute__((always_inline)) {
      const float* p = row + (2 * xo - 1) * Cin + c_in;
      if constexpr (decltype(left)::value)
        acc[3 * kh] = Isa::fma(g, load_input<Isa, M, MASKED>(p, m_out, m_half), acc[3 * kh]);
      acc[3 * kh + 1] = Isa::fma(g, load_input<Isa, M, MASKED>(p + Cin, m_out, m_half), acc[3 * kh + 1]);
      if constexpr (decltype(right)::value)
        acc[3 * kh + 2] = Isa::fma(g, load_input<Isa, M, MASKED>(p + 2 * Cin, m_out, m_half), acc[3 * kh + 2]);
    });
  });
  for (int t = 0; t < 9; ++t) Isa::template store<false>(gw + t * s.w_stride + o0, acc[t], m_out);
}

template <class Isa, int M>
void dw_grad_weight_rows(const DwShape& s, const float* in, const float* g, float* gw, int64_t r0, int64_t r1) {
  constexpr int VW = Isa::width;
  const int64_t Cout = M * s.C, tile = column_tile(s);
  for (int64_t r = r0; r < r1; ++r) {
    const InputRows rows = input_rows(s, in + (r / s.Ho) * s.H * s.W * s.C, r % s.Ho);
    const float* g_row = g + r * s.Wo * Cout;
    for (int64_t x0 = 0; x0 < s.Wo; x0 += tile) {
      const int64_t x1 = std::min(s.Wo, x0 + tile);
      for (int64_t o0 = 0; o0 < Cout; o0 += VW) {
        const int lanes = static_cast<int>(std::min<int64_t>(VW, Cout - o0));
        if (lanes == VW)
          dw_grad_weight_block<Isa, M, false>(s, rows, g_row, gw, o0, x0, x1, Isa::mask(VW), Isa::mask(VW / 2));
        else
          dw_grad_weight_block<Isa, M, true>(s, rows, g_row, gw, o0, x0, x1, Isa::mask(lanes),
                                             Isa::mask((lanes + 1) / 2));
      }
    }
  }
}

// ------------------------------------------------------------------ 1x1 channel pairs
// wide[p, k] = narrow[p, k / 2] * w[k] for pixels [p0, p1).
template <class Isa>
void pair_expand(int64_t C, const float* narrow, const float* w, float* wide, int64_t p0, int64_t p1, bool stream) {
  constexpr int VW = Isa::width;
  const int64_t C2 = 2 * C, full = C2 / VW * VW;
  const int tail = static_cast<int>(C2 - full);
  const auto m_all = Isa::mask(VW), m_tail = Isa::mask(tail), m_half_tail = Isa::mask(tail / 2);
  for (int64_t p = p0; p < p1; ++p) {
    const float* in = narrow + p * C;
    float* out = wide + p * C2;
    for (int64_t k0 = 0; k0 < full; k0 += VW) {
      const auto v =
          Isa::fma(load_dup<Isa, false>(in + k0 / 2, m_all), Isa::template load<false>(w + k0, m_all), Isa::zero());
      put<Isa, false>(out + k0, v, m_all, stream);
    }
    if (tail) {
      const auto v = Isa::fma(load_dup<Isa, true>(in + full / 2, m_half_tail),
                              Isa::template load<false>(w + full, m_all), Isa::zero());
      Isa::template store<true>(out + full, v, m_tail);
    }
  }
  if (stream) Isa::store_fence();
}

// narrow[p, c] = wide[p, 2c] * w[2c] + wide[p, 2c + 1] * w[2c + 1] for pixels [p0, p1).
template <class Isa, bool MASKED>
MGIAD_TINLINE void pair_reduce_block(const float* in, const float* w, float* out, int64_t c0, typename Isa::Mask m,
                                     typename Isa::Mask m_lo, typename Isa::Mask m_hi, bool stream) {
  constexpr int VW = Isa::width;
  const auto lo = Isa::fma(Isa::template load<MASKED>(in + 2 * c0, m_lo), Isa::template load<false>(w + 2 * c0, m_lo),
                           Isa::zero());
  const auto hi = Isa::fma(Isa::template load<MASKED>(in + 2 * c0 + VW, m_hi),
                           Isa::template load<false>(w + 2 * c0 + VW, m_hi), Isa::zero());
  put<Isa, MASKED>(out + c0, Isa::pairsum(lo, hi), m, stream);
}

template <class Isa>
void pair_reduce(int64_t C, const float* wide, const float* w, float* narrow, int64_t p0, int64_t p1, bool stream) {
  constexpr int VW = Isa::width;
  const int64_t full = C / VW * VW;
  const int tail = static_cast<int>(C - full);
  const auto m_all = Isa::mask(VW), m_tail = Isa::mask(tail);
  const auto m_lo = Isa::mask(std::min(VW, 2 * tail)), m_hi = Isa::mask(std::max(0, 2 * tail - VW));
  for (int64_t p = p0; p < p1; ++p) {
    const float* in = wide + p * 2 * C;
    float* out = narrow + p * C;
    for (int64_t c0 = 0; c0 < full; c0 += VW)
      pair_reduce_block<Isa, false>(in, w, out, c0, m_all, m_all, m_all, stream);
    if (tail) pair_reduce_block<Isa, true>(in, w, out, full, m_tail, m_lo, m_hi, false);
  }
  if (stream) Isa::store_fence();
}

// gw[k] += sum over pixels [p0, p1) of narrow[p, k / 2] * wide[p, k]: tiles of pixels that stay in
// L1, one wide vector at a time, two accumulators.
template <class Isa, bool MASKED>
MGIAD_TINLINE void pair_weight_grad_block(int64_t C, const float* narrow, const float* wide, float* gw, int64_t k0,
                                          int64_t p0, int64_t p1, typename Isa::Mask m, typename Isa::Mask m_half) {
  auto a = Isa::template load<false>(gw + k0, m), b = Isa::zero();
  int64_t p = p0;
  for (; p + 2 <= p1; p += 2) {
    a = Isa::fma(load_dup<Isa, MASKED>(narrow + p * C + k0 / 2, m_half),
                 Isa::template load<MASKED>(wide + p * 2 * C + k0, m), a);
    b = Isa::fma(load_dup<Isa, MASKED>(narrow + (p + 1) * C + k0 / 2, m_half),
                 Isa::template load<MASKED>(wide + (p + 1) * 2 * C + k0, m), b);
  }
  if (p < p1)
    a = Isa::fma(load_dup<Isa, MASKED>(narrow + p * C + k0 / 2, m_half),
                 Isa::template load<MASKED>(wide + p * 2 * C + k0, m), a);
  Isa::template store<false>(gw + k0, Isa::fma(b, Isa::set1(1.0f), a), m);
}

template <class Isa>
void pair_weight_grad(int64_t C, const float* narrow, const float* wide, float* gw, int64_t p0, int64_t p1) {
  constexpr int VW = Isa::width;
  const int64_t C2 = 2 * C, full = C2 / VW * VW, tile = std::max<int64_t>(4, 24576 / (12 * C));
  const int tail = static_cast<int>(C2 - full);
  const auto m_all = Isa::mask(VW), m_tail = Isa::mask(tail), m_half_tail = Isa::mask(tail / 2);
  for (int64_t t0 = p0; t0 < p1; t0 += tile) {
    const int64_t t1 = std::min(p1, t0 + tile);
    for (int64_t k0 = 0; k0 < full; k0 += VW)
      pair_weight_grad_block<Isa, false>(C, narrow, wide, gw, k0, t0, t1, m_all, m_all);
    if (tail) pair_weight_grad_block<Isa, true>(C, narrow, wide, gw, full, t0, t1, m_tail, m_half_tail);
  }
}

// Instantiates the entry points of transfers.h for one ISA.
#define MGIAD_DEFINE_TRANSFERS(isa, Isa)                                                                   \
  namespace mgiad_kernels {                                                                                \
  int transfer_width_##isa() { return Isa::width; }                                                        \
  void dw_forward_rows_##isa(const DwShape& s, const float* in, const float* w, float* out, int64_t r0,    \
                             int64_t r1) {                                                                 \
    if (s.multiplier == 2) return dw_forward_rows<Isa, 2>(s, in, w, out, r0, r1);                          \
    return dw_forward_rows<Isa, 1>(s, in, w, out, r0, r1);                                                 \
  }                                                                                                        \
  void dw_grad_input_rows_##isa(const DwShape& s, const float* g, const float* w, float* gx, int64_t r0,   \
                                int64_t r1) {                                                              \
    if (s.multiplier == 2) return dw_grad_input_rows<Isa, 2>(s, g, w, gx, r0, r1);                         \
    return dw_grad_input_rows<Isa, 1>(s, g, w, gx, r0, r1);                                                \
  }                                                                                                        \
  void dw_grad_weight_rows_##isa(const DwShape& s, const float* in, const float* g, float* gw, int64_t r0, \
                                 int64_t r1) {                                                             \
    if (s.multiplier == 2) return dw_grad_weight_rows<Isa, 2>(s, in, g, gw, r0, r1);                       \
    return dw_grad_weight_rows<Isa, 1>(s, in, g, gw, r0, r1);                                              \
  }                                                                                                        \
  void pair_expand_##isa(int64_t C, const float* n, const float* w, float* o, int64_t p0, int64_t p1,     \
                         bool stream) {                                                                    \
    pair_expand<Isa>(C, n, w, o, p0, p1, stream);                                                          \
  }                                                                                                        \
  void pair_reduce_##isa(int64_t C, const float* i, const float* w, float* n, int64_t p0, int64_t p1,     \
                         bool stream) {                                                                    \
    pair_reduce<Isa>(C, i, w, n, p0, p1, stream);                                                          \
  }                                                                                                        \
  void pair_weight_grad_##isa(int64_t C, const float* n, const float* i, float* gw, int64_t p0,            \
                              int64_t p1) {                                                                \
    pair_weight_grad<Isa>(C, n, i, gw, p0, p1);                                                            \
  }                                                                                                        \
  void epilogue_stream_##isa(const Epilogue& e, const float* y, float* out, int64_t C, int64_t p0,         \
                             int64_t p1) {                                                                 \
    epilogue_stream<Isa>(e, y, out, C, p0, p1);                                                            \
  }                                                                                                        \
  }

}  // namespace
