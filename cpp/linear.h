// linear.h: f32 GEMM / GEMV micro-kernels for nn.Linear, with the LoRA / DoRA epilogue.
//
// Contract
//   y[i,j] = rowScale[j]·( Σ_p x[i,p]·W[j,p]  +  Σ_d Σ_q t_d[i,q]·B_d[q,j]  +  loraBias[j] )  +  bias[j]
//   x [m,k], W [n,k] (nn.Linear layout, not transposed, not packed), y [m,n]; t_d [m,r_d] = s_d·(x·A_d)
//   (see lora.h), B_d [r_d,n]. All row-major f32, strides in *elements* (ldx, ldw, ldy).
//   Every term of the epilogue is optional: with no terms, no loraBias and no rowScale the result is
//   exactly  Σ x·W + bias, computed by the very same code (the "adapter off" path is bit-identical to a
//   plain linear because it *is* the plain linear).
// Reduction order (batch invariance)
//   Every path computes each output element in one order, whatever m is and whichever rows ride along:
//     acc = 0;  acc += x[i,0]·W[j,0];  acc += x[i,1]·W[j,1];  …  acc += x[i,k−1]·W[j,k−1]   (f32, in p order)
//   then the epilogue terms in the order written above. So a row computed in a batch of m equals the same row
//   computed alone, bit for bit (speculative decoding verifies a batch of drafted tokens and must equal
//   token-by-token decoding), and the SIMD kernels equal their scalar twins bit for bit.
// Kernel shape (W is always read in its native [n,k] layout: the long-lived weight is never copied or packed)
//   m ≤ 4, GEMV "transposed form" f32_gemvt_MxNR: 4 rows of W × 4 k-steps are loaded and transposed in registers,
//   so each vector holds 4 outputs (lanes = W rows) and x[i,p] is splatted: the k sum stays sequential per
//   output. W is streamed exactly once; the transposes ride under the memory time of a decode GEMV.
//   m > 4, GEMM "broadcast form" f32_gemm_8xNW: x is packed per call into 8-row panels (scratch from the caller,
//   f32_linear_scratch_floats), W rows are splatted (lanes = rows of x, sequential in p); between k-blocks the
//   accumulators are carried through y (a block starts from y's partial sums), so blocking keeps the order.
// Tails
//   k % 4 is finished by a scalar loop inside the kernel (still in p order); n % 4 rows by the scalar kernel,
//   m % 8 by zero-padded panels. Unaligned pointers are fine (v128.load has no alignment need).
// Accuracy
//   f32 accumulation in k order; |y − y_exact| ≤ ~(k + 2 + r)·2⁻²⁴·Σ|terms|.
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
// (the kernels here pass false: a later k-block starts its sums from y instead, which keeps the k order).
// `ep == nullptr`: not the last k-block, store the partial sums only.
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
// f32_gemm_MRxNR__scalar: out = (prev ? y : 0) + x[0:MR, 0:kc] · W[0:NR, 0:kc]ᵀ in p order, then the epilogue
// (`ep` only on the last k-block).
template <int MR, int NR>
static inline void f32_gemm__scalar(size_t kc, const float* __restrict x, const float* __restrict w,
                                    float* __restrict y, size_t ldx, size_t ldw, size_t ldy, bool prev,
                                    const Epilogue* ep, size_t i0, size_t j0) {
  assert(kc > 0 && x && w && y);
  float out[MR][NR];
  for (int i = 0; i < MR; i++)  // a later k-block continues the sums already in y (the order stays sequential)
    for (int j = 0; j < NR; j++) out[i][j] = prev ? y[i * ldy + j] : 0.0f;
  for (size_t p = 0; p < kc; p++)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) out[i][j] += x[i * ldx + p] * w[j * ldw + p];
  f32_store_tile__scalar<MR, NR>(out, y, ldy, false, ep, i0, j0);
}

// ---------------------------------------------------------------------------------------------------------
// GEMV m = 1..4 (decode, small batches), transposed form. W rows j..j+3 at p..p+3 are loaded as four vectors and
// transposed (8 shuffles), giving c[q] = W[j..j+3, p+q]; then acc[i] += splat(x[i,p+q])·c[q] for q = 0..3 in
// order: each lane is one output, summed in p order, as the GEMM's lanes are. G groups of 4 W rows give G·M
// independent chains (the adds of one chain are serial by construction). Measured at k = n = 4096 (x86-64 V8):
// see the README's batch-invariance table.
static inline void f32_load_4x4t__simd128(const float* __restrict w, size_t ldw, v128_t (&c)[4]) {
  const v128_t r0 = wasm_v128_load(w), r1 = wasm_v128_load(w + ldw);
  const v128_t r2 = wasm_v128_load(w + 2 * ldw), r3 = wasm_v128_load(w + 3 * ldw);
  const v128_t t0 = wasm_i32x4_shuffle(r0, r1, 0, 4, 1, 5), t1 = wasm_i32x4_shuffle(r2, r3, 0, 4, 1, 5);
  const v128_t t2 = wasm_i32x4_shuffle(r0, r1, 2, 6, 3, 7), t3 = wasm_i32x4_shuffle(r2, r3, 2, 6, 3, 7);
  c[0] = wasm_i32x4_shuffle(t0, t1, 0, 1, 4, 5);
  c[1] = wasm_i32x4_shuffle(t0, t1, 2, 3, 6, 7);
  c[2] = wasm_i32x4_shuffle(t2, t3, 0, 1, 4, 5);
  c[3] = wasm_i32x4_shuffle(t2, t3, 2, 3, 6, 7);
}

// y[0:M, j0:j0+4G] = epilogue(x [M,k] · W[0:4G, :]ᵀ), W rows at stride k; ldy = n (also LoRA B's row stride).
template <int M, int G>
static inline void f32_gemvt__simd128(size_t k, const float* __restrict x, const float* __restrict w,
                                      float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0) {
  constexpr int NR = 4 * G;
  v128_t acc[M][G];
  for (int i = 0; i < M; i++)
    for (int g = 0; g < G; g++) acc[i][g] = wasm_f32x4_splat(0.0f);
  size_t p = 0;
  for (; p + 4 <= k; p += 4)
    for (int g = 0; g < G; g++) {
      v128_t c[4];
      f32_load_4x4t__simd128(w + 4 * g * k + p, k, c);
      for (int q = 0; q < 4; q++)
        for (int i = 0; i < M; i++)
          acc[i][g] = wasm_f32x4_add(acc[i][g], wasm_f32x4_mul(wasm_v128_load32_splat(x + i * k + p + q), c[q]));
    }
  alignas(16) float out[M][NR];
  for (int i = 0; i < M; i++)
    for (int g = 0; g < G; g++) wasm_v128_store(&out[i][4 * g], acc[i][g]);
  for (; p < k; p++)
    for (int i = 0; i < M; i++)
      for (int j = 0; j < NR; j++) out[i][j] += x[i * k + p] * w[j * k + p];
  f32_store_tile__simd128<M, NR>(out, y, ldy, false, ep, 0, j0);
}

// GEMV path (m = 1..4): one tile of m rows covers all of x, so each W row is read exactly once.
template <int M>
static inline void f32_gemv__simd128(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
  constexpr int G = M == 1 ? 4 : 2;  // 16 W rows for one x row, 8 for more (accumulators + 4 W vectors ≤ 16 registers)
  size_t j = 0;
  for (; j + 4 * G <= n; j += 4 * G) f32_gemvt__simd128<M, G>(k, x, w + j * k, y + j, n, ep, j);
  for (; j + 4 <= n; j += 4) f32_gemvt__simd128<M, 1>(k, x, w + j * k, y + j, n, ep, j);
  for (; j < n; j++) f32_gemm__scalar<M, 1>(k, x, w + j * k, y + j, k, k, n, false, ep, 0, j);
}

template <int M>
static inline void f32_gemv__scalar(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
  size_t j = 0;
  for (; j + 4 <= n; j += 4) f32_gemm__scalar<M, 4>(k, x, w + j * k, y + j, k, k, n, false, ep, 0, j);
  for (; j < n; j++) f32_gemm__scalar<M, 1>(k, x, w + j * k, y + j, k, k, n, false, ep, 0, j);
}

// Dispatcher. Isa supplies the GEMV for m ≤ 4 and the tile for f32_gemm_columns; the driver does full tiles,
// then narrower ones, no shape branches inside kernels.
struct Simd128 {
  template <int M>
  static inline void gemv(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
    f32_gemv__simd128<M>(n, k, x, w, y, ep);
  }
  template <int MR, int NR>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__scalar<MR, NR>(kc, x, w, y, ldx, ldw, ldy, prev, ep, i0, j0);  // strip drivers only (not a hot path)
  }
};
struct Scalar {
  template <int M>
  static inline void gemv(size_t n, size_t k, const float* x, const float* w, float* y, const Epilogue* ep) {
    f32_gemv__scalar<M>(n, k, x, w, y, ep);
  }
  template <int MR, int NR>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          bool prev, const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__scalar<MR, NR>(kc, x, w, y, ldx, ldw, ldy, prev, ep, i0, j0);
  }
};

// Main tile of f32_gemm_columns (the scalar strip drivers of linear_bf16.h and quant.h).
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
  if (prev)  // continue the sums of the earlier k-blocks (padding rows stay 0)
    for (size_t i = 0; i < rows; i++)
      for (int j = 0; j < NW; j++) out[i][j] = y[i * ldy + j];
  for (size_t p = 0; p < kc; p++)
    for (size_t i = 0; i < PANEL; i++)
      for (int j = 0; j < NW; j++) out[i][j] += xp[p * PANEL + i] * w[j * ldw + p];
  f32_store_panel<NW>(out, rows, y, ldy, false, ep, i0, j0, [](auto& o, float* yy, size_t l, bool pr, const Epilogue* e, size_t ii, size_t jj) {
    f32_store_tile__scalar(o, yy, l, pr, e, ii, jj);
  });
}

template <int NW>
static inline void f32_gemm_8xNW__simd128(size_t kc, const float* __restrict xp, const float* __restrict w,
                                          float* __restrict y, size_t ldw, size_t ldy, size_t rows, bool prev,
                                          const Epilogue* ep, size_t i0, size_t j0) {
  v128_t lo[NW], hi[NW];  // lo[j]: y[i0+0..3, j0+j], hi[j]: y[i0+4..7, j0+j]
  if (prev) {  // continue the sums of the earlier k-blocks, so blocking keeps the sequential order
    alignas(16) float init[NW][PANEL] = {};
    for (size_t i = 0; i < rows; i++)
      for (int j = 0; j < NW; j++) init[j][i] = y[i * ldy + j];
    for (int j = 0; j < NW; j++) {
      lo[j] = wasm_v128_load(&init[j][0]);
      hi[j] = wasm_v128_load(&init[j][4]);
    }
  } else {
    for (int j = 0; j < NW; j++) lo[j] = hi[j] = wasm_f32x4_splat(0.0f);
  }
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
  f32_store_panel<NW>(out, rows, y, ldy, false, ep, i0, j0, [](auto& o, float* yy, size_t l, bool pr, const Epilogue* e, size_t ii, size_t jj) {
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

// The epilogue as a separate pass over rows of y [·,n] holding the plain sums: y += Σ_d t_d·B_d (B streamed row by
// row), then + lora_bias, × row_scale, + bias — the order f32_store_tile__* use, so the bits are the same. Row i of
// the pass is row `rows[i]` of y (i itself when `rows` is null) and row i of every t_d: a route's group of rows,
// wherever they sit in the batch (the SGMV "expand" of a segment), or the whole batch.
static inline void f32_epilogue_rows(size_t m, size_t n, const int32_t* __restrict rows, float* __restrict y,
                                     const Epilogue* ep) {
  for (size_t i = 0; i < m; i++) {
    float* yr = y + (rows ? (size_t)rows[i] : i) * n;
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
static inline void f32_gemv_epilogue(size_t m, size_t n, float* __restrict y, const Epilogue* ep) {
  f32_epilogue_rows(m, n, nullptr, y, ep);
}

// y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ). One entry for every shape; picks GEMV for m ≤ 4.
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
    case 1: Isa::template gemv<1>(n, k, x, w, y, ep); return;
    case 2: Isa::template gemv<2>(n, k, x, w, y, ep); return;
    case 3: Isa::template gemv<3>(n, k, x, w, y, ep); return;
    case 4: Isa::template gemv<4>(n, k, x, w, y, ep); return;
    default:
      f32_gemm_packed<P>(m, n, k, x, y, ep, scratch,
                         [w, k](size_t j, size_t, size_t p0, size_t) { return WStrip{w + j * k + p0, k}; });
      return;
  }
}

}  // namespace peft
