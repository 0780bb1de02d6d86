// Entry points of the grouped 3x3 convolution kernels (stride 1, zero padding 1, no bias, in == out
// channels, NHWC float32). Plain C++: no torch headers, so that the ISA-specific translation units
// compile nothing but their own code with their target flags.
#pragma once
#include <cstdint>

#include "epilogue.h"

namespace mgiad_kernels {

struct ConvShape {
  int64_t N, H, W, C;  // batch, height, width, channels (in == out)
  int64_t group_size;  // channels per group: 2, 4, 8 or 16
  bool stream_out = false;  // conv_rows: non-temporal stores (output aligned to the vector, C % width == 0)
  // conv_rows: applied to the accumulators before they are stored (alpha, beta, add_scale all
  // set), or none; out_base: the output's first element (add and residual have its layout)
  const Epilogue* epilogue = nullptr;
  const float* out_base = nullptr;
};

// Packed weights: for each block of `vector_width` output channels, [kh][kw][j][vector_width] with
// j the input channel inside the group; lanes past C are zero.
//
// conv_rows: out rows [row_begin, row_end) of the N*H output rows (row = n*H + y), forward
// convolution of `in` with the packed weights.
// weight_grad_rows: adds, over rows [row_begin, row_end) of grad_out, the weight gradient into
// `grad_packed` (packed layout).
#define MGIAD_DECLARE_ISA(isa)                                                                  \
  int vector_width_##isa();                                                                     \
  void conv_rows_##isa(const ConvShape& s, const float* in, const float* w_packed, float* out,  \
                       int64_t row_begin, int64_t row_end);                                     \
  void weight_grad_rows_##isa(const ConvShape& s, const float* in, const float* grad_out,       \
                              float* grad_packed, int64_t row_begin, int64_t row_end);

MGIAD_DECLARE_ISA(avx512)
MGIAD_DECLARE_ISA(avx2)
#undef MGIAD_DECLARE_ISA

}  // namespace mgiad_kernels
