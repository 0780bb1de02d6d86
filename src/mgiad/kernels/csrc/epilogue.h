// The element-wise epilogue of an inference convolution, applied to a range of output pixels right
// after they are computed, while they are still in cache (no separate pass over memory):
//
//   v = alpha[c] * y + beta[c] + add_scale[c] * add[p, c];   v = max(v, 0) if relu;   v += residual[p, c]
//
// With BatchNorm folded this is a smoothing step's work (eq. 5): z = relu(s1 (f - A u) + t1) is A's
// convolution with alpha = -s1, beta = t1, add = f, add_scale = s1, relu; u + relu(B'(z) + b2) is
// B''s with beta = b2, relu, residual = u. Plain C++ (no torch headers); NHWC float32 maps: pixel p,
// channel c at p * C + c. Per-channel arrays have C entries.
#pragma once
#include <cstdint>

namespace mgiad_kernels {

struct Epilogue {
  const float* alpha = nullptr;      // y's scale per channel (ones where none was given)
  const float* beta = nullptr;       // bias per channel (zeros where none was given)
  const float* add = nullptr;        // a map of the output's shape added before the ReLU (null: none)
  const float* add_scale = nullptr;  // its scale per channel (ones where none was given)
  bool relu = false;
  const float* residual = nullptr;   // a map of the output's shape added after the ReLU (null: none)
};

// Applies `e` (alpha, beta and add_scale set) to pixels [p0, p1) of `y` (C channels per pixel),
// writing `out` (may be `y`: in place).
void apply_epilogue(const Epilogue& e, const float* y, float* out, int64_t C, int64_t p0, int64_t p1);

}  // namespace mgiad_kernels
