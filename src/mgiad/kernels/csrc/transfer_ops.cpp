// Torch operators mgiad_kernels::dw3x3s2_* (depthwise 3x3, stride 2, padding 1, multiplier 1 or 2)
// and pair1x1_* (1x1, groups of 2 -> 1 or 1 -> 2 channels) over transfers.h: argument checks,
// weight packing, CPU dispatch, at::parallel_for over rows or pixels, per-thread weight gradients.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "epilogue_args.h"
#include "transfers.h"
#include "threading.h"

namespace mgiad_kernels {
namespace {

using RowsFn = void (*)(const DwShape&, const float*, const float*, float*, int64_t, int64_t);
using PixelsFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t);
using MapFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, bool);
using EpilogueFn = void (*)(const Epilogue&, const float*, float*, int64_t, int64_t, int64_t);

struct TransferKernels {
  int width;
  RowsFn dw_forward, dw_grad_input, dw_grad_weight;
  MapFn expand, reduce;
  PixelsFn weight_grad;
  EpilogueFn epilogue_stream;
};

TransferKernels transfer_kernels(int64_t isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  TORCH_CHECK(isa == 1 || isa == 2, "mgiad_kernels: isa must be 1 (avx2) or 2 (avx512)");
  TORCH_CHECK(isa == 2 ? avx512 : avx2, "mgiad_kernels: this CPU does not support isa ", isa);
  if (isa == 2)
    return {transfer_width_avx512(), dw_forward_rows_avx512, dw_grad_input_rows_avx512, dw_grad_weight_rows_avx512,
            pair_expand_avx512, pair_reduce_avx512, pair_weight_grad_avx512, epilogue_stream_avx512};
  return {transfer_width_avx2(), dw_forward_rows_avx2, dw_grad_input_rows_avx2, dw_grad_weight_rows_avx2,
          pair_expand_avx2, pair_reduce_avx2, pair_weight_grad_avx2, epilogue_stream_avx2};
}

void check_nhwc(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "mgiad_kernels: ", name, " must be a 4-d float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "mgiad_kernels: ", name,
              " must be channels_last contiguous");
}

at::Tensor empty_nhwc(const at::Tensor& like, int64_t N, int64_t C, int64_t H, int64_t W) {
  return at::empty({N, C, H, W}, like.options().memory_format(at::MemoryFormat::ChannelsLast));
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// weight viewed as [L, taps] -> [taps][w_stride], zero padded (a plain buffer: ATen ops here would
// cost more than a small map's convolution).
std::vector<float> pack_taps(const at::Tensor& weight, int64_t taps, int64_t w_stride) {
  TORCH_CHECK(weight.scalar_type() == at::kFloat && weight.device().is_cpu(),
              "mgiad_kernels: weight must be float32 CPU");
  const at::Tensor w = weight.contiguous();
  const int64_t L = w.numel() / taps;
  const float* src = w.data_ptr<float>();
  std::vector<float> packed(taps * w_stride, 0.f);
  for (int64_t l = 0; l < L; ++l)
    for (int64_t t = 0; t < taps; ++t) packed[t * w_stride + l] = src[l * taps + t];
  return packed;
}

// Sum over `units` (rows or pixels) of add(begin, end, buffer), one zeroed [taps][w_stride] buffer
// per thread, then unpacked to `shape` (inverse of pack_taps).
template <class F>
at::Tensor weight_gradient(const at::Tensor& like, int64_t units, int64_t taps, int64_t w_stride, int64_t length,
                           at::IntArrayRef shape, F&& add) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), units));
  at::Tensor partial = at::zeros({chunks, taps * w_stride}, like.options());
  float* ptr = partial.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) add(c * units / chunks, (c + 1) * units / chunks, ptr + c * taps * w_stride);
  });
  return partial.sum(0).view({taps, w_stride}).narrow(1, 0, length).t().reshape(shape).contiguous();
}

// ------------------------------------------------------------------ depthwise 3x3, stride 2
DwShape dw_shape(at::IntArrayRef input, int64_t out_channels, int width) {
  const int64_t N = input[0], C = input[1], H = input[2], W = input[3];
  TORCH_CHECK(C > 0 && (out_channels == C || out_channels == 2 * C),
              "mgiad_kernels: depthwise transfer needs C or 2C output channels");
  return {N, H, W, C, (H + 1) / 2, (W + 1) / 2, out_channels / C, round_up(out_channels, 2 * width)};
}

void check_dw_weight(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 4 && w.size(1) == 1 && w.size(2) == 3 && w.size(3) == 3,
              "mgiad_kernels: depthwise weight must be [C_out, 1, 3, 3]");
}

at::Tensor dw3x3s2_epilogue(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& alpha,
                            const std::optional<at::Tensor>& beta, const std::optional<at::Tensor>& add,
                            const std::optional<at::Tensor>& add_scale, bool relu,
                            const std::optional<at::Tensor>& residual, int64_t isa) {
  check_nhwc(x, "input");
  check_dw_weight(weight);
  const TransferKernels k = transfer_kernels(isa);
  DwShape s = dw_shape(x.sizes(), weight.size(0), k.width);
  const std::vector<float> packed = pack_taps(weight, 9, s.w_stride);
  at::Tensor out = empty_nhwc(x, s.N, s.multiplier * s.C, s.Ho, s.Wo);
  const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
  const bool stream = streams(out, k.width);
  s.stream_out = !ep.active() && stream;
  const float *in = x.data_ptr<float>(), *w = packed.data();
  float* o = out.data_ptr<float>();
  if (ep.active() && stream) {  // each image into a buffer, then the epilogue streams it out
    DwShape image = s;
    image.N = 1;
    const int64_t pixels = s.Ho * s.Wo, Cout = out.size(1);
    at::parallel_for(0, s.N, grain_for(s.N, pixels * Cout * 18), [&](int64_t b, int64_t e) {
      std::vector<float> buffer(pixels * Cout);
      for (int64_t n = b; n < e; ++n) {
        k.dw_forward(image, in + n * s.H * s.W * s.C, w, buffer.data(), 0, s.Ho);
        k.epilogue_stream(ep.epilogue(), buffer.data(), o, Cout, n * pixels, (n + 1) * pixels);
      }
    });
    return out;
  }
  const int64_t out_channels = s.multiplier * s.C;
  at::parallel_for(0, s.N * s.Ho, grain_for(s.N * s.Ho, s.Wo * out_channels * 18), [&](int64_t b, int64_t e) {
    if (!ep.active()) return k.dw_forward(s, in, w, o, b, e);
    for (int64_t r = b; r < e; ++r) {  // the epilogue while the row is in cache
      k.dw_forward(s, in, w, o, r, r + 1);
      ep.apply(o, r * s.Wo, (r + 1) * s.Wo);
    }
  });
  return out;
}

at::Tensor dw3x3s2_forward(const at::Tensor& x, const at::Tensor& weight, int64_t isa) {
  return dw3x3s2_epilogue(x, weight, std::nullopt, std::nullopt, std::nullopt, std::nullopt, false, std::nullopt, isa);
}

// input_size: [N, C, H, W] of the input (H, W cannot be told from the output's size).
at::Tensor dw3x3s2_grad_input(const at::Tensor& grad_out, const at::Tensor& weight, at::IntArrayRef input_size,
                              int64_t isa) {
  check_nhwc(grad_out, "grad_out");
  check_dw_weight(weight);
  TORCH_CHECK(input_size.size() == 4, "mgiad_kernels: input_size must be [N, C, H, W]");
  const TransferKernels k = transfer_kernels(isa);
  DwShape s = dw_shape(input_size, weight.size(0), k.width);
  TORCH_CHECK(grad_out.size(0) == s.N && grad_out.size(1) == s.multiplier * s.C && grad_out.size(2) == s.Ho &&
                  grad_out.size(3) == s.Wo, "mgiad_kernels: grad_out does not match input_size");
  const std::vector<float> packed = pack_taps(weight, 9, s.w_stride);
  at::Tensor grad_in = empty_nhwc(grad_out, s.N, s.C, s.H, s.W);
  s.stream_out = streams(grad_in, k.width);
  const float *g = grad_out.data_ptr<float>(), *w = packed.data();
  float* gx = grad_in.data_ptr<float>();
  at::parallel_for(0, s.N * s.H, 1, [&](int64_t b, int64_t e) { k.dw_grad_input(s, g, w, gx, b, e); });
  return grad_in;
}

at::Tensor dw3x3s2_grad_weight(const at::Tensor& x, const at::Tensor& grad_out, int64_t isa) {
  check_nhwc(x, "input");
  check_nhwc(grad_out, "grad_out");
  const TransferKernels k = transfer_kernels(isa);
  const int64_t Cout = grad_out.size(1);
  const DwShape s = dw_shape(x.sizes(), Cout, k.width);
  TORCH_CHECK(grad_out.size(0) == s.N && grad_out.size(2) == s.Ho && grad_out.size(3) == s.Wo,
              "mgiad_kernels: grad_out does not match the input");
  const float *in = x.data_ptr<float>(), *g = grad_out.data_ptr<float>();
  return weight_gradient(x, s.N * s.Ho, 9, s.w_stride, Cout, {Cout, 1, 3, 3},
                         [&](int64_t b, int64_t e, float* gw) { k.dw_grad_weight(s, in, g, gw, b, e); });
}

// ------------------------------------------------------------------ 1x1 channel pairs
// weight [C_out, g_in, 1, 1]: g_in 2 (2C -> C, "reduce") or 1 with C_out = 2 C_in ("expand").
// Returns the narrow channel count C.
int64_t pair_narrow(const at::Tensor& w, int64_t in_channels) {
  TORCH_CHECK(w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1 && (w.size(1) == 1 || w.size(1) == 2),
              "mgiad_kernels: pair weight must be [C_out, 1 or 2, 1, 1]");
  const bool reduce = w.size(1) == 2;
  TORCH_CHECK(reduce ? in_channels == 2 * w.size(0) : w.size(0) == 2 * in_channels,
              "mgiad_kernels: pair convolution needs 2 -> 1 or 1 -> 2 channels per group");
  return reduce ? w.size(0) : in_channels;
}

int64_t pixel_grain(int64_t C) { return std::max<int64_t>(1, 4096 / C); }

// narrow -> wide (expand) or wide -> narrow (reduce) with the flat weight w[k], k = 2c + j.
// `ep` (optional): an epilogue applied to each block of pixels right after it is computed.
at::Tensor pair_map(const at::Tensor& x, const at::Tensor& weight, int64_t C, bool expand, int64_t isa,
                    const std::optional<at::Tensor>& alpha = std::nullopt,
                    const std::optional<at::Tensor>& beta = std::nullopt,
                    const std::optional<at::Tensor>& add = std::nullopt,
                    const std::optional<at::Tensor>& add_scale = std::nullopt, bool relu = false,
                    const std::optional<at::Tensor>& residual = std::nullopt) {
  const TransferKernels k = transfer_kernels(isa);
  const std::vector<float> packed = pack_taps(weight, 1, round_up(2 * C, 2 * k.width));
  at::Tensor out = empty_nhwc(x, x.size(0), expand ? 2 * C : C, x.size(2), x.size(3));
  const float *in = x.data_ptr<float>(), *w = packed.data();
  float* o = out.data_ptr<float>();
  const MapFn fn = expand ? k.expand : k.reduce;
  const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
  const bool stream = streams(out, k.width);
  const int64_t block = pixel_grain(C), in_step = expand ? C : 2 * C, out_step = out.size(1);
  const int64_t pixels = x.size(0) * x.size(2) * x.size(3);
  at::parallel_for(0, pixels, grain_for(pixels, 12 * C, block), [&](int64_t b, int64_t e) {
    if (!ep.active()) return fn(C, in, w, o, b, e, stream);
    std::vector<float> buffer(stream ? block * out_step : 0);
    for (int64_t p = b; p < e; p += block) {
      const int64_t p_end = std::min(p + block, e);
      if (stream) {  // into a buffer, then the epilogue streams it out
        fn(C, in + p * in_step, w, buffer.data(), 0, p_end - p, false);
        k.epilogue_stream(ep.epilogue(), buffer.data(), o, out_step, p, p_end);
      } else {  // the epilogue while the pixels are in cache
        fn(C, in, w, o, p, p_end, false);
        ep.apply(o, p, p_end);
      }
    }
  });
  return out;
}

at::Tensor pair1x1_forward(const at::Tensor& x, const at::Tensor& weight, int64_t isa) {
  check_nhwc(x, "input");
  const int64_t C = pair_narrow(weight, x.size(1));
  return pair_map(x, weight, C, weight.size(1) == 1, isa);
}

at::Tensor pair1x1_epilogue(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& alpha,
                            const std::optional<at::Tensor>& beta, const std::optional<at::Tensor>& add,
                            const std::optional<at::Tensor>& add_scale, bool relu,
                            const std::optional<at::Tensor>& residual, int64_t isa) {
  check_nhwc(x, "input");
  const int64_t C = pair_narrow(weight, x.size(1));
  return pair_map(x, weight, C, weight.size(1) == 1, isa, alpha, beta, add, add_scale, relu, residual);
}

at::Tensor pair1x1_grad_input(const at::Tensor& grad_out, const at::Tensor& weight, int64_t isa) {
  check_nhwc(grad_out, "grad_out");
  const bool reduce = weight.size(1) == 2;
  const int64_t in_channels = reduce ? 2 * grad_out.size(1) : grad_out.size(1) / 2;
  TORCH_CHECK(grad_out.size(1) == weight.size(0), "mgiad_kernels: grad_out does not match the weight");
  const int64_t C = pair_narrow(weight, in_channels);
  return pair_map(grad_out, weight, C, reduce, isa);  // the transposed map
}

// in_per_group: the weight's size(1), 2 (reduce) or 1 (expand).
at::Tensor pair1x1_grad_weight(const at::Tensor& x, const at::Tensor& grad_out, int64_t in_per_group, int64_t isa) {
  check_nhwc(x, "input");
  check_nhwc(grad_out, "grad_out");
  TORCH_CHECK(in_per_group == 1 || in_per_group == 2, "mgiad_kernels: in_per_group must be 1 or 2");
  const bool reduce = in_per_group == 2;
  const at::Tensor& narrow = reduce ? grad_out : x;
  const at::Tensor& wide = reduce ? x : grad_out;
  const int64_t C = narrow.size(1);
  TORCH_CHECK(wide.size(1) == 2 * C && x.size(0) == grad_out.size(0) && x.size(2) == grad_out.size(2) &&
                  x.size(3) == grad_out.size(3), "mgiad_kernels: grad_out does not match the input");
  const TransferKernels k = transfer_kernels(isa);
  const float *n = narrow.data_ptr<float>(), *w = wide.data_ptr<float>();
  const int64_t shape[4] = {reduce ? C : 2 * C, in_per_group, 1, 1};
  return weight_gradient(x, x.size(0) * x.size(2) * x.size(3), 1, round_up(2 * C, 2 * k.width), 2 * C, shape,
                         [&](int64_t b, int64_t e, float* gw) { k.weight_grad(C, n, w, gw, b, e); });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mgiad_kernels, m) {
  m.def("dw3x3s2_forward", &dw3x3s2_forward);
  m.def("dw3x3s2_epilogue", &dw3x3s2_epilogue);
  m.def("dw3x3s2_grad_input", &dw3x3s2_grad_input);
  m.def("dw3x3s2_grad_weight", &dw3x3s2_grad_weight);
  m.def("pair1x1_forward", &pair1x1_forward);
  m.def("pair1x1_epilogue", &pair1x1_epilogue);
  m.def("pair1x1_grad_input", &pair1x1_grad_input);
  m.def("pair1x1_grad_weight", &pair1x1_grad_weight);
}

}  // namespace mgiad_kernels
