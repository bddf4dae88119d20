// attention.h: causal grouped-query attention over a head-major KV cache (decode and batched verify/prefill).
//
// Contract
//   q [m, heads·hd]; kc, vc [kvHeads, maxLen, hd] (written up to start + m − 1); y [m, heads·hd].
//   Row i is the query at position p = start + i; head h reads KV head g = ⌊h / (heads / kvHeads)⌋ (HF repeat_kv):
//     s_j = scale·(q[i,h] · k[g,j]),  j = 0 … p
//     y[i,h] = Σ_j e^(s_j − max s)·v[g,j] / Σ_j e^(s_j − max s)
//   scratch: f32_attention_scratch_floats(start + m) floats (the scores of two heads, then their exponentials).
// Batch invariance
//   Every (row, head) is computed by a sequence of operations that depends only on p and hd: keys are visited
//   in order 0 … p, score by score and sum by sum, whatever m is and whichever rows ride along. So
//   rows computed with m = 5 equal, bit for bit, the same rows computed one at a time (speculative decoding
//   verifies a batch and must reproduce token-by-token decoding).
// Method (two passes over the keys, the row max subtracted before the exponential)
//   SIMD: the query heads of one KV head go two at a time, so every K and V vector loaded serves both (the
//   kernel is bound by loads, not arithmetic: 26 → 15 µs for pycoder's 8/4 heads × 32 at 513 keys).
//   1. Scores. SIMD: four keys at a time, each a 4-lane partial dot product over hd, reduced by a 4×4
//      transpose-add to (l₀ + l₂) + (l₁ + l₃) per key; past the last key the pointers repeat key p (a real
//      score, harmless to the max, excluded from the sum). Scalar: one sequential dot product per key.
//   2. e_j = expf(s_j − max) (expf.h, ≤ 1 ulp), Σ e_j (SIMD: 4 lane sums, then (l₀ + l₂) + (l₁ + l₃)).
//   3. y = (Σ_j e_j·v_j) / Σ e_j, f32 accumulation in key order; SIMD keeps 8 accumulator vectors per sweep
//      over the keys (one head: 32 output floats, a pair: 16 each).
// Accuracy
//   Scores: hd-term f32 dot products (|err| ≤ ~hd/4·2⁻²⁴·scale·Σ|q·k|); the output is a convex combination of
//   V rows, |err| ≲ (p + 4)·2⁻²⁴·max|v| plus the score error times max|v|.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <wasm_simd128.h>

#include "expf.h"

namespace peft {

// Two score rows (the SIMD kernel's head pairs), each n_keys rounded up to a whole vector.
static inline size_t f32_attention_scratch_floats(size_t n_keys) { return 2 * ((n_keys + 3) & ~(size_t)3); }

// ---- scalar twin: one (row, head) over n = p + 1 keys ------------------------------------------------------
static inline void f32_attention_head__scalar(size_t n, size_t hd, const float* __restrict q,
                                              const float* __restrict k, const float* __restrict v,
                                              float* __restrict y, float scale, float* __restrict sc) {
  float mx = -INFINITY;
  for (size_t j = 0; j < n; j++) {
    const float* kr = k + j * hd;
    float s = 0.0f;
    for (size_t t = 0; t < hd; t++) s += q[t] * kr[t];
    s *= scale;
    sc[j] = s;
    mx = s > mx ? s : mx;
  }
  float sum = 0.0f;
  for (size_t j = 0; j < n; j++) {
    const float e = expf_approx(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  for (size_t t = 0; t < hd; t++) y[t] = 0.0f;
  for (size_t j = 0; j < n; j++) {
    const float e = sc[j];
    const float* vr = v + j * hd;
    for (size_t t = 0; t < hd; t++) y[t] += e * vr[t];
  }
  for (size_t t = 0; t < hd; t++) y[t] = y[t] / sum;
}

// ---- SIMD128 ----------------------------------------------------------------------------------------------
// [Σ lanes of a0, Σ a1, Σ a2, Σ a3], each as (l₀ + l₂) + (l₁ + l₃).
static inline v128_t f32x4_hsum4(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  const v128_t s01 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
  const v128_t s23 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
  return wasm_f32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
}

// 1. Scores of H query heads that share one KV head (GQA: K is loaded once for all H), four keys at a time;
// lanes past the last key repeat it. Per head the operations are those of H = 1, in the same order.
template <int H>
static inline void f32_attention_scores__simd128(size_t n, size_t hd, const float* const* q, const float* __restrict k,
                                                 float scale, float* const* sc, v128_t* mx) {
  const size_t hd4 = hd & ~(size_t)3;
  const size_t last = n - 1;
  const v128_t scv = wasm_f32x4_splat(scale);
  v128_t mxv[H];
  for (int h = 0; h < H; h++) mxv[h] = wasm_f32x4_splat(-INFINITY);
  for (size_t j = 0; j < n; j += 4) {
    const float* kp[4] = {k + j * hd, k + (j + 1 < last ? j + 1 : last) * hd, k + (j + 2 < last ? j + 2 : last) * hd,
                          k + (j + 3 < last ? j + 3 : last) * hd};
    v128_t a[H][4];
    for (int h = 0; h < H; h++)
      for (int u = 0; u < 4; u++) a[h][u] = wasm_f32x4_splat(0.0f);
    for (size_t t = 0; t < hd4; t += 4) {
      v128_t qv[H];
      for (int h = 0; h < H; h++) qv[h] = wasm_v128_load(q[h] + t);
      for (int u = 0; u < 4; u++) {
        const v128_t kv = wasm_v128_load(kp[u] + t);
        for (int h = 0; h < H; h++) a[h][u] = wasm_f32x4_add(a[h][u], wasm_f32x4_mul(qv[h], kv));
      }
    }
    for (int h = 0; h < H; h++) {
      v128_t s = f32x4_hsum4(a[h][0], a[h][1], a[h][2], a[h][3]);
      if (hd4 < hd) {  // hd % 4 dims, per key in order
        float r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (size_t t = hd4; t < hd; t++)
          for (int u = 0; u < 4; u++) r[u] += q[h][t] * kp[u][t];
        s = wasm_f32x4_add(s, wasm_f32x4_make(r[0], r[1], r[2], r[3]));
      }
      s = wasm_f32x4_mul(s, scv);
      wasm_v128_store(sc[h] + j, s);
      mxv[h] = wasm_f32x4_pmax(mxv[h], s);  // one maxps (f32x4.max's NaN rules cost several); exact either way
    }
  }
  for (int h = 0; h < H; h++) {
    v128_t m = wasm_f32x4_pmax(mxv[h], wasm_i32x4_shuffle(mxv[h], mxv[h], 2, 3, 0, 1));
    mx[h] = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  }
}

// 2. e_j = exp(s_j − max) in place, returns Σ e_j; lanes past the last key zeroed (out of the sum, never read).
static inline float f32_attention_exp__simd128(size_t n, float* __restrict sc, v128_t mxv, const ExpConsts& c) {
  v128_t sumv = wasm_f32x4_splat(0.0f);
  size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    const v128_t e = expf_approx_x4(wasm_f32x4_sub(wasm_v128_load(sc + j), mxv), c);
    wasm_v128_store(sc + j, e);
    sumv = wasm_f32x4_add(sumv, e);
  }
  if (j < n) {
    const v128_t keep = wasm_i32x4_lt(wasm_i32x4_make(0, 1, 2, 3), wasm_i32x4_splat((int32_t)(n - j)));
    const v128_t e = wasm_v128_and(expf_approx_x4(wasm_f32x4_sub(wasm_v128_load(sc + j), mxv), c), keep);
    wasm_v128_store(sc + j, e);
    sumv = wasm_f32x4_add(sumv, e);
  }
  sumv = wasm_f32x4_add(sumv, wasm_i32x4_shuffle(sumv, sumv, 2, 3, 0, 1));  // (l₀ + l₂), (l₁ + l₃)
  return wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1);
}

// 3. y_h[0 : 4·NV] = Σ_j e_hj·v[j, 0 : 4·NV] / sum_h for H heads (each V vector loaded once for all H).
template <int H, int NV>
static inline void f32_attention_pv__simd128(size_t n, size_t hd, float* const* e, const float* __restrict v,
                                             float* const* y, size_t t0, const float* sum) {
  v128_t acc[H][NV];
  for (int h = 0; h < H; h++)
    for (int c = 0; c < NV; c++) acc[h][c] = wasm_f32x4_splat(0.0f);
  for (size_t j = 0; j < n; j++) {
    v128_t ev[H];
    for (int h = 0; h < H; h++) ev[h] = wasm_v128_load32_splat(e[h] + j);
    const float* vr = v + j * hd + t0;
    for (int c = 0; c < NV; c++) {
      const v128_t vv = wasm_v128_load(vr + 4 * c);
      for (int h = 0; h < H; h++) acc[h][c] = wasm_f32x4_add(acc[h][c], wasm_f32x4_mul(ev[h], vv));
    }
  }
  for (int h = 0; h < H; h++) {
    const v128_t sv = wasm_f32x4_splat(sum[h]);
    for (int c = 0; c < NV; c++) wasm_v128_store(y[h] + t0 + 4 * c, wasm_f32x4_div(acc[h][c], sv));
  }
}

// H query heads over the same n keys of one KV head: y_h = softmax(scale·q_h·Kᵀ)·V. Accumulators per V sweep:
// 8 vectors in all (H = 1: 32 output floats, H = 2: 16 per head), within x86-64's 16 xmm registers.
template <int H>
static inline void f32_attention_heads__simd128(size_t n, size_t hd, const float* const* q, const float* __restrict k,
                                                const float* __restrict v, float* const* y, float scale,
                                                float* const* sc, const ExpConsts& c) {
  constexpr int NV = 8 / H;
  v128_t mx[H];
  f32_attention_scores__simd128<H>(n, hd, q, k, scale, sc, mx);
  float sum[H];
  for (int h = 0; h < H; h++) sum[h] = f32_attention_exp__simd128(n, sc[h], mx[h], c);
  const size_t hd4 = hd & ~(size_t)3;
  size_t t = 0;
  for (; t + 4 * NV <= hd4; t += 4 * NV) f32_attention_pv__simd128<H, NV>(n, hd, sc, v, y, t, sum);
  for (; t + 4 <= hd4; t += 4) f32_attention_pv__simd128<H, 1>(n, hd, sc, v, y, t, sum);
  for (; t < hd; t++)
    for (int h = 0; h < H; h++) {
      float acc = 0.0f;
      for (size_t j = 0; j < n; j++) acc += sc[h][j] * v[j * hd + t];
      y[h][t] = acc / sum[h];
    }
}

// Policies: `group(...)` runs the `count` query heads that share one KV head.
struct AttnSimd128 {
  const ExpConsts c;
  inline void group(size_t count, size_t n, size_t hd, const float* q, const float* k, const float* v, float* y,
                    float scale, float* scratch) const {
    const size_t stride = f32_attention_scratch_floats(n) / 2;
    float* sc[2] = {scratch, scratch + stride};
    size_t h = 0;
    for (; h + 2 <= count; h += 2) {
      const float* qs[2] = {q + h * hd, q + (h + 1) * hd};
      float* ys[2] = {y + h * hd, y + (h + 1) * hd};
      f32_attention_heads__simd128<2>(n, hd, qs, k, v, ys, scale, sc, c);
    }
    if (h < count) {
      const float* qs[1] = {q + h * hd};
      float* ys[1] = {y + h * hd};
      f32_attention_heads__simd128<1>(n, hd, qs, k, v, ys, scale, sc, c);
    }
  }
};
struct AttnScalar {
  inline void group(size_t count, size_t n, size_t hd, const float* q, const float* k, const float* v, float* y,
                    float scale, float* scratch) const {
    for (size_t h = 0; h < count; h++) f32_attention_head__scalar(n, hd, q + h * hd, k, v, y + h * hd, scale, scratch);
  }
};

// Driver: per row, per KV head, its group of query heads (the SIMD kernel takes them two at a time, sharing
// the K and V loads; each head's arithmetic is the same either way, so the pairing changes no bits).
template <class Isa>
static inline void f32_attention(size_t m, size_t heads, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                 const float* q, const float* kc, const float* vc, float* y, float scale,
                                 float* scratch) {
  const Isa isa{};
  const size_t group = heads / kv_heads;
  const size_t width = heads * hd;
  for (size_t i = 0; i < m; i++) {
    const size_t n = start + i + 1;
    for (size_t g = 0; g < kv_heads; g++)
      isa.group(group, n, hd, q + i * width + g * group * hd, kc + g * max_len * hd, vc + g * max_len * hd,
                y + i * width + g * group * hd, scale, scratch);
  }
}

}  // namespace peft
