// attention.h: causal grouped-query attention over a head-major KV cache (decode and batched verify/prefill).
//
// Contract
//   q [m, heads·hd]; kc, vc [kvHeads, maxLen, hd] (written up to start + m − 1); y [m, heads·hd].
//   Row i is the query at position p = start + i; head h reads KV head g = ⌊h / (heads / kvHeads)⌋ (HF repeat_kv):
//     s_j = scale·(q[i,h] · k[g,j]),  j = 0 … p
//     y[i,h] = Σ_j e^(s_j − max s)·v[g,j] / Σ_j e^(s_j − max s)
//   scratch: f32_attention_scratch_floats(start + m) floats (the scores of one row, then their exponentials).
// Batch invariance
//   Every (row, head) is computed alone, by a sequence of operations that depends only on p and hd: keys are
//   visited in order 0 … p, score by score and sum by sum, whatever m is and whichever rows ride along. So
//   rows computed with m = 5 equal, bit for bit, the same rows computed one at a time (speculative decoding
//   verifies a batch and must reproduce token-by-token decoding).
// Method (two passes over the keys, the row max subtracted before the exponential)
//   1. Scores. SIMD: four keys at a time, each a 4-lane partial dot product over hd, reduced by a 4×4
//      transpose-add to (l₀ + l₂) + (l₁ + l₃) per key; past the last key the pointers repeat key p (a real
//      score, harmless to the max, excluded from the sum). Scalar: one sequential dot product per key.
//   2. e_j = expf(s_j − max) (expf.h, ≤ 1 ulp), Σ e_j (SIMD: 4 lane sums, then (l₀ + l₂) + (l₁ + l₃)).
//   3. y = (Σ_j e_j·v_j) / Σ e_j, f32 accumulation in key order; SIMD holds up to 32 output floats in
//      8 accumulators per sweep over the keys (hd = 64, 128: 2, 4 sweeps).
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

static inline size_t f32_attention_scratch_floats(size_t n_keys) { return (n_keys + 3) & ~(size_t)3; }

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

// y[0 : 4·NV] = Σ_j e_j·v[j, 0 : 4·NV] / sum  (v rows hd apart).
template <int NV>
static inline void f32_attention_pv__simd128(size_t n, size_t hd, const float* __restrict e,
                                             const float* __restrict v, float* __restrict y, float sum) {
  v128_t acc[NV];
  for (int c = 0; c < NV; c++) acc[c] = wasm_f32x4_splat(0.0f);
  for (size_t j = 0; j < n; j++) {
    const v128_t ev = wasm_v128_load32_splat(e + j);
    const float* vr = v + j * hd;
    for (int c = 0; c < NV; c++) acc[c] = wasm_f32x4_add(acc[c], wasm_f32x4_mul(ev, wasm_v128_load(vr + 4 * c)));
  }
  const v128_t sv = wasm_f32x4_splat(sum);
  for (int c = 0; c < NV; c++) wasm_v128_store(y + 4 * c, wasm_f32x4_div(acc[c], sv));
}

static inline void f32_attention_head__simd128(size_t n, size_t hd, const float* __restrict q,
                                               const float* __restrict k, const float* __restrict v,
                                               float* __restrict y, float scale, float* __restrict sc,
                                               const ExpConsts& c) {
  const size_t hd4 = hd & ~(size_t)3;
  const size_t last = n - 1;
  // 1. Scores, four keys at a time; lanes past the last key repeat it.
  const v128_t scv = wasm_f32x4_splat(scale);
  v128_t mxv = wasm_f32x4_splat(-INFINITY);
  for (size_t j = 0; j < n; j += 4) {
    const float* k0 = k + j * hd;
    const float* k1 = k + (j + 1 < last ? j + 1 : last) * hd;
    const float* k2 = k + (j + 2 < last ? j + 2 : last) * hd;
    const float* k3 = k + (j + 3 < last ? j + 3 : last) * hd;
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (size_t t = 0; t < hd4; t += 4) {
      const v128_t qv = wasm_v128_load(q + t);
      a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(qv, wasm_v128_load(k0 + t)));
      a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(qv, wasm_v128_load(k1 + t)));
      a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(qv, wasm_v128_load(k2 + t)));
      a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(qv, wasm_v128_load(k3 + t)));
    }
    v128_t s = f32x4_hsum4(a0, a1, a2, a3);
    if (hd4 < hd) {  // hd % 4 dims, per key in order
      float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f, r3 = 0.0f;
      for (size_t t = hd4; t < hd; t++) {
        r0 += q[t] * k0[t];
        r1 += q[t] * k1[t];
        r2 += q[t] * k2[t];
        r3 += q[t] * k3[t];
      }
      s = wasm_f32x4_add(s, wasm_f32x4_make(r0, r1, r2, r3));
    }
    s = wasm_f32x4_mul(s, scv);
    wasm_v128_store(sc + j, s);
    mxv = wasm_f32x4_pmax(mxv, s);  // one maxps (f32x4.max's NaN rules cost several); the max is exact either way
  }
  mxv = wasm_f32x4_pmax(mxv, wasm_i32x4_shuffle(mxv, mxv, 2, 3, 0, 1));
  mxv = wasm_f32x4_pmax(mxv, wasm_i32x4_shuffle(mxv, mxv, 1, 0, 3, 2));
  // 2. e_j = exp(s_j − max) in place; lanes past the last key zeroed (out of the sum and never read after).
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
  const float sum = wasm_f32x4_extract_lane(sumv, 0) + wasm_f32x4_extract_lane(sumv, 1);
  // 3. y = Σ e_j·v_j / Σ e_j, up to 32 output floats per sweep.
  size_t t = 0;
  for (; t + 32 <= hd4; t += 32) f32_attention_pv__simd128<8>(n, hd, sc, v + t, y + t, sum);
  if (t + 16 <= hd4) f32_attention_pv__simd128<4>(n, hd, sc, v + t, y + t, sum), t += 16;
  if (t + 8 <= hd4) f32_attention_pv__simd128<2>(n, hd, sc, v + t, y + t, sum), t += 8;
  if (t + 4 <= hd4) f32_attention_pv__simd128<1>(n, hd, sc, v + t, y + t, sum), t += 4;
  for (; t < hd; t++) {
    float acc = 0.0f;
    for (size_t q2 = 0; q2 < n; q2++) acc += sc[q2] * v[q2 * hd + t];
    y[t] = acc / sum;
  }
}

struct AttnSimd128 {
  const ExpConsts c;
  inline void head(size_t n, size_t hd, const float* q, const float* k, const float* v, float* y, float scale,
                   float* sc) const {
    f32_attention_head__simd128(n, hd, q, k, v, y, scale, sc, c);
  }
};
struct AttnScalar {
  inline void head(size_t n, size_t hd, const float* q, const float* k, const float* v, float* y, float scale,
                   float* sc) const {
    f32_attention_head__scalar(n, hd, q, k, v, y, scale, sc);
  }
};

// Driver: every (row, head) on its own (the batch invariance above).
template <class Isa>
static inline void f32_attention(size_t m, size_t heads, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                 const float* q, const float* kc, const float* vc, float* y, float scale,
                                 float* scratch) {
  const Isa isa{};
  const size_t group = heads / kv_heads;
  const size_t width = heads * hd;
  for (size_t i = 0; i < m; i++) {
    const size_t n = start + i + 1;
    for (size_t h = 0; h < heads; h++) {
      const size_t g = h / group;
      isa.head(n, hd, q + i * width + h * hd, kc + g * max_len * hd, vc + g * max_len * hd, y + i * width + h * hd,
               scale, scratch);
    }
  }
}

}  // namespace peft
