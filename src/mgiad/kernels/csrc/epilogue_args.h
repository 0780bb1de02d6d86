// An Epilogue (epilogue.h) from an operator's optional tensor arguments, checked against the output
// it will be applied to, and when an output bypasses the caches; shared by the operators of ops.cpp,
// transfer_ops.cpp and epilogue_ops.cpp.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

#include "epilogue.h"

namespace mgiad_kernels {

// Outputs from this size go straight to memory with non-temporal stores (saves reading each line
// before it is written), where their channels are a multiple of the vector and they are aligned to it.
constexpr int64_t kStreamBytes = int64_t{16} << 20;

inline bool streams(const at::Tensor& out, int64_t width) {
  return out.numel() * 4 >= kStreamBytes && out.size(1) % width == 0 &&
         reinterpret_cast<uintptr_t>(out.data_ptr<float>()) % (width * 4) == 0;
}

class EpilogueArgs {
 public:
  // out: the NHWC float32 output; per-channel vectors have out.size(1) entries; maps have its shape.
  EpilogueArgs(const at::Tensor& out, const std::optional<at::Tensor>& alpha, const std::optional<at::Tensor>& beta,
               const std::optional<at::Tensor>& add, const std::optional<at::Tensor>& add_scale, bool relu,
               const std::optional<at::Tensor>& residual)
      : C_(out.size(1)),
        active_(alpha.has_value() || beta.has_value() || add.has_value() || relu || residual.has_value()) {
    TORCH_CHECK(!add_scale.has_value() || add.has_value(), "mgiad_kernels: add_scale without add");
    // the defaults as plain buffers: an ATen op per call would cost more than a small kernel's work
    if (!alpha.has_value() || !add_scale.has_value()) ones_.assign(C_, 1.f);
    if (!beta.has_value()) zeros_.assign(C_, 0.f);
    e_.alpha = alpha.has_value() ? channels(*alpha, 0, "alpha") : ones_.data();
    e_.beta = beta.has_value() ? channels(*beta, 1, "beta") : zeros_.data();
    e_.add_scale = add_scale.has_value() ? channels(*add_scale, 2, "add_scale") : ones_.data();
    e_.add = map(out, add, 3, "add");
    e_.residual = map(out, residual, 4, "residual");
    e_.relu = relu;
  }

  bool active() const { return active_; }

  // The epilogue, with alpha, beta and add_scale always set (for kernels that apply it themselves).
  const Epilogue& epilogue() const { return e_; }

  // Applies the epilogue to pixels [p0, p1) of out, in place; or reading y, writing out.
  void apply(float* out, int64_t p0, int64_t p1) const { apply(out, out, p0, p1); }
  void apply(const float* y, float* out, int64_t p0, int64_t p1) const { apply_epilogue(e_, y, out, C_, p0, p1); }

 private:
  const float* channels(const at::Tensor& t, int slot, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu() && t.numel() == C_,
                "mgiad_kernels: ", name, " must be a float32 CPU tensor of ", C_, " channels");
    if (t.is_contiguous()) return t.data_ptr<float>();  // the caller holds it for the call
    keep_[slot] = t.contiguous();
    return keep_[slot].data_ptr<float>();
  }

  const float* map(const at::Tensor& out, const std::optional<at::Tensor>& t, int slot, const char* name) {
    if (!t.has_value()) return nullptr;
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu() && t->sizes() == out.sizes(),
                "mgiad_kernels: ", name, " must be a float32 CPU tensor of the output's shape ", out.sizes());
    TORCH_CHECK(t->is_contiguous(at::MemoryFormat::ChannelsLast), "mgiad_kernels: ", name,
                " must be channels_last contiguous");
    TORCH_CHECK(out.numel() == 0 || t->data_ptr<float>() != out.data_ptr<float>(), "mgiad_kernels: ", name,
                " must not be the output itself");
    keep_[slot] = *t;
    return t->data_ptr<float>();
  }

  int64_t C_;
  bool active_;
  std::vector<float> ones_, zeros_;
  at::Tensor keep_[5];
  Epilogue e_;
};

}  // namespace mgiad_kernels
