// linear.h: f32 GEMM / GEMV micro-kernels for nn.Linear, with the LoRA / DoRA epilogue.
//
// Contract
//   y[i,j] = rowScale[j]·( Σ_p x[i,p]·W[j,p]  +  Σ_d Σ_q t_d[i,q]·B_d[q,j]  +  loraBias[j] )  +  bias[j]
//   x [m,k], W [n,k] (nn.Linear layout, not transposed, not packed), y [m,n]; t_d [m,r_d] = s_d·(x·A_d)
//   (see lora.h), B_d [r_d,n]. All row-major f32, strides in *elements* (ldx, ldw, ldy).
//   Every term of the epilogue is optional: with no terms, no loraBias and no rowScale the result is
//   exactly  Σ x·W + bias, computed by the very same code (the "adapter off" path is bit-identical to a
//   plain linear because it *is* the plain linear).
// Kernel shape (W is always read in its native [n,k] layout: the long-lived weight is never copied or packed)
//   m ≤ 4, GEMV "dot form" f32_gemm_MRxNR: MR rows of x × NR rows of W, each accumulator a 4-lane partial sum
//   over k, reduced horizontally once per tile; W is streamed exactly once. (Also used on quant.h's strips.)
//   m = 1 (SIMD128) uses its row-sequential variant f32_gemv1 (8 W rows per tile read one after the other,
//   4 accumulators per row): W is read as one sequential stream.
//   m > 4, GEMM "broadcast form" f32_gemm_8xNW: x is packed per call into 8-row panels (scratch from the caller,
//   f32_linear_scratch_floats), W rows are splatted: ≈ 45 GFLOP/s vs ≈ 25 for the dot form at k = n = 2048.
// Tails
//   k % 4 is finished by a scalar loop inside the kernel; m % MR and n % NR by narrower instantiations of
//   the same template (MR' < MR, NR' = 1). Unaligned pointers are fine (v128.load has no alignment need).
// Accuracy
//   f32 accumulation; |y − y_exact| ≤ ~(k/4 + 2 + r)·2⁻²⁴·Σ|terms| (4-lane pairwise split of the k sum;
//   16-lane for f32_gemv1, a tighter bound).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>

namespace peft {

// One LoRA term of the epilogue: t [m,r] (already scaled by s, row stride r), B [r,n] (row stride n = ldy).
struct LoraTerm {
  const float* t;
  const float* b;
  int32_t r;
  int32_t reserved;
};

// Everything applied after the k-sum, at the last k-block only. Written by JS into wasm memory:
// five 32-bit words {bias, row_scale, lora_bias, nterms, terms}; null pointers mean "absent".
struct Epilogue {
  const float* bias;       // [n]
  const float* row_scale;  // [n]  (DoRA m/‖W'‖)
  const float* lora_bias;  // [n]  Σ sᵢ·lora_biasᵢ
  int32_t nterms;
  const LoraTerm* terms;
};

// ---------------------------------------------------------------------------------------------------------
// Epilogue on one MR×NR block of sums `out`, stored at y (row i0, column j0). `prev`: add y's current value
// (k-blocking). `ep == nullptr`: not the last k-block, store the partial sums only.
template <int MR, int NR>
static inline void f32_store_tile__scalar(float (&out)[MR][NR], float* __restrict y, size_t ldy, bool prev,
                                          const Epilogue* ep, size_t i0, size_t j0) {
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      float v = out[i][j];
      if (prev) v += y[i * ldy + j];
      if (ep) {
        for (int32_t d = 0; d < ep->nterms; d++) {
          const LoraTerm& lt = ep->terms[d];
          const float* t = lt.t + (i0 + i) * lt.r;
          const float* b = lt.b + j0 + j;
          for (int32_t q = 0; q < lt.r; q++) v += t[q] * b[q * ldy];
        }
        if (ep->lora_bias) v += ep->lora_bias[j0 + j];
        if (ep->row_scale) v *= ep->row_scale[j0 + j];
        if (ep->bias) v += ep->bias[j0 + j];
      }
      y[i * ldy + j] = v;
    }
  }
}

template <int MR, int NR>
static inline void f32_store_tile__simd128(float (&out)[MR][NR], float* __restrict y, size_t ldy, bool prev,
                                           const Epilogue* ep, size_t i0, size_t j0) {
  if constexpr (NR % 4 != 0) {
    f32_store_tile__scalar<MR, NR>(out, y, ldy, prev, ep, i0, j0);
  } else {
    constexpr int NV = NR / 4;
    v128_t v[MR][NV];
    for (int i = 0; i < MR; i++)
      for (int c = 0; c < NV; c++) {
        v[i][c] = wasm_v128_load(&out[i][4 * c]);
        if (prev) v[i][c] = wasm_f32x4_add(v[i][c], wasm_v128_load(y + i * ldy + 4 * c));
      }
    if (ep) {
      for (int32_t d = 0; d < ep->nterms; d++) {
        const LoraTerm& lt = ep->terms[d];
        const float* b = lt.b + j0;
        for (int32_t q = 0; q < lt.r; q++) {
          v128_t bv[NV];
          for (int c = 0; c < NV; c++) bv[c] = wasm_v128_load(b + q * ldy + 4 * c);
          for (int i = 0; i < MR; i++) {
            const v128_t tv = wasm_v128_load32_splat(lt.t + (i0 + i) * lt.r + q);
            for (int c = 0; c < NV; c++) v[i][c] = wasm_f32x4_add(v[i][c], wasm_f32x4_mul(tv, bv[c]));
          }
        }
      }
      for (int c = 0; c < NV; c++) {
        const size_t j = j0 + 4 * c;
        const v128_t lb = ep->lora_bias ? wasm_v128_load(ep->lora_bias + j) : wasm_f32x4_splat(0.0f);
        const v128_t rs = ep->row_scale ? wasm_v128_load(ep->row_scale + j) : wasm_f32x4_splat(1.0f);
        const v128_t bb = ep->bias ? wasm_v128_load(ep->bias + j) : wasm_f32x4_splat(0.0f);
        for (int i = 0; i < MR; i++) {
          if (ep->lora_bias) v[i][c] = wasm_f32x4_add(v[i][c], lb);
          if (ep->row_scale) v[i][c] = wasm_f32x4_mul(v[i][c], rs);
          if (ep->bias) v[i][c] = wasm_f32x4_add(v[i][c], bb);
        }
      }
    }
    for (int i = 0; i < MR; i++)
      for (int c = 0; c < NV; c++) wasm_v128_store(y + i * ldy + 4 * c, v[i][c]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// f32_gemm_MRxNR: out = x[0:MR, 0:kc] · W[0:NR, 0:kc]ᵀ, then the epilogue. Same signature for both ISAs.
template <int MR, int NR>
static inline void f32_gemm__scalar(size_t kc, const float* __restrict x, const float* __restrict w,
                                    float* __restrict y, size_t ldx, size_t ldw, size_t ldy, bool prev,
                                    const Epilogue* ep, size_t i0, size_t j0) {
  assert(kc > 0 && x && w && y);
  float out[MR][NR] = {};
  for (size_t p = 0; p < kc; p++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) out[i][j] += x[i * ldx + p] * w[j * ldw + p];
  f32_store_tile__scalar<MR, NR>(out, y, ldy, prev, ep, i0, j0);
}

template <int MR, int NR>
static inline void f32_gemm__simd128(size_t kc, const float* __restrict x, const float* __restrict w,
                                     float* __restrict y, size_t ldx, size_t ldw, size_t ldy, bool prev,
                                     const Epilogue* ep, size_t i0, size_t j0) {
  assert(kc > 0 && x && w && y);
  v128_t acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = wasm_f32x4_splat(0.0f);
  size_t p = 0;
  for (; p + 4 <= kc; p += 4) {
    v128_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = wasm_v128_load(x + i * ldx + p);
    for (int j = 0; j < NR; j++) {
      const v128_t wv = wasm_v128_load(w + j * ldw + p);
      for (int i = 0; i < MR; i++) acc[i][j] = wasm_f32x4_add(acc[i][j], wasm_f32x4_mul(xv[i], wv));
    }
  }
  alignas(16) float out[MR][NR];
  for (int i = 0; i < MR; i++) {
    int j = 0;
    // Four accumulators → one vector of four sums (a 4×4 transpose folded into the adds).
    for (; j + 4 <= NR; j += 4) {
      const v128_t a0 = acc[i][j], a1 = acc[i][j + 1], a2 = acc[i][j + 2], a3 = acc[i][j + 3];
      const v128_t s01 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
      const v128_t s23 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
      const v128_t s = wasm_f32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
      wasm_v128_store(&out[i][j], s);
    }
    for (; j < NR; j++) {
      const v128_t a = acc[i][j];
      out[i][j] = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                  (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
    }
  }
  for (; p < kc; p++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) out[i][j] += x[i * ldx + p] * w[j * ldw + p];
  f32_store_tile__simd128<MR, NR>(out, y, ldy, prev, ep, i0, j0);
}

// ---------------------------------------------------------------------------------------------------------
// Dispatcher. Isa supplies the tile template; the driver does full tiles, then narrower ones, no shape
// branches inside kernels.
static inline void f32_gemv1__simd128(size_t n, size_t k, const float* x, const float* w, float* y,
                                      const Epilogue* ep);
template <class Isa, int M>
static inline void f32_gemv(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep);
struct Simd128 {
  static inline void gemv1(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
    f32_gemv1__simd128(n, k, x, w, y, ep);
  }
  template <int MR, int NR>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__simd128<MR, NR>(kc, x, w, y, ldx, ldw, ldy, prev, ep, i0, j0);
  }
};
struct Scalar {
  static inline void gemv1(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
    f32_gemv<Scalar, 1>(n, k, x, w, y, ep);
  }
  template <int MR, int NR>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__scalar<MR, NR>(kc, x, w, y, ldx, ldw, ldy, prev, ep, i0, j0);
  }
};

// Main tile (measured on x86-64 V8, 16 xmm registers: MR·NR accumulators + MR x-vectors + 1 W-vector ≤ 16).
#ifndef PEFT_GEMM_MR
#define PEFT_GEMM_MR 3
#endif
#ifndef PEFT_GEMM_NR
#define PEFT_GEMM_NR 4
#endif
// k-block: a W strip (NW·KC floats, 8 KiB) stays in L1 while it sweeps every x panel; KC = 512, 1024, 2048
// measured within noise at k = n = 2048 (≈ 46–48 GFLOP/s), so take the smallest scratch.
#ifndef PEFT_GEMM_KC
#define PEFT_GEMM_KC 512
#endif
// m-block: MC rows of x · KC stay in L2 while W streams through once per m-block.
#ifndef PEFT_GEMM_MC
#define PEFT_GEMM_MC 96
#endif

// Rows [i_begin, i_end) × columns [j0, j0+NR) of one k-block: full MR tiles, then one narrower tile.
template <class Isa, int MR, int NR>
static inline void f32_gemm_column(size_t i_begin, size_t i_end, size_t kc, const float* x, const float* w, float* y,
                                   size_t ldx, size_t ldw, size_t ldy, bool prev, const Epilogue* ep, size_t j0) {
  size_t i = i_begin;
  for (; i + MR <= i_end; i += MR)
    Isa::template gemm<MR, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0);
  switch (i_end - i) {
    case 0: break;
    case 1: Isa::template gemm<1, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0); break;
    case 2: Isa::template gemm<2, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0); break;
    case 3: Isa::template gemm<3, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0); break;
    case 4: Isa::template gemm<4, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0); break;
    case 5: Isa::template gemm<5, NR>(kc, x + i * ldx, w, y + i * ldy + j0, ldx, ldw, ldy, prev, ep, i, j0); break;
    default: assert(false);
  }
}

// GEMV m = 1 (decode), "row-sequential dot form": the NR rows of a tile are streamed one after the other,
// each into U independent 4-lane accumulators (k unrolled by 4·U), and the NR row sums are reduced together
// (4×4 transposes) before the shared SIMD epilogue. W [n,k] is contiguous, so the whole matrix is read as a
// single sequential stream (what the hardware prefetcher follows best; XNNPACK / MLAS get the same from their
// packed weights) while x (k floats) stays in L1. Measured at k = n = 4096, W cache-cold, x86-64 V8:
// ≈ 21 GB/s vs ≈ 17.5 for the 1×4 interleaved tile (NR 4 → 8 and U 2 → 4 each matter; U = 8 is slower).
// m = 2..4 keep the interleaved MR×4 tile: there x reloads would make the row-sequential form load-bound.
#ifndef PEFT_GEMV1_NR
#define PEFT_GEMV1_NR 8
#endif
#ifndef PEFT_GEMV1_U
#define PEFT_GEMV1_U 4
#endif
template <int NR, int U>
static inline void f32_gemv1_rows__simd128(size_t k, const float* __restrict x, const float* __restrict w,
                                           float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0) {
  v128_t row[NR];
  for (int j = 0; j < NR; j++) {
    const float* wr = w + j * k;
    v128_t acc[U];
    for (int u = 0; u < U; u++) acc[u] = wasm_f32x4_splat(0.0f);
    size_t p = 0;
    for (; p + 4 * U <= k; p += 4 * U)
      for (int u = 0; u < U; u++)
        acc[u] = wasm_f32x4_add(acc[u], wasm_f32x4_mul(wasm_v128_load(x + p + 4 * u), wasm_v128_load(wr + p + 4 * u)));
    for (; p + 4 <= k; p += 4)
      acc[0] = wasm_f32x4_add(acc[0], wasm_f32x4_mul(wasm_v128_load(x + p), wasm_v128_load(wr + p)));
    for (int v = U / 2; v > 0; v /= 2)  // pairwise: (a0+a2)+(a1+a3)
      for (int u = 0; u < v; u++) acc[u] = wasm_f32x4_add(acc[u], acc[u + v]);
    row[j] = acc[0];
  }
  alignas(16) float out[1][NR];
  int j = 0;
  for (; j + 4 <= NR; j += 4) {
    const v128_t a0 = row[j], a1 = row[j + 1], a2 = row[j + 2], a3 = row[j + 3];
    const v128_t s01 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
    const v128_t s23 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
    const v128_t s = wasm_f32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
    wasm_v128_store(&out[0][j], s);
  }
  for (; j < NR; j++) {
    const v128_t a = row[j];
    out[0][j] = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
  }
  for (size_t p = k & ~(size_t)3; p < k; p++)
    for (int jj = 0; jj < NR; jj++) out[0][jj] += x[p] * w[jj * k + p];
  f32_store_tile__simd128<1, NR>(out, y, ldy, false, ep, 0, j0);  // ldy = n: also the row stride of LoRA B
}

static inline void f32_gemv1__simd128(size_t n, size_t k, const float* x, const float* w, float* y,
                                      const Epilogue* ep) {
  constexpr int NR = PEFT_GEMV1_NR, U = PEFT_GEMV1_U;
  static_assert(NR % 4 == 0 && U >= 1 && (U & (U - 1)) == 0, "NR: multiple of 4; U: power of two");
  size_t j = 0;
  for (; j + NR <= n; j += NR) f32_gemv1_rows__simd128<NR, U>(k, x, w + j * k, y + j, n, ep, j);
  for (; j + 4 <= n; j += 4) f32_gemv1_rows__simd128<4, U>(k, x, w + j * k, y + j, n, ep, j);
  for (; j < n; j++) f32_gemv1_rows__simd128<1, U>(k, x, w + j * k, y + j, n, ep, j);
}

// GEMV path (m = 1..4): one tile of m rows covers all of x, so each W row is read exactly once.
template <class Isa, int M>
static inline void f32_gemv(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) Isa::template gemm<M, 4>(k, x, w + j * k, y + j, k, k, n, false, ep, 0, j);
  for (; j < n; j++) Isa::template gemm<M, 1>(k, x, w + j * k, y + j, k, k, n, false, ep, 0, j);
}

// Columns [j_begin, j_end) of y for all m rows, with W rows starting at `w` (= row j_begin). Used by the
// f32 driver and by the quantised driver on a dequantised strip.
template <class Isa>
static inline void f32_gemm_columns(size_t m, size_t n, size_t k, size_t j_begin, size_t j_end, const float* x,
                                    const float* w, float* y, const Epilogue* ep) {
  constexpr int MR = PEFT_GEMM_MR, NR = PEFT_GEMM_NR;
  const size_t kc_max = m <= 4 ? k : PEFT_GEMM_KC;
  for (size_t ib = 0; ib < m; ib += PEFT_GEMM_MC) {
    const size_t ie = ib + PEFT_GEMM_MC < m ? ib + PEFT_GEMM_MC : m;
    for (size_t p0 = 0; p0 < k; p0 += kc_max) {
      const size_t kc = p0 + kc_max < k ? kc_max : k - p0;
      const bool last = p0 + kc == k;
      const Epilogue* e = last ? ep : nullptr;
      const bool prev = p0 != 0;
      size_t j = j_begin;
      for (; j + NR <= j_end; j += NR)
        f32_gemm_column<Isa, MR, NR>(ib, ie, kc, x + p0, w + (j - j_begin) * k + p0, y, k, k, n, prev, e, j);
      for (; j < j_end; j++)
        f32_gemm_column<Isa, MR, 1>(ib, ie, kc, x + p0, w + (j - j_begin) * k + p0, y, k, k, n, prev, e, j);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// GEMM path (m > 4): "broadcast form" on packed x. x[:, p0:p0+kc] is copied per call into panels of 8 rows,
// xp [⌈m/8⌉][kc][8] (zero-padded), so one k step is two contiguous vector loads of x plus one splat per W row:
// 8·NW multiply-adds for 2 + NW loads. W stays in its [n,k] layout (the weight is never copied or packed).
// Tile f32_gemm_8xNW: 8 rows of x (vector lanes) × NW rows of W; accumulators hold yᵀ, transposed once at the end.
constexpr size_t PANEL = 8;

static inline void f32_pack_x8(size_t m, size_t kc, const float* __restrict x, size_t ldx, float* __restrict xp) {
  for (size_t i0 = 0; i0 < m; i0 += PANEL) {
    float* d = xp + (i0 / PANEL) * kc * PANEL;
    const size_t rows = i0 + PANEL <= m ? PANEL : m - i0;
    for (size_t i = 0; i < PANEL; i++) {
      if (i < rows) {
        const float* s = x + (i0 + i) * ldx;
        for (size_t p = 0; p < kc; p++) d[p * PANEL + i] = s[p];
      } else {
        for (size_t p = 0; p < kc; p++) d[p * PANEL + i] = 0.0f;
      }
    }
  }
}

// Stores rows [0, rows) of an 8×NW block (a tail panel stores fewer than 8 rows).
template <int NW, class Store>
static inline void f32_store_panel(float (&out)[PANEL][NW], size_t rows, float* y, size_t ldy, bool prev,
                                   const Epilogue* ep, size_t i0, size_t j0, Store store) {
  if (rows == PANEL) {
    store(out, y, ldy, prev, ep, i0, j0);
  } else {
    for (size_t i = 0; i < rows; i++) {
      float row[1][NW];
      for (int j = 0; j < NW; j++) row[0][j] = out[i][j];
      store(row, y + i * ldy, ldy, prev, ep, i0 + i, j0);
    }
  }
}

template <int NW>
static inline void f32_gemm_8xNW__scalar(size_t kc, const float* __restrict xp, const float* __restrict w,
                                         float* __restrict y, size_t ldw, size_t ldy, size_t rows, bool prev,
                                         const Epilogue* ep, size_t i0, size_t j0) {
  float out[PANEL][NW] = {};
  for (size_t p = 0; p < kc; p++)
    for (size_t i = 0; i < PANEL; i++)
      for (int j = 0; j < NW; j++) out[i][j] += xp[p * PANEL + i] * w[j * ldw + p];
  f32_store_panel<NW>(out, rows, y, ldy, prev, ep, i0, j0, [](auto& o, float* yy, size_t l, bool pr, const Epilogue* e, size_t ii, size_t jj) {
    f32_store_tile__scalar(o, yy, l, pr, e, ii, jj);
  });
}

template <int NW>
static inline void f32_gemm_8xNW__simd128(size_t kc, const float* __restrict xp, const float* __restrict w,
                                          float* __restrict y, size_t ldw, size_t ldy, size_t rows, bool prev,
                                          const Epilogue* ep, size_t i0, size_t j0) {
  v128_t lo[NW], hi[NW];  // lo[j]: y[i0+0..3, j0+j], hi[j]: y[i0+4..7, j0+j]
  for (int j = 0; j < NW; j++) lo[j] = hi[j] = wasm_f32x4_splat(0.0f);
  for (size_t p = 0; p < kc; p++) {
    const v128_t x0 = wasm_v128_load(xp + p * PANEL), x1 = wasm_v128_load(xp + p * PANEL + 4);
    for (int j = 0; j < NW; j++) {
      const v128_t wv = wasm_v128_load32_splat(w + j * ldw + p);
      lo[j] = wasm_f32x4_add(lo[j], wasm_f32x4_mul(x0, wv));
      hi[j] = wasm_f32x4_add(hi[j], wasm_f32x4_mul(x1, wv));
    }
  }
  alignas(16) float out[PANEL][NW];
  for (int j = 0; j < NW; j++) {
    alignas(16) float l[4], h[4];
    wasm_v128_store(l, lo[j]);
    wasm_v128_store(h, hi[j]);
    for (int i = 0; i < 4; i++) {
      out[i][j] = l[i];
      out[i + 4][j] = h[i];
    }
  }
  f32_store_panel<NW>(out, rows, y, ldy, prev, ep, i0, j0, [](auto& o, float* yy, size_t l, bool pr, const Epilogue* e, size_t ii, size_t jj) {
    f32_store_tile__simd128(o, yy, l, pr, e, ii, jj);
  });
}

struct PackedSimd128 {
  template <int NW>
  static inline void gemm(size_t kc, const float* xp, const float* w, float* y, size_t ldw, size_t ldy, size_t rows,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm_8xNW__simd128<NW>(kc, xp, w, y, ldw, ldy, rows, prev, ep, i0, j0);
  }
};
struct PackedScalar {
  template <int NW>
  static inline void gemm(size_t kc, const float* xp, const float* w, float* y, size_t ldw, size_t ldy, size_t rows,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm_8xNW__scalar<NW>(kc, xp, w, y, ldw, ldy, rows, prev, ep, i0, j0);
  }
};

// W rows per tile of the packed GEMM (8·NW accumulators + 2 x vectors + 1 splat ≤ 16 xmm registers).
#ifndef PEFT_GEMM_NW
#define PEFT_GEMM_NW 4
#endif

// Scratch the packed GEMM needs for m rows: ⌈m/8⌉·8·KC floats.
static inline size_t f32_linear_scratch_floats(size_t m, size_t k) {
  const size_t kc = k < PEFT_GEMM_KC ? k : PEFT_GEMM_KC;
  return (m + PANEL - 1) / PANEL * PANEL * kc;
}

// The rows×kc block of W at (row j, column p0) as the packed kernel reads it: a pointer and a row stride.
struct WStrip {
  const float* w;
  size_t ldw;
};

// Packed GEMM driver: per k-block, x is packed once into 8-row panels, then each NW-row strip of W, from
// `strip(j, rows, p0, kc)`, is swept by every panel. An f32 W is its own strip (no copy); a W stored in another
// form (bf16, quantised) is widened into ws [rows, kc] (NW·KC floats, stays in L1) by its strip function, once per
// weight per call: n·k against 2·m·n·k flops.
template <class P, class Strip>
static inline void f32_gemm_packed(size_t m, size_t n, size_t k, const float* x, float* y, const Epilogue* ep,
                                   float* xp, Strip strip) {
  constexpr int NW = PEFT_GEMM_NW;
  for (size_t p0 = 0; p0 < k; p0 += PEFT_GEMM_KC) {
    const size_t kc = p0 + PEFT_GEMM_KC < k ? PEFT_GEMM_KC : k - p0;
    const Epilogue* e = p0 + kc == k ? ep : nullptr;
    const bool prev = p0 != 0;
    f32_pack_x8(m, kc, x + p0, k, xp);
    size_t j = 0;
    for (; j + NW <= n; j += NW) {
      const WStrip s = strip(j, (size_t)NW, p0, kc);
      for (size_t i = 0; i < m; i += PANEL)
        P::template gemm<NW>(kc, xp + i * kc, s.w, y + i * n + j, s.ldw, n, m - i < PANEL ? m - i : PANEL, prev, e, i, j);
    }
    for (; j < n; j++) {
      const WStrip s = strip(j, (size_t)1, p0, kc);
      for (size_t i = 0; i < m; i += PANEL)
        P::template gemm<1>(kc, xp + i * kc, s.w, y + i * n + j, s.ldw, n, m - i < PANEL ? m - i : PANEL, prev, e, i, j);
    }
  }
}

// Scratch floats of f32_gemm_packed with a widened strip: x panels, then one strip.
static inline size_t f32_packed_strips_scratch_floats(size_t m, size_t k) {
  const size_t kc = k < PEFT_GEMM_KC ? k : PEFT_GEMM_KC;
  return f32_linear_scratch_floats(m, k) + PEFT_GEMM_NW * kc;
}

// y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ). One entry for every shape; picks GEMV for m ≤ 4.
// The epilogue as a separate pass over y [m,n] holding the plain sums: y += Σ_d t_d·B_d (B streamed row by row),
// then + lora_bias, × row_scale, + bias — the order f32_store_tile__* use, so the bits are the same.
static inline void f32_gemv_epilogue(size_t m, size_t n, float* __restrict y, const Epilogue* ep) {
  for (size_t i = 0; i < m; i++) {
    float* yr = y + i * n;
    for (int32_t d = 0; d < ep->nterms; d++) {
      const LoraTerm& lt = ep->terms[d];
      for (int32_t q = 0; q < lt.r; q++) {
        const float tv = lt.t[i * lt.r + q];
        const float* br = lt.b + q * n;
        for (size_t j = 0; j < n; j++) yr[j] += tv * br[j];
      }
    }
    for (size_t j = 0; j < n; j++) {
      float v = yr[j];
      if (ep->lora_bias) v += ep->lora_bias[j];
      if (ep->row_scale) v *= ep->row_scale[j];
      if (ep->bias) v += ep->bias[j];
      yr[j] = v;
    }
  }
}

template <class Isa, class P>
static inline void f32_linear(size_t m, size_t n, size_t k, const float* __restrict x, const float* __restrict w,
                              float* __restrict y, const Epilogue* ep, float* __restrict scratch) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y);
  if (m <= 4 && ep && ep->nterms > 0) {
    // LoRA at m ≤ 4 (decode): the fused epilogue would read B [r,n] tile by tile, r rows at a stride of n floats —
    // r extra streams beside W's, aliasing in L1 when n is a power of two (≈ +6 % at k = n = 4096, r = 16). So: the
    // plain sums first (no epilogue), then one pass that streams B row by row. Same operations in the same order
    // per element as the fused epilogue, so the result is bit-identical to it; "off" (nterms = 0) never comes here.
    f32_linear<Isa, P>(m, n, k, x, w, y, nullptr, scratch);
    f32_gemv_epilogue(m, n, y, ep);
    return;
  }
  switch (m) {
    case 1: Isa::gemv1(n, k, x, w, y, ep); return;
    case 2: f32_gemv<Isa, 2>(n, k, x, w, y, ep); return;
    case 3: f32_gemv<Isa, 3>(n, k, x, w, y, ep); return;
    case 4: f32_gemv<Isa, 4>(n, k, x, w, y, ep); return;
    default:
      f32_gemm_packed<P>(m, n, k, x, y, ep, scratch,
                         [w, k](size_t j, size_t, size_t p0, size_t) { return WStrip{w + j * k + p0, k}; });
      return;
  }
}

}  // namespace peft
