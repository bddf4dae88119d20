// linear_bf16.h: nn.Linear with a bf16 base weight, f32 everywhere else (x, y, bias, LoRA terms, accumulators).
//
// Contract
//   The one of linear.h, with W [n,k] stored as bf16 (the upper 16 bits of an f32: widening is exact, a shift).
//   Checkpoints ship bf16; keeping W so halves its memory and the bytes a forward streams. Decode (m ≤ 4) is bound
//   by memory bandwidth, so it runs up to 2× an f32 W.
// Kernel shape
//   m ≤ 4, f32xbf16_gemv_rows (m = 1) / _pairs (m = 2..4, two W rows per x load): W rows one after the other (a
//   sequential stream, as f32_gemv1), 8 weights per v128 load split without shuffles: even = v << 16 (lanes
//   0,2,4,6 as f32), odd = v & 0xffff0000 (lanes 1,3,5,7).
//   x is permuted once per call to match, per 8-block [x0 x2 x4 x6 | x1 x3 x5 x7] (scratch [m,k]).
//   4 < m ≤ BF16_GEMV_MAX_M: the GEMV on 4-row chunks of x.
//   m > BF16_GEMV_MAX_M: linear.h's packed GEMM (f32_gemm_packed); per k-block the NW×KC strip of W is
//   widened into
//   scratch (8 KiB, stays in L1) once and swept by every x panel, so the widening costs n·k shifts per call
//   against 2·m·n·k flops.
// Accuracy
//   As linear.h on the widened W (f32 accumulation, ~(k/8 + 2 + r)·2⁻²⁴·Σ|terms| for m ≤ 4: 8-lane pairwise split).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>
#include "linear.h"

namespace peft {

static inline float bf16_to_f32_1(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------------------
// Scalar reference: widen QUANT-style strips of BF16_STRIP rows into scratch and run linear.h's scalar GEMM.
constexpr size_t BF16_STRIP = 4;

static inline void f32xbf16_linear__scalar(size_t m, size_t n, size_t k, const float* __restrict x,
                                           const uint16_t* __restrict w, float* __restrict y, const Epilogue* ep,
                                           float* __restrict scratch) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y && scratch);
  if (m <= 4 && ep && ep->nterms > 0) {  // as f32_linear: plain sums, then the B-streaming epilogue pass
    f32xbf16_linear__scalar(m, n, k, x, w, y, nullptr, scratch);
    f32_gemv_epilogue(m, n, y, ep);
    return;
  }
  for (size_t j = 0; j < n; j += BF16_STRIP) {
    const size_t rows = j + BF16_STRIP <= n ? BF16_STRIP : n - j;
    for (size_t q = 0; q < rows * k; q++) scratch[q] = bf16_to_f32_1(w[j * k + q]);
    f32_gemm_columns<Scalar>(m, n, k, j, j + rows, x, scratch, y, ep);
  }
}

// ---------------------------------------------------------------------------------------------------------
// SIMD128, m ≤ 4.

// xq [M,k]: each row's full 8-blocks permuted to [even 4 | odd 4]; the k % 8 tail is read from x itself.
static inline void f32_permute_x8(size_t m, size_t k, const float* __restrict x, float* __restrict xq) {
  const size_t k8 = k & ~(size_t)7;
  for (size_t i = 0; i < m; i++) {
    const float* s = x + i * k;
    float* d = xq + i * k;
    for (size_t p = 0; p < k8; p += 8) {
      const v128_t a = wasm_v128_load(s + p), b = wasm_v128_load(s + p + 4);
      wasm_v128_store(d + p, wasm_i32x4_shuffle(a, b, 0, 2, 4, 6));
      wasm_v128_store(d + p + 4, wasm_i32x4_shuffle(a, b, 1, 3, 5, 7));
    }
  }
}

// 0xffff0000 per lane, loaded at run time: a compile-time v128.const would be sunk into the inner loop by LLVM
// and rematerialised by V8 on every iteration (≈ 30 % of the m = 1 kernel's instructions).
static volatile uint32_t g_bf16_hi_mask = 0xffff0000u;

// NR rows of W (one after the other) × all M rows of x → out [M][NR], then the shared SIMD epilogue.
// U: 8-blocks per step (independent accumulator pairs per x row).
template <int M, int NR, int U>
static inline void f32xbf16_gemv_rows__simd128(size_t k, const float* __restrict x, const float* __restrict xq,
                                               const uint16_t* __restrict w, float* __restrict y, size_t ldy,
                                               const Epilogue* ep, size_t j0) {
  const size_t k8 = k & ~(size_t)7;
  const v128_t hi16 = wasm_i32x4_splat((int32_t)g_bf16_hi_mask);
  alignas(16) float out[M][NR];
  for (int j = 0; j < NR; j++) {
    const uint16_t* wr = w + j * k;
    v128_t acc[M][2 * U];
    for (int i = 0; i < M; i++)
      for (int u = 0; u < 2 * U; u++) acc[i][u] = wasm_f32x4_splat(0.0f);
    size_t p = 0;
    for (; p + 8 * U <= k8; p += 8 * U)
      for (int u = 0; u < U; u++) {
        const v128_t v = wasm_v128_load(wr + p + 8 * u);
        const v128_t we = wasm_i32x4_shl(v, 16), wo = wasm_v128_and(v, hi16);
        for (int i = 0; i < M; i++) {
          const float* xr = xq + i * k + p + 8 * u;
          acc[i][2 * u] = wasm_f32x4_add(acc[i][2 * u], wasm_f32x4_mul(wasm_v128_load(xr), we));
          acc[i][2 * u + 1] = wasm_f32x4_add(acc[i][2 * u + 1], wasm_f32x4_mul(wasm_v128_load(xr + 4), wo));
        }
      }
    for (; p < k8; p += 8) {
      const v128_t v = wasm_v128_load(wr + p);
      const v128_t we = wasm_i32x4_shl(v, 16), wo = wasm_v128_and(v, hi16);
      for (int i = 0; i < M; i++) {
        acc[i][0] = wasm_f32x4_add(acc[i][0], wasm_f32x4_mul(wasm_v128_load(xq + i * k + p), we));
        acc[i][1] = wasm_f32x4_add(acc[i][1], wasm_f32x4_mul(wasm_v128_load(xq + i * k + p + 4), wo));
      }
    }
    for (int i = 0; i < M; i++) {
      for (int v = U; v > 0; v /= 2)  // pairwise over the 2U accumulators
        for (int u = 0; u < v; u++) acc[i][u] = wasm_f32x4_add(acc[i][u], acc[i][u + v]);
      const v128_t a = acc[i][0];
      float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      for (size_t q = k8; q < k; q++) s += x[i * k + q] * bf16_to_f32_1(wr[q]);
      out[i][j] = s;
    }
  }
  f32_store_tile__simd128<M, NR>(out, y, ldy, false, ep, 0, j0);  // ldy = n: also the row stride of LoRA B
}

// M = 2..4: W rows in pairs, so each x load feeds two rows: per 8-block 2 W loads, 4 widening ops, 2M x loads and
// 4M multiply-adds (0.72 instructions per multiply-add at M = 4 against 0.84 row by row). Even and odd halves
// share an accumulator (M·2 ≤ 8 accumulators + 4 W vectors fit the 16 registers).
template <int M, int NR>
static inline void f32xbf16_gemv_pairs__simd128(size_t k, const float* __restrict x, const float* __restrict xq,
                                                const uint16_t* __restrict w, float* __restrict y, size_t ldy,
                                                const Epilogue* ep, size_t j0) {
  static_assert(NR % 2 == 0, "rows in pairs");
  const size_t k8 = k & ~(size_t)7;
  const v128_t hi16 = wasm_i32x4_splat((int32_t)g_bf16_hi_mask);
  alignas(16) float out[M][NR];
  for (int j = 0; j < NR; j += 2) {
    const uint16_t* w0 = w + j * k;
    const uint16_t* w1 = w0 + k;
    v128_t acc[M][2];
    for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = wasm_f32x4_splat(0.0f);
    for (size_t p = 0; p < k8; p += 8) {
      const v128_t v0 = wasm_v128_load(w0 + p), v1 = wasm_v128_load(w1 + p);
      const v128_t e0 = wasm_i32x4_shl(v0, 16), o0 = wasm_v128_and(v0, hi16);
      const v128_t e1 = wasm_i32x4_shl(v1, 16), o1 = wasm_v128_and(v1, hi16);
      for (int i = 0; i < M; i++) {
        const v128_t xe = wasm_v128_load(xq + i * k + p), xo = wasm_v128_load(xq + i * k + p + 4);
        acc[i][0] = wasm_f32x4_add(acc[i][0], wasm_f32x4_add(wasm_f32x4_mul(xe, e0), wasm_f32x4_mul(xo, o0)));
        acc[i][1] = wasm_f32x4_add(acc[i][1], wasm_f32x4_add(wasm_f32x4_mul(xe, e1), wasm_f32x4_mul(xo, o1)));
      }
    }
    for (int i = 0; i < M; i++)
      for (int jj = 0; jj < 2; jj++) {
        const v128_t a = acc[i][jj];
        float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                  (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
        const uint16_t* wr = jj ? w1 : w0;
        for (size_t q = k8; q < k; q++) s += x[i * k + q] * bf16_to_f32_1(wr[q]);
        out[i][j + jj] = s;
      }
  }
  f32_store_tile__simd128<M, NR>(out, y, ldy, false, ep, 0, j0);
}

template <int M>
static inline void f32xbf16_gemv__simd128(size_t n, size_t k, const float* x, const float* xq, const uint16_t* w,
                                          float* y, const Epilogue* ep) {
  size_t j = 0;
  if (M == 1) {  // U = 2: 4 accumulators keep the adds off the critical path (U = 4 measured slower)
    for (; j + 8 <= n; j += 8) f32xbf16_gemv_rows__simd128<M, 8, 2>(k, x, xq, w + j * k, y + j, n, ep, j);
    for (; j + 4 <= n; j += 4) f32xbf16_gemv_rows__simd128<M, 4, 2>(k, x, xq, w + j * k, y + j, n, ep, j);
  } else {
    for (; j + 8 <= n; j += 8) f32xbf16_gemv_pairs__simd128<M, 8>(k, x, xq, w + j * k, y + j, n, ep, j);
    for (; j + 2 <= n; j += 2) f32xbf16_gemv_pairs__simd128<M, 2>(k, x, xq, w + j * k, y + j, n, ep, j);
  }
  for (; j < n; j++) f32xbf16_gemv_rows__simd128<M, 1, 1>(k, x, xq, w + j * k, y + j, n, ep, j);
}

// ---------------------------------------------------------------------------------------------------------
// SIMD128, m > 4: packed GEMM over widened W strips.

// ws [rows, kc] = widened W[0:rows, p0:p0+kc] (row stride k).
static inline void bf16_widen_strip__simd128(size_t rows, size_t kc, size_t k, const uint16_t* __restrict w,
                                             float* __restrict ws) {
  for (size_t j = 0; j < rows; j++) {
    const uint16_t* s = w + j * k;
    float* d = ws + j * kc;
    size_t p = 0;
    const v128_t zero = wasm_i32x4_splat(0);
    for (; p + 8 <= kc; p += 8) {  // interleave with zeros: each bf16 lands in the upper half of an f32 (punpck*wd)
      const v128_t v = wasm_v128_load(s + p);
      wasm_v128_store(d + p, wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11));
      wasm_v128_store(d + p + 4, wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15));
    }
    for (; p < kc; p++) d[p] = bf16_to_f32_1(s[p]);
  }
}

// Up to this m the GEMV runs on 4-row chunks of x, streaming W ⌈m/4⌉ times; above, the packed GEMM widens W strips.
// Measured at k = n = 4096: m = 5 runs ≈ 1.4× faster as two GEMV passes than through the packed GEMM (one 8-row
// panel, mostly padding); m = 8 ties; m = 12, 16 are faster packed.
#ifndef PEFT_BF16_GEMV_MAX_M
#define PEFT_BF16_GEMV_MAX_M 8
#endif
constexpr size_t BF16_GEMV_MAX_M = PEFT_BF16_GEMV_MAX_M;

// Scratch floats for both twins: GEMV permuted x [min(m,4),k]; GEMM x panels + one W strip [NW,KC];
// the scalar twin's strip [BF16_STRIP,k].
static inline size_t f32xbf16_linear_scratch_floats(size_t m, size_t k) {
  const size_t simd = m <= BF16_GEMV_MAX_M ? (m < 4 ? m : 4) * k : f32_packed_strips_scratch_floats(m, k);
  const size_t scalar = BF16_STRIP * k;
  return simd > scalar ? simd : scalar;
}

// y [m,n] = epilogue(x [m,k] · widen(W [n,k] bf16)ᵀ).
static inline void f32xbf16_linear__simd128(size_t m, size_t n, size_t k, const float* __restrict x,
                                            const uint16_t* __restrict w, float* __restrict y, const Epilogue* ep,
                                            float* __restrict scratch) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y && scratch);
  if (m <= BF16_GEMV_MAX_M && ep && ep->nterms > 0) {
    // As f32_linear: plain sums, then the B-streaming epilogue pass (which also indexes t by the true row).
    f32xbf16_linear__simd128(m, n, k, x, w, y, nullptr, scratch);
    f32_gemv_epilogue(m, n, y, ep);
    return;
  }
  if (m > BF16_GEMV_MAX_M) {
    float* ws = scratch + f32_linear_scratch_floats(m, k);
    f32_gemm_packed<PackedSimd128>(m, n, k, x, y, ep, scratch, [w, k, ws](size_t j, size_t rows, size_t p0, size_t kc) {
      bf16_widen_strip__simd128(rows, kc, k, w + j * k + p0, ws);
      return WStrip{ws, kc};
    });
    return;
  }
  // GEMV on chunks of up to 4 rows (the epilogue left is per column: bias, row scale, lora bias).
  for (size_t i = 0; i < m; i += 4) {
    const size_t mc = m - i < 4 ? m - i : 4;
    const float* xc = x + i * k;
    float* yc = y + i * n;
    f32_permute_x8(mc, k, xc, scratch);
    switch (mc) {
      case 1: f32xbf16_gemv__simd128<1>(n, k, xc, scratch, w, yc, ep); break;
      case 2: f32xbf16_gemv__simd128<2>(n, k, xc, scratch, w, yc, ep); break;
      case 3: f32xbf16_gemv__simd128<3>(n, k, xc, scratch, w, yc, ep); break;
      default: f32xbf16_gemv__simd128<4>(n, k, xc, scratch, w, yc, ep); break;
    }
  }
}

}  // namespace peft
