// Entry points of the Winograd convolution F(4x4, 3x3): a dense 3x3 convolution (stride 1, zero
// padding 1, groups 1) of NHWC float32 maps, with the inference epilogue of epilogue.h. Plain C++
// like kernels.h.
//
// Each 4x4 block of output pixels ("tile") reads a 6x6 block of input pixels d and is
//     Y = A^T [ sum_c (G g_kc G^T) (.) (B^T d_c B) ] A
// (Lavin and Gray, 2016), 36 multiplications per input-output channel pair instead of 144. With
// U[xi][c][k] = (G g_kc G^T)[xi] and V[xi][t][c] = (B^T d_c B)[xi] for tile t, the sum is one matrix
// product per xi = 0..35: M[xi] = V[xi] U[xi]. A thread takes `block` tiles at a time: transforms
// their inputs into V (its cache), multiplies, and transforms M into the output tiles.
#pragma once
#include <cstdint>

#include "epilogue.h"

namespace mgiad_kernels {

struct WinogradShape {
  int64_t N, H, W;           // batch, height, width (input and output)
  int64_t C, K;              // input and output channels, multiples of the vector width
  int64_t tiles_h, tiles_w;  // ceil(H / 4), ceil(W / 4)
  int64_t block;             // tiles per block, a multiple of winograd_tile_rows(K)
};

// Floats of scratch one thread needs (V and M of one block).
inline int64_t winograd_scratch(const WinogradShape& s) { return 36 * s.block * (s.C + s.K); }

// U [36][C][K] from the weight [K][C][3][3].
void winograd_weight(const float* weight, float* U, int64_t C, int64_t K);

// winograd_tile_rows: tiles per register block of the matrix products (block is a multiple).
// winograd_blocks: blocks [b0, b1) of the N * tiles_h * tiles_w tiles (tile = (n, ty, tx) row-major),
// the epilogue `e` (alpha, beta, add_scale set) applied to each output vector before it is stored.
#define MGIAD_DECLARE_WINOGRAD(isa)                                                                   \
  int winograd_width_##isa();                                                                         \
  int64_t winograd_tile_rows_##isa(int64_t K);                                                        \
  void winograd_blocks_##isa(const WinogradShape& s, const float* in, const float* U, const Epilogue& e, \
                             float* out, int64_t b0, int64_t b1, float* scratch);

MGIAD_DECLARE_WINOGRAD(avx512)
MGIAD_DECLARE_WINOGRAD(avx2)
#undef MGIAD_DECLARE_WINOGRAD

}  // namespace mgiad_kernels
