// transformer.h: the per-row and elementwise ops of a decoder block (norms, rotary embedding, residual add,
// SwiGLU, tanh-GELU, KV-cache write). attention.h holds the attention itself.
//
// Contract (row-major f32; every output row depends only on the same input row, so results are batch invariant)
//   rms_norm    y [m,d] = x / √(mean(x²) + eps) ⊙ w                              x [m,d], w [d]
//   layer_norm  y [m,d] = (x − μ) / √(σ² + eps) ⊙ w + b   (σ² biased)            x [m,d], w, b [d]
//   rope        in place, HF rotate_half: x [m, heads·hd], row i at position start + i, cos/sin [maxPos, hd/2];
//               (x₁, x₂) = (x[h·hd + j], x[h·hd + j + hd/2]) → (x₁·c − x₂·s, x₂·c + x₁·s)
//   add_inplace a [n] += b [n]
//   swiglu      y [n] = silu(g)·u = g / (1 + e⁻ᵍ) · u
//   gelu_tanh   y [n] = ½x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), computed as x / (1 + e^(−2u)) (the same
//               function: 1 + tanh(u) = 2 / (1 + e^(−2u))), which needs no tanh and stays accurate where
//               1 + tanh(u) cancels (x ≲ −3; the f32 formula loses every digit there)
//   kv_write    cache [kvHeads, maxLen, hd]: cache[g, start + i, :] = src[i, g·hd : (g+1)·hd],  src [m, kvHeads·hd]
// Method and accuracy
//   Norms: Σx² (and Σx, Σ(x − μ)²) accumulated in float64 (an f32 square is exact in f64), 1/√(·) in float64
//   rounded once to f32; the output in f32: rms (x·inv)·w, layer ((x − μ)·inv)·w + b. Error ≤ 3 ulp of
//   |x|·inv·|w| (rms), ≤ 4 ulp of (|x − μ| + |μ|)·inv·|w| + |b| (layer).
//   rope, add: the formula in f32, one rounding per operation; SIMD and scalar give the same bits.
//   swiglu, gelu_tanh: expf.h (≤ 1 ulp) plus 3 roundings; gelu's u carries ~5 ulp, amplified by |2u| through
//   the exponential (relative error ≤ ~(6 + 5·|2u|) ulp). SIMD and scalar give the same bits.
// Shape: 4-lane vectors along the row, then a scalar tail (the same operations) for d % 4.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <wasm_simd128.h>

#include "expf.h"

namespace peft {

// ---- rms_norm ---------------------------------------------------------------------------------------------
static inline void f32_rms_norm__scalar(size_t m, size_t d, const float* __restrict x, const float* __restrict w,
                                        float* __restrict y, double eps) {
  for (size_t i = 0; i < m; i++, x += d, y += d) {
    double ss = 0;
    for (size_t j = 0; j < d; j++) ss += (double)x[j] * (double)x[j];
    const float inv = (float)(1.0 / sqrt(ss / (double)d + eps));
    for (size_t j = 0; j < d; j++) y[j] = (x[j] * inv) * w[j];
  }
}

// Σ x[j]² over a row in f64: two f64x2 accumulators (the low and high halves of each f32x4), then the tail.
static inline double f32_sum_squares_f64__simd128(size_t d, const float* __restrict x) {
  v128_t lo = wasm_f64x2_splat(0.0), hi = wasm_f64x2_splat(0.0);
  size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const v128_t v = wasm_v128_load(x + j);
    const v128_t a = wasm_f64x2_promote_low_f32x4(v);
    const v128_t b = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 2, 3));
    lo = wasm_f64x2_add(lo, wasm_f64x2_mul(a, a));
    hi = wasm_f64x2_add(hi, wasm_f64x2_mul(b, b));
  }
  const v128_t s = wasm_f64x2_add(lo, hi);
  double ss = wasm_f64x2_extract_lane(s, 0) + wasm_f64x2_extract_lane(s, 1);
  for (; j < d; j++) ss += (double)x[j] * (double)x[j];
  return ss;
}

static inline void f32_rms_norm__simd128(size_t m, size_t d, const float* __restrict x, const float* __restrict w,
                                         float* __restrict y, double eps) {
  for (size_t i = 0; i < m; i++, x += d, y += d) {
    const double ss = f32_sum_squares_f64__simd128(d, x);
    const float inv = (float)(1.0 / sqrt(ss / (double)d + eps));
    const v128_t iv = wasm_f32x4_splat(inv);
    size_t j = 0;
    for (; j + 4 <= d; j += 4)
      wasm_v128_store(y + j, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(x + j), iv), wasm_v128_load(w + j)));
    for (; j < d; j++) y[j] = (x[j] * inv) * w[j];
  }
}

// ---- layer_norm -------------------------------------------------------------------------------------------
static inline void f32_layer_norm__scalar(size_t m, size_t d, const float* __restrict x, const float* __restrict w,
                                          const float* __restrict b, float* __restrict y, double eps) {
  for (size_t i = 0; i < m; i++, x += d, y += d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += (double)x[j];
    const double mu = s / (double)d;
    double v = 0;
    for (size_t j = 0; j < d; j++) v += ((double)x[j] - mu) * ((double)x[j] - mu);
    const float inv = (float)(1.0 / sqrt(v / (double)d + eps));
    const float muf = (float)mu;
    for (size_t j = 0; j < d; j++) y[j] = ((x[j] - muf) * inv) * w[j] + b[j];
  }
}

static inline void f32_layer_norm__simd128(size_t m, size_t d, const float* __restrict x, const float* __restrict w,
                                           const float* __restrict b, float* __restrict y, double eps) {
  for (size_t i = 0; i < m; i++, x += d, y += d) {
    // Mean: f32 values summed exactly enough in f64 (two f64x2 accumulators).
    v128_t lo = wasm_f64x2_splat(0.0), hi = wasm_f64x2_splat(0.0);
    size_t j = 0;
    for (; j + 4 <= d; j += 4) {
      const v128_t v = wasm_v128_load(x + j);
      lo = wasm_f64x2_add(lo, wasm_f64x2_promote_low_f32x4(v));
      hi = wasm_f64x2_add(hi, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 2, 3)));
    }
    v128_t t = wasm_f64x2_add(lo, hi);
    double s = wasm_f64x2_extract_lane(t, 0) + wasm_f64x2_extract_lane(t, 1);
    for (size_t q = j; q < d; q++) s += (double)x[q];
    const double mu = s / (double)d;
    // Biased variance around the f64 mean (two passes: no cancellation).
    const v128_t muv = wasm_f64x2_splat(mu);
    lo = wasm_f64x2_splat(0.0);
    hi = wasm_f64x2_splat(0.0);
    for (j = 0; j + 4 <= d; j += 4) {
      const v128_t v = wasm_v128_load(x + j);
      const v128_t a = wasm_f64x2_sub(wasm_f64x2_promote_low_f32x4(v), muv);
      const v128_t c = wasm_f64x2_sub(wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 2, 3)), muv);
      lo = wasm_f64x2_add(lo, wasm_f64x2_mul(a, a));
      hi = wasm_f64x2_add(hi, wasm_f64x2_mul(c, c));
    }
    t = wasm_f64x2_add(lo, hi);
    double var = wasm_f64x2_extract_lane(t, 0) + wasm_f64x2_extract_lane(t, 1);
    for (size_t q = j; q < d; q++) var += ((double)x[q] - mu) * ((double)x[q] - mu);
    const float inv = (float)(1.0 / sqrt(var / (double)d + eps));
    const float muf = (float)mu;
    const v128_t iv = wasm_f32x4_splat(inv), mv = wasm_f32x4_splat(muf);
    for (j = 0; j + 4 <= d; j += 4) {
      const v128_t c = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(x + j), mv), iv);
      wasm_v128_store(y + j, wasm_f32x4_add(wasm_f32x4_mul(c, wasm_v128_load(w + j)), wasm_v128_load(b + j)));
    }
    for (; j < d; j++) y[j] = ((x[j] - muf) * inv) * w[j] + b[j];
  }
}

// ---- rope (in place) --------------------------------------------------------------------------------------
static inline void f32_rope_pair__scalar(size_t half, float* __restrict x1, float* __restrict x2,
                                         const float* __restrict c, const float* __restrict s) {
  for (size_t j = 0; j < half; j++) {
    const float a = x1[j], b = x2[j];
    x1[j] = a * c[j] - b * s[j];
    x2[j] = b * c[j] + a * s[j];
  }
}

static inline void f32_rope__scalar(size_t m, size_t heads, size_t hd, float* x, const float* cos_t,
                                    const float* sin_t, size_t start) {
  const size_t half = hd / 2;
  for (size_t i = 0; i < m; i++) {
    const float* c = cos_t + (start + i) * half;
    const float* s = sin_t + (start + i) * half;
    for (size_t h = 0; h < heads; h++) {
      float* xr = x + (i * heads + h) * hd;
      f32_rope_pair__scalar(half, xr, xr + half, c, s);
    }
  }
}

static inline void f32_rope__simd128(size_t m, size_t heads, size_t hd, float* x, const float* cos_t,
                                     const float* sin_t, size_t start) {
  const size_t half = hd / 2;
  const size_t half4 = half & ~(size_t)3;
  for (size_t i = 0; i < m; i++) {
    const float* c = cos_t + (start + i) * half;
    const float* s = sin_t + (start + i) * half;
    for (size_t h = 0; h < heads; h++) {
      float* x1 = x + (i * heads + h) * hd;
      float* x2 = x1 + half;
      for (size_t j = 0; j < half4; j += 4) {
        const v128_t a = wasm_v128_load(x1 + j), b = wasm_v128_load(x2 + j);
        const v128_t cv = wasm_v128_load(c + j), sv = wasm_v128_load(s + j);
        wasm_v128_store(x1 + j, wasm_f32x4_sub(wasm_f32x4_mul(a, cv), wasm_f32x4_mul(b, sv)));
        wasm_v128_store(x2 + j, wasm_f32x4_add(wasm_f32x4_mul(b, cv), wasm_f32x4_mul(a, sv)));
      }
      f32_rope_pair__scalar(half - half4, x1 + half4, x2 + half4, c + half4, s + half4);
    }
  }
}

// ---- add_inplace ------------------------------------------------------------------------------------------
static inline void f32_add_inplace__scalar(size_t n, float* a, const float* b) {
  for (size_t i = 0; i < n; i++) a[i] += b[i];
}

static inline void f32_add_inplace__simd128(size_t n, float* a, const float* b) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(a + i, wasm_f32x4_add(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  f32_add_inplace__scalar(n - i, a + i, b + i);
}

// ---- swiglu -----------------------------------------------------------------------------------------------
static inline void f32_swiglu__scalar(size_t n, const float* __restrict g, const float* __restrict u,
                                      float* __restrict y) {
  for (size_t i = 0; i < n; i++) y[i] = (g[i] / (1.0f + expf_approx(-g[i]))) * u[i];
}

static inline void f32_swiglu__simd128(size_t n, const float* __restrict g, const float* __restrict u,
                                       float* __restrict y) {
  const ExpConsts c;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {  // two independent vectors per turn: the exponential is one long dependency chain
    const v128_t g0 = wasm_v128_load(g + i), g1 = wasm_v128_load(g + i + 4);
    const v128_t e0 = expf_approx_x4(wasm_f32x4_neg(g0), c), e1 = expf_approx_x4(wasm_f32x4_neg(g1), c);
    wasm_v128_store(y + i, wasm_f32x4_mul(wasm_f32x4_div(g0, wasm_f32x4_add(c.one, e0)), wasm_v128_load(u + i)));
    wasm_v128_store(y + i + 4, wasm_f32x4_mul(wasm_f32x4_div(g1, wasm_f32x4_add(c.one, e1)), wasm_v128_load(u + i + 4)));
  }
  for (; i + 4 <= n; i += 4) {
    const v128_t gv = wasm_v128_load(g + i);
    const v128_t e = expf_approx_x4(wasm_f32x4_neg(gv), c);
    wasm_v128_store(y + i, wasm_f32x4_mul(wasm_f32x4_div(gv, wasm_f32x4_add(c.one, e)), wasm_v128_load(u + i)));
  }
  f32_swiglu__scalar(n - i, g + i, u + i, y + i);
}

// ---- gelu_tanh --------------------------------------------------------------------------------------------
// −2·√(2/π) (an exact doubling of the f32 √(2/π)) and 0.044715.
constexpr float kGeluM2C = -2.0f * 0.7978845608028654f;
constexpr float kGeluK = 0.044715f;
static volatile float g_gelu_consts[2] = {kGeluM2C, kGeluK};

static inline void f32_gelu_tanh__scalar(size_t n, const float* __restrict x, float* __restrict y) {
  for (size_t i = 0; i < n; i++) {
    const float v = x[i];
    const float inner = v + kGeluK * ((v * v) * v);
    y[i] = v / (1.0f + expf_approx(kGeluM2C * inner));
  }
}

static inline void f32_gelu_tanh__simd128(size_t n, const float* __restrict x, float* __restrict y) {
  const ExpConsts c;
  const v128_t m2c = wasm_f32x4_splat(g_gelu_consts[0]), k = wasm_f32x4_splat(g_gelu_consts[1]);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t v = wasm_v128_load(x + i);
    const v128_t inner = wasm_f32x4_add(v, wasm_f32x4_mul(k, wasm_f32x4_mul(wasm_f32x4_mul(v, v), v)));
    const v128_t e = expf_approx_x4(wasm_f32x4_mul(m2c, inner), c);
    wasm_v128_store(y + i, wasm_f32x4_div(v, wasm_f32x4_add(c.one, e)));
  }
  f32_gelu_tanh__scalar(n - i, x + i, y + i);
}

// ---- kv_write ---------------------------------------------------------------------------------------------
// Plain copies of hd floats per (row, KV head); the twins differ only in the copy width.
static inline void f32_kv_write__scalar(size_t m, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                        const float* __restrict src, float* __restrict cache) {
  for (size_t i = 0; i < m; i++)
    for (size_t g = 0; g < kv_heads; g++) {
      const float* s = src + (i * kv_heads + g) * hd;
      float* d = cache + (g * max_len + start + i) * hd;
      for (size_t t = 0; t < hd; t++) d[t] = s[t];
    }
}

static inline void f32_kv_write__simd128(size_t m, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                         const float* __restrict src, float* __restrict cache) {
  for (size_t i = 0; i < m; i++)
    for (size_t g = 0; g < kv_heads; g++) {
      const float* s = src + (i * kv_heads + g) * hd;
      float* d = cache + (g * max_len + start + i) * hd;
      size_t t = 0;
      for (; t + 4 <= hd; t += 4) wasm_v128_store(d + t, wasm_v128_load(s + t));
      for (; t < hd; t++) d[t] = s[t];
    }
}

}  // namespace peft
