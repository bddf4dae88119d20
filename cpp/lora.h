// lora.h: the two LoRA half-products around the base GEMM.
//
// Contract
//   shrink:  t [m,r] = s · (x [m,k] · A [k,r])          (computed once per call, into caller scratch)
//   expand:  y [m,n] += t [m,r] · B [r,n]               (standalone, e.g. embeddings; linear.h fuses the
//                                                        same sum into the GEMM epilogue so y is written once)
//   Row-major f32; strides in elements: ldx = k, lda = r, ldt = r, ldb = n, ldy = n.
// Kernel shape
//   Broadcast form: x[i,p] is splatted and multiplied by a row segment A[p, q:q+4·NV]; tiles are MR rows ×
//   NV vectors of r. Tails: r % 4 columns by a scalar loop, m % MR by narrower instantiations.
// Accuracy
//   f32 accumulation in k order; |t − t_exact| ≤ k·2⁻²⁴·|s|·Σ|x·A| (+ one rounding for s).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>

namespace peft {

// t[0:MR, q0:q0+4·NV] = s · x[0:MR, :] · A[:, q0:q0+4·NV]
template <int MR, int NV>
static inline void f32_lora_shrink__simd128(size_t k, const float* __restrict x, const float* __restrict a,
                                            float* __restrict t, size_t ldx, size_t lda, size_t ldt, float s) {
  v128_t acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < NV; c++) acc[i][c] = wasm_f32x4_splat(0.0f);
  for (size_t p = 0; p < k; p++) {
    v128_t av[NV];
    for (int c = 0; c < NV; c++) av[c] = wasm_v128_load(a + p * lda + 4 * c);
    for (int i = 0; i < MR; i++) {
      const v128_t xv = wasm_v128_load32_splat(x + i * ldx + p);
      for (int c = 0; c < NV; c++) acc[i][c] = wasm_f32x4_add(acc[i][c], wasm_f32x4_mul(xv, av[c]));
    }
  }
  const v128_t sv = wasm_f32x4_splat(s);
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < NV; c++) wasm_v128_store(t + i * ldt + 4 * c, wasm_f32x4_mul(acc[i][c], sv));
}

// Scalar twin (one column at a time; same signature with NV counting 4-column groups).
template <int MR, int NV>
static inline void f32_lora_shrink__scalar(size_t k, const float* __restrict x, const float* __restrict a,
                                           float* __restrict t, size_t ldx, size_t lda, size_t ldt, float s) {
  float acc[MR][4 * NV] = {};
  for (size_t p = 0; p < k; p++)
    for (int i = 0; i < MR; i++)
      for (int q = 0; q < 4 * NV; q++) acc[i][q] += x[i * ldx + p] * a[p * lda + q];
  for (int i = 0; i < MR; i++)
    for (int q = 0; q < 4 * NV; q++) t[i * ldt + q] = acc[i][q] * s;
}

// Columns that do not fill a vector: one at a time (shared by both ISAs; r % 4 ≤ 3 columns).
static inline void f32_lora_shrink_column(size_t m, size_t k, const float* __restrict x, const float* __restrict a,
                                          float* __restrict t, size_t lda, size_t ldt, float s) {
  for (size_t i = 0; i < m; i++) {
    float acc = 0.0f;
    for (size_t p = 0; p < k; p++) acc += x[i * k + p] * a[p * lda];
    t[i * ldt] = acc * s;
  }
}

struct LoraSimd128 {
  template <int MR, int NV>
  static inline void shrink(size_t k, const float* x, const float* a, float* t, size_t ldx, size_t lda, size_t ldt, float s) {
    f32_lora_shrink__simd128<MR, NV>(k, x, a, t, ldx, lda, ldt, s);
  }
};
struct LoraScalar {
  template <int MR, int NV>
  static inline void shrink(size_t k, const float* x, const float* a, float* t, size_t ldx, size_t lda, size_t ldt, float s) {
    f32_lora_shrink__scalar<MR, NV>(k, x, a, t, ldx, lda, ldt, s);
  }
};

template <class Isa, int NV>
static inline void f32_lora_shrink_rows(size_t m, size_t k, size_t r, size_t q, const float* x, const float* a,
                                        float* t, float s) {
  constexpr int MR = 4;
  size_t i = 0;
  for (; i + MR <= m; i += MR) Isa::template shrink<MR, NV>(k, x + i * k, a + q, t + i * r + q, k, r, r, s);
  for (; i < m; i++) Isa::template shrink<1, NV>(k, x + i * k, a + q, t + i * r + q, k, r, r, s);
}

// t [m,r] = s · x [m,k] · A [k,r]. Dispatcher: 16-column groups (4×16 tiles), then 4-column, then single.
template <class Isa>
static inline void f32_lora_shrink(size_t m, size_t k, size_t r, const float* __restrict x, const float* __restrict a,
                                   float* __restrict t, float s) {
  assert(m > 0 && k > 0 && r > 0 && x && a && t);
  size_t q = 0;
  for (; q + 16 <= r; q += 16) f32_lora_shrink_rows<Isa, 4>(m, k, r, q, x, a, t, s);
  for (; q + 4 <= r; q += 4) f32_lora_shrink_rows<Isa, 1>(m, k, r, q, x, a, t, s);
  for (; q < r; q++) f32_lora_shrink_column(m, k, x, a + q, t + q, r, r, s);
}

// y [m,n] += t [m,r] · B [r,n]: a row of y is Σ_q t[i,q]·B[q,:] (axpy over contiguous rows of B).
static inline void f32_lora_expand__scalar(size_t m, size_t n, size_t r, const float* __restrict t,
                                           const float* __restrict b, float* __restrict y) {
  for (size_t i = 0; i < m; i++)
    for (size_t q = 0; q < r; q++) {
      const float tv = t[i * r + q];
      for (size_t j = 0; j < n; j++) y[i * n + j] += tv * b[q * n + j];
    }
}

static inline void f32_lora_expand__simd128(size_t m, size_t n, size_t r, const float* __restrict t,
                                            const float* __restrict b, float* __restrict y) {
  for (size_t i = 0; i < m; i++)
    for (size_t q = 0; q < r; q++) {
      const float tv = t[i * r + q];
      const v128_t tvv = wasm_f32x4_splat(tv);
      const float* br = b + q * n;
      float* yr = y + i * n;
      size_t j = 0;
      for (; j + 4 <= n; j += 4)
        wasm_v128_store(yr + j, wasm_f32x4_add(wasm_v128_load(yr + j), wasm_f32x4_mul(tvv, wasm_v128_load(br + j))));
      for (; j < n; j++) yr[j] += tv * br[j];
    }
}

}  // namespace peft
