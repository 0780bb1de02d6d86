// The Winograd F(4x4, 3x3) kernels of winograd.h, written once over an ISA traits struct (Avx512,
// Avx2); included only after the including file's target pragma.
#pragma once
#include <algorithm>
#include <cstdint>

#include "winograd.h"

namespace {

template <class Isa>
struct Winograd43 {
  using V = typename Isa::V;
  static constexpr int VW = Isa::width;

  // o = B^T d for a column (or row) of 6 input values.
  static inline void input_1d(const V* d, V* o) {
    const V four = Isa::set1(4.f), minus_four = Isa::set1(-4.f), minus_five = Isa::set1(-5.f);
    o[0] = Isa::fma(four, d[0], Isa::fma(minus_five, d[2], d[4]));
    const V a = Isa::fma(minus_four, d[2], d[4]);  // d4 - 4 d2
    const V b = Isa::fma(minus_four, d[1], d[3]);  // d3 - 4 d1
    o[1] = Isa::add(a, b);
    o[2] = Isa::sub(a, b);
    const V c = Isa::sub(d[4], d[2]);
    const V e = Isa::mul(Isa::set1(2.f), Isa::sub(d[3], d[1]));
    o[3] = Isa::add(c, e);
    o[4] = Isa::sub(c, e);
    o[5] = Isa::fma(four, d[1], Isa::fma(minus_five, d[3], d[5]));
  }

  // o = A^T m for a column (or row) of 6 products.
  static inline void output_1d(const V* m, V* o) {
    const V s12 = Isa::add(m[1], m[2]), d12 = Isa::sub(m[1], m[2]);
    const V s34 = Isa::add(m[3], m[4]), d34 = Isa::sub(m[3], m[4]);
    o[0] = Isa::add(Isa::add(m[0], s12), s34);
    o[1] = Isa::fma(Isa::set1(2.f), d34, d12);
    o[2] = Isa::fma(Isa::set1(4.f), s34, s12);
    o[3] = Isa::add(Isa::fma(Isa::set1(8.f), d34, d12), m[5]);
  }

  // Mx[t][k] = sum_c Vx[t][c] Ux[c][k] for T tiles (a multiple of TB), K a multiple of KB vectors.
  template <int TB, int KB>
  static void product(const float* Vx, const float* Ux, float* Mx, int64_t T, int64_t C, int64_t K) {
    const auto m = Isa::mask(VW);
    for (int64_t k0 = 0; k0 < K; k0 += KB * VW) {
      for (int64_t t0 = 0; t0 < T; t0 += TB) {
        V acc[TB][KB];
#pragma GCC unroll 32
        for (int i = 0; i < TB; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < KB; ++j) acc[i][j] = Isa::zero();
        const float* v = Vx + t0 * C;
        const float* u = Ux + k0;
        for (int64_t c = 0; c < C; ++c) {
          V w[KB];
#pragma GCC unroll 8
          for (int j = 0; j < KB; ++j) w[j] = Isa::template load<false>(u + c * K + j * VW, m);
#pragma GCC unroll 32
          for (int i = 0; i < TB; ++i) {
            const V x = Isa::set1(v[i * C + c]);
#pragma GCC unroll 8
            for (int j = 0; j < KB; ++j) acc[i][j] = Isa::fma(x, w[j], acc[i][j]);
          }
        }
#pragma GCC unroll 32
        for (int i = 0; i < TB; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < KB; ++j) Isa::template store<false>(Mx + (t0 + i) * K + k0 + j * VW, acc[i][j], m);
      }
    }
  }

  template <int TB, int KB>
  static void blocks(const mgiad_kernels::WinogradShape& s, const float* in, const float* U,
                     const mgiad_kernels::Epilogue& e, float* out, int64_t b0, int64_t b1, float* scratch) {
    const auto m = Isa::mask(VW);
    const int64_t T = s.block, C = s.C, K = s.K, H = s.H, W = s.W;
    const int64_t per_image = s.tiles_h * s.tiles_w, total = s.N * per_image;
    float* Vb = scratch;             // [36][T][C]
    float* Mb = scratch + 36 * T * C;  // [36][T][K]
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t first = b * T, count = std::min(T, total - first);
      // inputs: V[xi][t] = B^T d B, zero for the rows past the last tile
      for (int64_t t = 0; t < T; ++t) {
        if (t >= count) {
          for (int xi = 0; xi < 36; ++xi)
            for (int64_t c = 0; c < C; c += VW) Isa::template store<false>(Vb + (xi * T + t) * C + c, Isa::zero(), m);
          continue;
        }
        const int64_t tile = first + t, n = tile / per_image, r = tile % per_image;
        const int64_t y0 = (r / s.tiles_w) * 4 - 1, x0 = (r % s.tiles_w) * 4 - 1;
        unsigned rows = 0, cols = 0;  // bit i: input row y0 + i (column x0 + i) is inside the map
        for (int i = 0; i < 6; ++i) {
          rows |= unsigned(y0 + i >= 0 && y0 + i < H) << i;
          cols |= unsigned(x0 + i >= 0 && x0 + i < W) << i;
        }
        const float* base = in + ((n * H + y0) * W + x0) * C;
        for (int64_t c = 0; c < C; c += VW) {
          V tmp[6][6];
          for (int j = 0; j < 6; ++j) {
            V d[6], o[6];
            for (int i = 0; i < 6; ++i)
              d[i] = ((rows >> i) & (cols >> j) & 1u) ? Isa::template load<false>(base + (i * W + j) * C + c, m)
                                                       : Isa::zero();
            input_1d(d, o);
            for (int i = 0; i < 6; ++i) tmp[i][j] = o[i];
          }
          for (int i = 0; i < 6; ++i) {
            V o[6];
            input_1d(tmp[i], o);
            for (int j = 0; j < 6; ++j) Isa::template store<false>(Vb + ((i * 6 + j) * T + t) * C + c, o[j], m);
          }
        }
      }
      for (int xi = 0; xi < 36; ++xi) product<TB, KB>(Vb + xi * T * C, U + xi * C * K, Mb + xi * T * K, T, C, K);
      // outputs: Y = A^T M A, then the epilogue, stored where inside the map
      for (int64_t t = 0; t < count; ++t) {
        const int64_t tile = first + t, n = tile / per_image, r = tile % per_image;
        const int64_t oy = (r / s.tiles_w) * 4, ox = (r % s.tiles_w) * 4;
        const int rows = int(std::min<int64_t>(4, H - oy)), cols = int(std::min<int64_t>(4, W - ox));
        for (int64_t k = 0; k < K; k += VW) {
          V tmp[4][6];
          for (int j = 0; j < 6; ++j) {
            V mv[6], o[4];
            for (int i = 0; i < 6; ++i) mv[i] = Isa::template load<false>(Mb + ((i * 6 + j) * T + t) * K + k, m);
            output_1d(mv, o);
            for (int i = 0; i < 4; ++i) tmp[i][j] = o[i];
          }
          const V alpha = Isa::template load<false>(e.alpha + k, m), beta = Isa::template load<false>(e.beta + k, m);
          const V add_scale = Isa::template load<false>(e.add_scale + k, m);
          for (int i = 0; i < rows; ++i) {
            V o[4];
            output_1d(tmp[i], o);
            for (int q = 0; q < cols; ++q) {
              const int64_t at = ((n * H + oy + i) * W + ox + q) * K + k;
              V v = Isa::fma(o[q], alpha, beta);
              if (e.add) v = Isa::fma(Isa::template load<false>(e.add + at, m), add_scale, v);
              if (e.relu) v = Isa::max(v, Isa::zero());
              if (e.residual) v = Isa::add(v, Isa::template load<false>(e.residual + at, m));
              Isa::template store<false>(out + at, v, m);
            }
          }
        }
      }
    }
  }

  // Tiles and vectors of output channels per register block: KB the largest of 4, 3, 2, 1 that
  // divides K's vectors, TB as many tiles as the accumulator registers allow.
  static int vectors_per_block(int64_t K) {
    const int64_t kv = K / VW;
    return kv % 4 == 0 ? 4 : kv % 3 == 0 ? 3 : kv % 2 == 0 ? 2 : 1;
  }
  static int64_t tile_rows(int64_t K) { return Isa::gemm_accumulators / vectors_per_block(K); }

  static void run(const mgiad_kernels::WinogradShape& s, const float* in, const float* U,
                  const mgiad_kernels::Epilogue& e, float* out, int64_t b0, int64_t b1, float* scratch) {
    constexpr int R = Isa::gemm_accumulators;
    switch (vectors_per_block(s.K)) {
      case 4: return blocks<R / 4, 4>(s, in, U, e, out, b0, b1, scratch);
      case 3: return blocks<R / 3, 3>(s, in, U, e, out, b0, b1, scratch);
      case 2: return blocks<R / 2, 2>(s, in, U, e, out, b0, b1, scratch);
      default: return blocks<R, 1>(s, in, U, e, out, b0, b1, scratch);
    }
  }
};

#define MGIAD_DEFINE_WINOGRAD(isa, Isa)                                                                   \
  namespace mgiad_kernels {                                                                               \
  int winograd_width_##isa() { return Isa::width; }                                                       \
  int64_t winograd_tile_rows_##isa(int64_t K) { return Winograd43<Isa>::tile_rows(K); }                  \
  void winograd_blocks_##isa(const WinogradShape& s, const float* in, const float* U, const Epilogue& e,   \
                             float* out, int64_t b0, int64_t b1, float* scratch) {                        \
    Winograd43<Isa>::run(s, in, U, e, out, b0, b1, scratch);                                              \
  }                                                                                                       \
  }

}  // namespace
