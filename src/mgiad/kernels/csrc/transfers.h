// Entry points of the transfer kernels (NHWC float32, no bias), plain C++ like kernels.h:
//  * depthwise 3x3, stride 2, zero padding 1, channel multiplier 1 or 2 (output channel o reads
//    input channel o / multiplier), output floor((H + 1) / 2) x floor((W + 1) / 2);
//  * 1x1 "channel pairs": with C narrow and 2C wide channels per pixel,
//    expand  wide[k] = narrow[k / 2] * w[k]          (1 -> 2 per group; also the reduce's grad-input)
//    reduce  narrow[c] = sum_j wide[2c + j] * w[2c + j]  (2 -> 1 per group; also the expand's grad-input)
//    and the weight gradient of both, w[k] += sum over pixels of narrow[k / 2] * wide[k].
// Weights are packed [tap][w_stride] (one tap for 1x1), w_stride a multiple of two vectors, zero padded.
#pragma once
#include <cstdint>

#include "epilogue.h"

namespace mgiad_kernels {

struct DwShape {
  int64_t N, H, W, C;  // input: batch, height, width, channels
  int64_t Ho, Wo;      // output height and width
  int64_t multiplier;  // 1 or 2: output channels per input channel
  int64_t w_stride;    // floats per tap of the packed weight
  bool stream_out = false;  // non-temporal stores (output aligned to the vector, its channels a multiple)
};

// dw_forward_rows: output rows [r0, r1) of N*Ho. dw_grad_input_rows: input rows [r0, r1) of N*H
// of the input gradient. dw_grad_weight_rows: adds the gradient of output rows [r0, r1) to gw
// (packed). pair_*: pixels [p0, p1) of N*H*W, narrow channels C; `stream`: as DwShape::stream_out.
#define MGIAD_DECLARE_TRANSFERS(isa)                                                                          \
  int transfer_width_##isa();                                                                                 \
  void dw_forward_rows_##isa(const DwShape& s, const float* in, const float* w, float* out, int64_t r0,       \
                             int64_t r1);                                                                     \
  void dw_grad_input_rows_##isa(const DwShape& s, const float* g, const float* w, float* gx, int64_t r0,      \
                                int64_t r1);                                                                  \
  void dw_grad_weight_rows_##isa(const DwShape& s, const float* in, const float* g, float* gw, int64_t r0,    \
                                 int64_t r1);                                                                 \
  void pair_expand_##isa(int64_t C, const float* narrow, const float* w, float* wide, int64_t p0, int64_t p1,  \
                         bool stream);                                                                        \
  void pair_reduce_##isa(int64_t C, const float* wide, const float* w, float* narrow, int64_t p0, int64_t p1,  \
                         bool stream);                                                                        \
  void pair_weight_grad_##isa(int64_t C, const float* narrow, const float* wide, float* gw, int64_t p0,       \
                              int64_t p1);                                                                    \
  void epilogue_stream_##isa(const Epilogue& e, const float* y, float* out, int64_t C, int64_t p0, int64_t p1);

MGIAD_DECLARE_TRANSFERS(avx512)
MGIAD_DECLARE_TRANSFERS(avx2)
#undef MGIAD_DECLARE_TRANSFERS

}  // namespace mgiad_kernels
