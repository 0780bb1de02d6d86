// The smoothing step's element-wise work (eq. 5: r = f - A(u), BatchNorm, ReLU, u + ...) and its
// backward, fused into as few passes over memory as the batch statistics allow. NHWC float32: a
// tensor is P = N*H*W pixels of C channels, and every loop runs over a range of pixels with the
// channels innermost (contiguous, vectorised by the compiler). target_clones compiles each pixel
// loop for AVX-512, AVX2 and plain x86-64; the dynamic loader picks one for this CPU.
//
// Statistics: each thread sums blocks of at most kBlock pixels in float, adds each block into double
// per-channel totals, and the threads' totals are added at the end (deterministic for a given
// thread count; E[x^2] - E[x]^2 in double).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <vector>

namespace mgiad_kernels {
namespace {

constexpr int64_t kBlock = 64;   // pixels summed in float before a block goes into the double totals
constexpr int64_t kGrain = 256;  // pixels per parallel task, at least

#define MGIAD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// ---- pixel loops (no torch code: plain arrays) ------------------------------------------------

// r = f - A_u over pixels [p0, p1), summing r and r^2 per channel into sum, sum_sq (double).
MGIAD_CLONES void sub_sum_rows(const float* __restrict f, const float* __restrict A_u,
                               float* __restrict r, int64_t C, int64_t p0, int64_t p1,
                               double* __restrict sum, double* __restrict sum_sq,
                               float* __restrict block_sum, float* __restrict block_sq) {
  for (int64_t b = p0; b < p1; b += kBlock) {
    std::fill(block_sum, block_sum + C, 0.f);
    std::fill(block_sq, block_sq + C, 0.f);
    for (int64_t p = b; p < std::min(b + kBlock, p1); ++p)
      for (int64_t c = 0; c < C; ++c) {
        const float v = f[p * C + c] - A_u[p * C + c];
        r[p * C + c] = v;
        block_sum[c] += v;
        block_sq[c] += v * v;
      }
    for (int64_t c = 0; c < C; ++c) sum[c] += block_sum[c], sum_sq[c] += block_sq[c];
  }
}

// Sums of x and x^2 per channel over pixels [p0, p1).
MGIAD_CLONES void sum_rows(const float* __restrict x, int64_t C, int64_t p0, int64_t p1,
                           double* __restrict sum, double* __restrict sum_sq,
                           float* __restrict block_sum, float* __restrict block_sq) {
  for (int64_t b = p0; b < p1; b += kBlock) {
    std::fill(block_sum, block_sum + C, 0.f);
    std::fill(block_sq, block_sq + C, 0.f);
    for (int64_t p = b; p < std::min(b + kBlock, p1); ++p)
      for (int64_t c = 0; c < C; ++c) {
        const float v = x[p * C + c];
        block_sum[c] += v;
        block_sq[c] += v * v;
      }
    for (int64_t c = 0; c < C; ++c) sum[c] += block_sum[c], sum_sq[c] += block_sq[c];
  }
}

// y = (u +) relu(x * scale + shift) over pixels [p0, p1); u may be null.
MGIAD_CLONES void affine_relu_rows(const float* __restrict u, const float* __restrict x,
                                   const float* __restrict scale, const float* __restrict shift,
                                   float* __restrict y, int64_t C, int64_t p0, int64_t p1) {
  if (u == nullptr) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < C; ++c) y[p * C + c] = std::max(x[p * C + c] * scale[c] + shift[c], 0.f);
  } else {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < C; ++c)
        y[p * C + c] = u[p * C + c] + std::max(x[p * C + c] * scale[c] + shift[c], 0.f);
  }
}

// With dy = g * [x * scale + shift > 0]: sums of dy and dy * (x - mean) per channel.
MGIAD_CLONES void relu_grad_sum_rows(const float* __restrict g, const float* __restrict x,
                                     const float* __restrict scale, const float* __restrict shift,
                                     const float* __restrict mean, int64_t C, int64_t p0, int64_t p1,
                                     double* __restrict sum, double* __restrict sum_xc,
                                     float* __restrict block_sum, float* __restrict block_xc) {
  for (int64_t b = p0; b < p1; b += kBlock) {
    std::fill(block_sum, block_sum + C, 0.f);
    std::fill(block_xc, block_xc + C, 0.f);
    for (int64_t p = b; p < std::min(b + kBlock, p1); ++p)
      for (int64_t c = 0; c < C; ++c) {
        const float v = x[p * C + c];
        const float dy = v * scale[c] + shift[c] > 0.f ? g[p * C + c] : 0.f;
        block_sum[c] += dy;
        block_xc[c] += dy * (v - mean[c]);
      }
    for (int64_t c = 0; c < C; ++c) sum[c] += block_sum[c], sum_xc[c] += block_xc[c];
  }
}

// gx = k_dy * dy + k_x * (x - mean) + k_1, dy as above; also -gx into neg_gx if not null.
MGIAD_CLONES void bn_grad_rows(const float* __restrict g, const float* __restrict x,
                               const float* __restrict scale, const float* __restrict shift,
                               const float* __restrict mean, const float* __restrict k_dy,
                               const float* __restrict k_x, const float* __restrict k_1,
                               float* __restrict gx, float* __restrict neg_gx, int64_t C, int64_t p0,
                               int64_t p1) {
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t c = 0; c < C; ++c) {
      const float v = x[p * C + c];
      const float dy = v * scale[c] + shift[c] > 0.f ? g[p * C + c] : 0.f;
      const float value = k_dy[c] * dy + k_x[c] * (v - mean[c]) + k_1[c];
      gx[p * C + c] = value;
      if (neg_gx != nullptr) neg_gx[p * C + c] = -value;
    }
}

// ---- operators ----------------------------------------------------------------------------------

struct Pixels {
  int64_t P, C;
};

Pixels check_map(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "mgiad_kernels: ", name, " must be a 4-d float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast), "mgiad_kernels: ", name,
              " must be channels_last contiguous");
  return {x.size(0) * x.size(2) * x.size(3), x.size(1)};
}

void check_same(const at::Tensor& a, const at::Tensor& b, const char* name) {
  check_map(b, name);
  TORCH_CHECK(a.sizes() == b.sizes(), "mgiad_kernels: ", name, " has another shape");
}

const float* channel_vector(const at::Tensor& v, int64_t C, const char* name) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == C && v.scalar_type() == at::kFloat && v.is_contiguous() &&
                  v.device().is_cpu(),
              "mgiad_kernels: ", name, " must be a contiguous float32 vector of the ", C, " channels");
  return v.data_ptr<float>();
}

at::Tensor empty_map(const at::Tensor& like) {
  return at::empty(like.sizes(), like.options().memory_format(at::MemoryFormat::ChannelsLast));
}

// Per-channel totals of the two sums that rows(p0, p1, sum, second, scratch, scratch) adds into its
// doubles: [2, C] (sums over all pixels), from per-thread partials added in a fixed order.
template <typename Rows>
std::vector<double> channel_totals(Pixels s, Rows rows) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), s.P / kGrain));
  std::vector<double> partial(2 * chunks * s.C, 0.0), totals(2 * s.C, 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> block(2 * s.C);
    for (int64_t k = begin; k < end; ++k)
      rows(k * s.P / chunks, (k + 1) * s.P / chunks, partial.data() + 2 * k * s.C,
           partial.data() + (2 * k + 1) * s.C, block.data(), block.data() + s.C);
  });
  for (int64_t k = 0; k < chunks; ++k)
    for (int64_t i = 0; i < 2 * s.C; ++i) totals[i] += partial[2 * k * s.C + i];
  return totals;
}

// (mean, biased variance) from the totals of x and x^2.
std::tuple<at::Tensor, at::Tensor> mean_var(const std::vector<double>& totals, Pixels s, const at::Tensor& like) {
  at::Tensor mean = at::empty({s.C}, like.options()), var = at::empty({s.C}, like.options());
  for (int64_t c = 0; c < s.C; ++c) {
    const double m = totals[c] / s.P;
    mean.data_ptr<float>()[c] = static_cast<float>(m);
    var.data_ptr<float>()[c] = static_cast<float>(std::max(totals[s.C + c] / s.P - m * m, 0.0));
  }
  return {mean, var};
}

// (r, mean, var) with r = f - A_u and the batch mean and biased variance of r: the residual of
// eq. (5) and the statistics of its BatchNorm, in one pass.
std::tuple<at::Tensor, at::Tensor, at::Tensor> residual_stats(const at::Tensor& f, const at::Tensor& A_u) {
  const Pixels s = check_map(f, "f");
  check_same(f, A_u, "A_u");
  at::Tensor r = empty_map(f);
  const float *f_ptr = f.data_ptr<float>(), *a_ptr = A_u.data_ptr<float>();
  float* r_ptr = r.data_ptr<float>();
  const auto totals = channel_totals(s, [&](int64_t p0, int64_t p1, double* sum, double* sq, float* bs, float* bq) {
    sub_sum_rows(f_ptr, a_ptr, r_ptr, s.C, p0, p1, sum, sq, bs, bq);
  });
  auto [mean, var] = mean_var(totals, s, f);
  return {r, mean, var};
}

// (mean, var): batch mean and biased variance per channel, in one pass.
std::tuple<at::Tensor, at::Tensor> batch_stats(const at::Tensor& x) {
  const Pixels s = check_map(x, "x");
  const float* x_ptr = x.data_ptr<float>();
  return mean_var(channel_totals(s, [&](int64_t p0, int64_t p1, double* sum, double* sq, float* bs, float* bq) {
    sum_rows(x_ptr, s.C, p0, p1, sum, sq, bs, bq);
  }), s, x);
}

// (u +) relu(x * scale + shift): BatchNorm as an affine map and ReLU, and with u the update
// u + relu(bn(z)) of eq. (5), in one pass.
at::Tensor affine_relu(const std::optional<at::Tensor>& u, const at::Tensor& x, const at::Tensor& scale,
                       const at::Tensor& shift) {
  const Pixels s = check_map(x, "x");
  if (u.has_value()) check_same(x, *u, "u");
  const float *sc = channel_vector(scale, s.C, "scale"), *sh = channel_vector(shift, s.C, "shift");
  at::Tensor y = empty_map(x);
  const float* u_ptr = u.has_value() ? u->data_ptr<float>() : nullptr;
  const float* x_ptr = x.data_ptr<float>();
  float* y_ptr = y.data_ptr<float>();
  at::parallel_for(0, s.P, kGrain, [&](int64_t p0, int64_t p1) {
    affine_relu_rows(u_ptr, x_ptr, sc, sh, y_ptr, s.C, p0, p1);
  });
  return y;
}

// Backward of y = relu(bn(x)) in training mode (batch statistics mean, invstd; weight gamma, bias
// beta) for the gradient g of y: (g_x, -g_x or an empty tensor, g_gamma, g_beta). Two passes: the
// sums, then g_x, with -g_x (the gradient of A_u in r = f - A_u) written in the same pass.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> relu_bn_backward(
    const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& invstd,
    const at::Tensor& gamma, const at::Tensor& beta, bool negated_copy) {
  const Pixels s = check_map(x, "x");
  check_same(x, g, "grad");
  const float *m = channel_vector(mean, s.C, "mean"), *is = channel_vector(invstd, s.C, "invstd");
  const float *ga = channel_vector(gamma, s.C, "gamma"), *be = channel_vector(beta, s.C, "beta");
  std::vector<float> coefficients(5 * s.C);  // scale, shift, k_dy, k_x, k_1
  float *sc = coefficients.data(), *sh = sc + s.C, *k_dy = sh + s.C, *k_x = k_dy + s.C, *k_1 = k_x + s.C;
  for (int64_t c = 0; c < s.C; ++c) sc[c] = is[c] * ga[c], sh[c] = be[c] - m[c] * sc[c];
  const float *g_ptr = g.data_ptr<float>(), *x_ptr = x.data_ptr<float>();
  const auto totals = channel_totals(s, [&](int64_t p0, int64_t p1, double* sum, double* xc, float* bs, float* bx) {
    relu_grad_sum_rows(g_ptr, x_ptr, sc, sh, m, s.C, p0, p1, sum, xc, bs, bx);
  });
  at::Tensor g_gamma = at::empty({s.C}, x.options()), g_beta = at::empty({s.C}, x.options());
  for (int64_t c = 0; c < s.C; ++c) {
    const double sum_dy = totals[c], sum_dy_xc = totals[s.C + c];
    g_beta.data_ptr<float>()[c] = static_cast<float>(sum_dy);
    g_gamma.data_ptr<float>()[c] = static_cast<float>(sum_dy_xc * is[c]);
    // g_x = gamma * invstd * (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean)))
    k_dy[c] = sc[c];
    k_x[c] = static_cast<float>(-sc[c] * double(is[c]) * is[c] * sum_dy_xc / s.P);
    k_1[c] = static_cast<float>(-sc[c] * sum_dy / s.P);
  }
  at::Tensor g_x = empty_map(x);
  at::Tensor neg = negated_copy ? empty_map(x) : at::empty({0}, x.options());
  float *gx_ptr = g_x.data_ptr<float>(), *neg_ptr = negated_copy ? neg.data_ptr<float>() : nullptr;
  at::parallel_for(0, s.P, kGrain, [&](int64_t p0, int64_t p1) {
    bn_grad_rows(g_ptr, x_ptr, sc, sh, m, k_dy, k_x, k_1, gx_ptr, neg_ptr, s.C, p0, p1);
  });
  return {g_x, neg, g_gamma, g_beta};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(mgiad_kernels, m) {
  m.def("residual_stats", &residual_stats);
  m.def("batch_stats", &batch_stats);
  m.def("affine_relu", &affine_relu);
  m.def("relu_bn_backward", &relu_bn_backward);
}

}  // namespace mgiad_kernels
