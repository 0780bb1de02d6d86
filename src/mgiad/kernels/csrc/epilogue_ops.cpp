// mgiad_kernels::epilogue and epilogue_: the epilogue of epilogue.h as an operator of its own, on a
// map that a convolution without one (oneDNN's) has written: into a new tensor, or in place.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "epilogue_args.h"
#include "threading.h"
#include "transfers.h"

namespace mgiad_kernels {
namespace {

using StreamFn = void (*)(const Epilogue&, const float*, float*, int64_t, int64_t, int64_t);

// The epilogue with non-temporal stores for this CPU, where `out` should have them; else null.
StreamFn stream_kernel(const at::Tensor& out) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return streams(out, 16) ? epilogue_stream_avx512 : nullptr;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return streams(out, 8) ? epilogue_stream_avx2 : nullptr;
  return nullptr;
}

void check_map(const at::Tensor& y) {
  TORCH_CHECK(y.dim() == 4 && y.scalar_type() == at::kFloat && y.device().is_cpu() &&
                  y.is_contiguous(at::MemoryFormat::ChannelsLast),
              "mgiad_kernels: the epilogue needs a channels_last contiguous 4-d float32 CPU tensor");
}

void run(const at::Tensor& y, at::Tensor& out, const std::optional<at::Tensor>& alpha,
         const std::optional<at::Tensor>& beta, const std::optional<at::Tensor>& add,
         const std::optional<at::Tensor>& add_scale, bool relu, const std::optional<at::Tensor>& residual) {
  const EpilogueArgs ep(out, alpha, beta, add, add_scale, relu, residual);
  const float* src = y.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t pixels = y.size(0) * y.size(2) * y.size(3), C = y.size(1);
  const int64_t grain = grain_for(pixels, 12 * C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, C)));
  // into another tensor: a large output bypasses the caches
  const StreamFn stream = dst == src ? nullptr : stream_kernel(out);
  at::parallel_for(0, pixels, grain, [&](int64_t b, int64_t e) {
    if (stream) stream(ep.epilogue(), src + b * C, dst, C, b, e);
    else ep.apply(src, dst, b, e);
  });
}

at::Tensor& epilogue_(at::Tensor& y, const std::optional<at::Tensor>& alpha, const std::optional<at::Tensor>& beta,
                      const std::optional<at::Tensor>& add, const std::optional<at::Tensor>& add_scale, bool relu,
                      const std::optional<at::Tensor>& residual) {
  check_map(y);
  run(y, y, alpha, beta, add, add_scale, relu, residual);
  return y;
}

at::Tensor epilogue(const at::Tensor& y, const std::optional<at::Tensor>& alpha, const std::optional<at::Tensor>& beta,
                    const std::optional<at::Tensor>& add, const std::optional<at::Tensor>& add_scale, bool relu,
                    const std::optional<at::Tensor>& residual) {
  check_map(y);
  at::Tensor out = at::empty_like(y, at::MemoryFormat::ChannelsLast);
  run(y, out, alpha, beta, add, add_scale, relu, residual);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mgiad_kernels, m) {
  m.def("epilogue_(Tensor(a!) y, Tensor? alpha, Tensor? beta, Tensor? add, Tensor? add_scale, bool relu, "
        "Tensor? residual) -> Tensor(a!)", &epilogue_);
  m.def("epilogue", &epilogue);
}

}  // namespace mgiad_kernels
