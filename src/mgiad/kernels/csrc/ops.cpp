// Torch operators mgiad_kernels::* over the kernels of kernels.h: argument checks, weight packing,
// CPU feature dispatch and threading (at::parallel_for over output rows).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "epilogue_args.h"
#include "kernels.h"
#include "threading.h"

namespace mgiad_kernels {
namespace {

enum Isa : int64_t { kNone = 0, kAvx2 = 1, kAvx512 = 2 };

int64_t cpu_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
  return kNone;
}

struct IsaKernels {
  int vector_width;
  void (*conv_rows)(const ConvShape&, const float*, const float*, float*, int64_t, int64_t);
  void (*weight_grad_rows)(const ConvShape&, const float*, const float*, float*, int64_t, int64_t);
};

IsaKernels kernels_for(int64_t isa) {
  TORCH_CHECK(isa == kAvx512 || isa == kAvx2, "mgiad_kernels: isa must be 1 (avx2) or 2 (avx512)");
  TORCH_CHECK(isa <= cpu_isa(), "mgiad_kernels: this CPU does not support isa ", isa);
  if (isa == kAvx512) return {vector_width_avx512(), conv_rows_avx512, weight_grad_rows_avx512};
  return {vector_width_avx2(), conv_rows_avx2, weight_grad_rows_avx2};
}

ConvShape check_input(const at::Tensor& x, int64_t group_size, const char* name) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "mgiad_kernels: ", name, " must be a 4-d float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "mgiad_kernels: ", name,
              " must be channels_last contiguous");
  TORCH_CHECK(group_size == 2 || group_size == 4 || group_size == 8 || group_size == 16,
              "mgiad_kernels: group size must be 2, 4, 8 or 16");
  TORCH_CHECK(x.size(1) % group_size == 0, "mgiad_kernels: channels not a multiple of the group size");
  return {x.size(0), x.size(2), x.size(3), x.size(1), group_size};
}

void check_weight(const at::Tensor& w, int64_t channels) {
  TORCH_CHECK(w.dim() == 4 && w.size(0) == channels && w.size(2) == 3 && w.size(3) == 3 &&
                  w.scalar_type() == at::kFloat && w.device().is_cpu(),
              "mgiad_kernels: weight must be float32 [C, group_size, 3, 3]");
}

// [C, GS, 3, 3] -> [blocks][kh][kw][j][vw]; `transposed` packs the weight of the input gradient:
// w'[g*GS + i, j, kh, kw] = w[g*GS + j, i, 2 - kh, 2 - kw].
std::vector<float> pack_weight(const at::Tensor& weight, int64_t vw, bool transposed) {
  const at::Tensor w = weight.contiguous();
  const int64_t C = w.size(0), GS = w.size(1), blocks = (C + vw - 1) / vw;
  std::vector<float> packed(blocks * 9 * GS * vw, 0.f);  // not an ATen op: see pack_taps
  const float* src = w.data_ptr<float>();
  float* dst = packed.data();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < GS; ++j)
      for (int64_t t = 0; t < 9; ++t) {
        const int64_t group_base = c - c % GS, i = c % GS;
        const float value = transposed ? src[((group_base + j) * GS + i) * 9 + 8 - t] : src[(c * GS + j) * 9 + t];
        dst[(((c / vw) * 9 + t) * GS + j) * vw + c % vw] = value;
      }
  return packed;
}

// With an epilogue (epilogue.h) it is applied to the accumulators before they are stored.
at::Tensor conv(const at::Tensor& x, const at::Tensor& weight, int64_t isa, bool transposed,
                const std::optional<at::Tensor>& alpha = std::nullopt, const std::optional<at::Tensor>& beta = std::nullopt,
                const std::optional<at::Tensor>& add = std::nullopt,
                const std::optional<at::Tensor>& add_scale = std::nullopt, bool relu = false,
                const std::optional<at::Tensor>& residual = std::nullopt) {
  ConvShape s = check_input(x, weight.size(1), "input");
  check_weight(weight, s.C);
  const IsaKernels k = kernels_for(isa);
  const std::vector<float> packed = pack_weight(weight, k.vector_width, transposed);
  at::Tensor out = at::empty({s.N, s.C, s.H, s.W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* in_ptr = x.data_ptr<float>();
  const float* w_ptr = packed.data();
  float* out_ptr = out.data_ptr<float>();
  const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
  if (ep.active()) s.epilogue = &ep.epilogue(), s.out_base = out_ptr;  // applied in registers
  s.stream_out = streams(out, k.vector_width);
  const int64_t rows = s.N * s.H;
  at::parallel_for(0, rows, grain_for(rows, s.W * s.C * s.group_size * 18), [&](int64_t begin, int64_t end) {
    k.conv_rows(s, in_ptr, w_ptr, out_ptr, begin, end);
  });
  return out;
}

// Forward: y = conv(x, weight), groups = C / weight.size(1).
at::Tensor conv3x3_forward(const at::Tensor& x, const at::Tensor& weight, int64_t isa) {
  return conv(x, weight, isa, false);
}

// Inference: the forward convolution with an epilogue (epilogue.h) applied as it is computed.
at::Tensor conv3x3_epilogue(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& alpha,
                            const std::optional<at::Tensor>& beta, const std::optional<at::Tensor>& add,
                            const std::optional<at::Tensor>& add_scale, bool relu,
                            const std::optional<at::Tensor>& residual, int64_t isa) {
  return conv(x, weight, isa, false, alpha, beta, add, add_scale, relu, residual);
}

// Inference: a smoothing step with BatchNorm folded (eq. 5) in one call,
//   z = relu(s1 (f - A u) + t1),   out = u + relu(B z + b2),
// with A u computed (A given), given (A_u), or zero (no u: the first step, out = relu(B z + b2)).
// z's epilogue: relu(alpha y + t1 + s1 f) with y = A u or A_u and alpha = -s1, or y = f, alpha = s1
// (alpha is an argument so that a frozen graph holds it as a constant).
struct StepArgs {
  const std::optional<at::Tensor>& u;
  const at::Tensor& f;
  const std::optional<at::Tensor>& A;
  const std::optional<at::Tensor>& A_u;
  at::Tensor alpha;
  const at::Tensor &s1, &t1, &B, &b2;
  bool with_Au() const { return A.has_value() || A_u.has_value(); }
  const at::Tensor& y() const { return A.has_value() ? *u : A_u.has_value() ? *A_u : f; }  // z's input
  EpilogueArgs to_z(const at::Tensor& out) const {
    return EpilogueArgs(out, alpha, t1, with_Au() ? std::optional<at::Tensor>(f) : std::nullopt,
                        with_Au() ? std::optional<at::Tensor>(s1) : std::nullopt, true, std::nullopt);
  }
};

constexpr int64_t kBand = 4;  // rows of out per band: z's band and its inputs stay in L2

// Fewer images than threads: z as a map, each pass parallel over rows or pixels.
at::Tensor smoothing_step_by_rows(const StepArgs& a, const ConvShape& s, int64_t isa) {
  at::Tensor z;
  if (a.A.has_value()) {
    z = conv(*a.u, *a.A, isa, false, a.alpha, a.t1, a.f, a.s1, true);
  } else {
    z = at::empty_like(a.f, at::MemoryFormat::ChannelsLast);
    const EpilogueArgs to_z = a.to_z(z);
    const float* y = a.y().data_ptr<float>();
    float* z_ptr = z.data_ptr<float>();
    const int64_t pixels = s.N * s.H * s.W, grain = grain_for(pixels, s.C * 12, std::max<int64_t>(1, 16384 / s.C));
    at::parallel_for(0, pixels, grain, [&](int64_t b, int64_t e) { to_z.apply(y, z_ptr, b, e); });
  }
  return conv(z, a.B, isa, false, std::nullopt, a.b2, std::nullopt, std::nullopt, true, a.u);
}

// Each thread takes whole images; an image's z goes to a buffer of the thread's, a band of rows at a
// time, and B reads each band while it is still in the core's cache: z never travels to memory and
// back (two map transfers of the four a step has).
at::Tensor smoothing_step_by_images(const StepArgs& a, const ConvShape& s, int64_t isa) {
  const IsaKernels k = kernels_for(isa);
  at::Tensor out = at::empty({s.N, s.C, s.H, s.W}, a.f.options().memory_format(at::MemoryFormat::ChannelsLast));
  const EpilogueArgs to_z = a.to_z(out), to_out(out, std::nullopt, a.b2, std::nullopt, std::nullopt, true, a.u);
  const std::vector<float> packed_A = a.A.has_value() ? pack_weight(*a.A, k.vector_width, false) : std::vector<float>();
  const std::vector<float> packed_B = pack_weight(a.B, k.vector_width, false);
  const float* y = a.y().data_ptr<float>();
  float* out_ptr = out.data_ptr<float>();
  const bool stream = streams(out, k.vector_width);
  const int64_t image = s.H * s.W * s.C;
  at::parallel_for(0, s.N, grain_for(s.N, image * s.group_size * 36), [&](int64_t begin, int64_t end) {
    std::vector<float> z(image);
    for (int64_t n = begin; n < end; ++n) {  // the maps the epilogues read, from image n on
      Epilogue ez = to_z.epilogue(), eo = to_out.epilogue();
      if (ez.add) ez.add += n * image;
      if (eo.residual) eo.residual += n * image;
      ConvShape sz = s, so = s;
      sz.N = so.N = 1;
      sz.epilogue = &ez, sz.out_base = z.data();
      so.epilogue = &eo, so.out_base = out_ptr + n * image, so.stream_out = stream;
      int64_t z_rows = 0;  // rows of z computed so far
      for (int64_t y0 = 0; y0 < s.H; y0 += kBand) {
        const int64_t y1 = std::min(s.H, y0 + kBand), z_end = std::min(s.H, y1 + 1);  // B's rows read z's to y1
        if (a.A.has_value())
          k.conv_rows(sz, y + n * image, packed_A.data(), z.data(), z_rows, z_end);
        else
          apply_epilogue(ez, y + n * image, z.data(), s.C, z_rows * s.W, z_end * s.W);
        z_rows = z_end;
        k.conv_rows(so, z.data(), packed_B.data(), out_ptr + n * image, y0, y1);
      }
    }
  });
  return out;
}

at::Tensor conv3x3_smoothing_step(const std::optional<at::Tensor>& u, const at::Tensor& f,
                                  const std::optional<at::Tensor>& A, const std::optional<at::Tensor>& A_u,
                                  const at::Tensor& alpha, const at::Tensor& s1, const at::Tensor& t1,
                                  const at::Tensor& B, const at::Tensor& b2, int64_t isa) {
  const ConvShape s = check_input(f, B.size(1), "f");
  check_weight(B, s.C);
  TORCH_CHECK(!(A.has_value() && A_u.has_value()), "mgiad_kernels: give A or A_u, not both");
  TORCH_CHECK(u.has_value() || !(A.has_value() || A_u.has_value()), "mgiad_kernels: A or A_u without u");
  for (const auto* map : {&u, &A_u})
    if (map->has_value()) {
      const char* name = map == &u ? "u" : "A_u";
      check_input(**map, B.size(1), name);
      TORCH_CHECK((*map)->sizes() == f.sizes(), "mgiad_kernels: ", name, " and f shapes differ");
    }
  if (A.has_value()) {
    check_weight(*A, s.C);
    TORCH_CHECK(A->size(1) == B.size(1), "mgiad_kernels: A and B must have the same group size");
  }
  const StepArgs a{u, f, A, A_u, alpha, s1, t1, B, b2};
  // by images where every thread gets one, or where the step is small enough for one thread
  const bool by_images = s.N >= at::get_num_threads() || runs_serially(s.N, s.H * s.W * s.C * s.group_size * 36);
  return by_images ? smoothing_step_by_images(a, s, isa) : smoothing_step_by_rows(a, s, isa);
}

// Gradient of the input: the forward convolution with weights transposed per group and flipped.
at::Tensor conv3x3_grad_input(const at::Tensor& grad_out, const at::Tensor& weight, int64_t isa) {
  return conv(grad_out, weight, isa, true);
}

// Gradient of the weight: per-thread packed accumulators over contiguous row ranges, then summed.
at::Tensor conv3x3_grad_weight(const at::Tensor& x, const at::Tensor& grad_out, int64_t group_size, int64_t isa) {
  const ConvShape s = check_input(x, group_size, "input");
  check_input(grad_out, group_size, "grad_out");
  TORCH_CHECK(grad_out.sizes() == x.sizes(), "mgiad_kernels: grad_out and input shapes differ");
  const IsaKernels k = kernels_for(isa);
  const int64_t vw = k.vector_width, blocks = (s.C + vw - 1) / vw, packed_size = blocks * 9 * group_size * vw;
  const int64_t rows = s.N * s.H, chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  at::Tensor partial = at::zeros({chunks, packed_size}, x.options());
  const float* in_ptr = x.data_ptr<float>();
  const float* g_ptr = grad_out.data_ptr<float>();
  float* partial_ptr = partial.data_ptr<float>();
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      k.weight_grad_rows(s, in_ptr, g_ptr, partial_ptr + c * packed_size, c * rows / chunks, (c + 1) * rows / chunks);
  });
  // [blocks, kh, kw, j, vw] -> [C, j, kh, kw]
  const at::Tensor summed = partial.sum(0).view({blocks, 3, 3, group_size, vw});
  return summed.permute({0, 4, 3, 1, 2}).reshape({blocks * vw, group_size, 3, 3}).narrow(0, 0, s.C).contiguous();
}

}  // namespace

TORCH_LIBRARY(mgiad_kernels, m) {
  m.def("cpu_isa", &cpu_isa);
  m.def("conv3x3_forward", &conv3x3_forward);
  m.def("conv3x3_epilogue", &conv3x3_epilogue);
  m.def("conv3x3_smoothing_step", &conv3x3_smoothing_step);
  m.def("conv3x3_grad_input", &conv3x3_grad_input);
  m.def("conv3x3_grad_weight", &conv3x3_grad_weight);
}

}  // namespace mgiad_kernels
