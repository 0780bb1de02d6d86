// Torch operators mgiad_kernels::winograd_weight and winograd_conv3x3 over winograd.h: argument
// checks, CPU dispatch, at::parallel_for over blocks of tiles with a scratch buffer per thread.
#include <ATen/core/Tensor.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>

#include "epilogue_args.h"
#include "threading.h"
#include "winograd.h"

namespace mgiad_kernels {

// U[xi = 6 i + j][c][k] = (G g_kc G^T)[i][j], G the 6x3 matrix of F(4x4, 3x3).
void winograd_weight(const float* weight, float* U, int64_t C, int64_t K) {
  static const float G[6][3] = {{1.f / 4, 0.f, 0.f},           {-1.f / 6, -1.f / 6, -1.f / 6},
                                {-1.f / 6, 1.f / 6, -1.f / 6}, {1.f / 24, 1.f / 12, 1.f / 6},
                                {1.f / 24, -1.f / 12, 1.f / 6}, {0.f, 0.f, 1.f}};
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = weight + (k * C + c) * 9;
      float Gg[6][3];  // G g
      for (int i = 0; i < 6; ++i)
        for (int b = 0; b < 3; ++b) Gg[i][b] = G[i][0] * g[b] + G[i][1] * g[3 + b] + G[i][2] * g[6 + b];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j)
          U[((i * 6 + j) * C + c) * K + k] = Gg[i][0] * G[j][0] + Gg[i][1] * G[j][1] + Gg[i][2] * G[j][2];
    }
}

namespace {

struct WinogradKernels {
  int width;
  int64_t (*tile_rows)(int64_t);
  void (*blocks)(const WinogradShape&, const float*, const float*, const Epilogue&, float*, int64_t, int64_t,
                 float*);
};

WinogradKernels winograd_kernels(int64_t isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f");
  TORCH_CHECK(isa == 1 || isa == 2, "mgiad_kernels: isa must be 1 (avx2) or 2 (avx512)");
  TORCH_CHECK(isa == 2 ? avx512 : avx2, "mgiad_kernels: this CPU does not support isa ", isa);
  if (isa == 2) return {winograd_width_avx512(), winograd_tile_rows_avx512, winograd_blocks_avx512};
  return {winograd_width_avx2(), winograd_tile_rows_avx2, winograd_blocks_avx2};
}

// [K, C, 3, 3] -> [36, C, K]
at::Tensor winograd_weight_op(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 && weight.scalar_type() == at::kFloat &&
                  weight.device().is_cpu(),
              "mgiad_kernels: winograd_weight needs a [K, C, 3, 3] float32 CPU weight, got ", weight.sizes());
  const at::Tensor w = weight.contiguous();
  const int64_t K = w.size(0), C = w.size(1);
  at::Tensor U = at::empty({36, C, K}, w.options());
  winograd_weight(w.data_ptr<float>(), U.data_ptr<float>(), C, K);
  return U;
}

// Tiles per block: up to ~16 (V and M of a block stay in the core's L2), fewer where that leaves a
// thread without a block; always a multiple of the register block's tiles.
int64_t block_tiles(int64_t tiles, int64_t rows) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t most = std::max<int64_t>(1, (16 + rows - 1) / rows);
  const int64_t even = (tiles + threads * rows - 1) / (threads * rows);
  return rows * std::clamp<int64_t>(even, 1, most);
}

// Whether the transform pays: U (36 C K floats, 4x the weight) is read once per call, so with few
// tiles and a large U (ResNet18's 512 channels at 4x4, batch 1) the direct convolution is faster;
// a U that stays in the caches between calls is cheap. (2-core AVX-512 Xeon, interleaved timings.)
bool transform_pays(int64_t tiles, int64_t C, int64_t K) {
  constexpr int64_t kCachedU = int64_t{4} << 20;
  return tiles >= 16 || 36 * C * K * int64_t{sizeof(float)} <= kCachedU;
}

at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& U,
                            const std::optional<at::Tensor>& alpha, const std::optional<at::Tensor>& beta,
                            const std::optional<at::Tensor>& add, const std::optional<at::Tensor>& add_scale,
                            bool relu, const std::optional<at::Tensor>& residual, int64_t isa) {
  const WinogradKernels k = winograd_kernels(isa);
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad_kernels: winograd_conv3x3 needs a channels_last contiguous 4-d float32 CPU input");
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == 3 && weight.size(3) == 3 &&
                  weight.scalar_type() == at::kFloat && weight.device().is_cpu(),
              "mgiad_kernels: winograd_conv3x3 needs a [K, ", x.size(1), ", 3, 3] float32 CPU weight, got ",
              weight.sizes());
  TORCH_CHECK(U.dim() == 3 && U.size(0) == 36 && U.size(1) == x.size(1) && U.size(2) == weight.size(0) &&
                  U.scalar_type() == at::kFloat && U.device().is_cpu() && U.is_contiguous(),
              "mgiad_kernels: winograd_conv3x3 needs the weight's transform [36, ", x.size(1), ", ",
              weight.size(0), "] (winograd_weight), got ", U.sizes());
  WinogradShape s{x.size(0), x.size(2), x.size(3), x.size(1), U.size(2), (x.size(2) + 3) / 4, (x.size(3) + 3) / 4, 0};
  TORCH_CHECK(s.C % k.width == 0 && s.K % k.width == 0, "mgiad_kernels: winograd_conv3x3 needs channels in and out "
              "that are multiples of ", k.width, ", got ", s.C, " and ", s.K);
  const int64_t tiles = s.N * s.tiles_h * s.tiles_w;
  if (!transform_pays(tiles, s.C, s.K)) {  // PyTorch's direct convolution, then the epilogue in place
    at::Tensor out = at::conv2d(x, weight, {}, 1, 1).contiguous(at::MemoryFormat::ChannelsLast);
    const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
    float* y = out.data_ptr<float>();
    const int64_t grain = grain_for(s.N * s.H * s.W, 12 * s.K, std::max<int64_t>(1, 16384 / s.K));
    if (ep.active())
      at::parallel_for(0, s.N * s.H * s.W, grain, [&](int64_t b, int64_t e) { ep.apply(y, b, e); });
    return out;
  }
  at::Tensor out = at::empty({s.N, s.K, s.H, s.W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
  if (out.numel() == 0) return out;
  s.block = block_tiles(tiles, k.tile_rows(s.K));
  const int64_t blocks = (tiles + s.block - 1) / s.block;
  const float* in_ptr = x.data_ptr<float>();
  const float* u_ptr = U.data_ptr<float>();
  float* out_ptr = out.data_ptr<float>();
  at::parallel_for(0, blocks, grain_for(blocks, s.block * 36 * s.C * s.K * 2), [&](int64_t b0, int64_t b1) {
    const size_t bytes = (size_t(winograd_scratch(s)) * sizeof(float) + 63) / 64 * 64;
    std::unique_ptr<float, decltype(&std::free)> scratch(static_cast<float*>(std::aligned_alloc(64, bytes)), &std::free);
    TORCH_CHECK(scratch, "mgiad_kernels: winograd_conv3x3 could not allocate ", bytes, " bytes of scratch");
    k.blocks(s, in_ptr, u_ptr, ep.epilogue(), out_ptr, b0, b1, scratch.get());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mgiad_kernels, m) {
  m.def("winograd_weight(Tensor weight) -> Tensor", &winograd_weight_op);
  m.def("winograd_conv3x3(Tensor x, Tensor weight, Tensor U, Tensor? alpha, Tensor? beta, Tensor? add, Tensor? add_scale, "
        "bool relu, Tensor? residual, int isa) -> Tensor", &winograd_conv3x3);
}

}  // namespace mgiad_kernels
