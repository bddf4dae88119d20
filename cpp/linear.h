// linear.h: f32 GEMM / GEMV micro-kernels for nn.Linear, with the LoRA / DoRA epilogue.
//
// Contract
//   y[i,j] = rowScale[j]·( Σ_p x[i,p]·W[j,p]  +  Σ_d Σ_q t_d[i,q]·B_d[q,j]  +  loraBias[j] )  +  bias[j]
//   x [m,k], W [n,k] (nn.Linear layout, not transposed), y [m,n]; t_d [m,r_d] = s_d·(x·A_d)
//   (see lora.h), B_d [r_d,n]. All row-major f32, strides in *elements* (ldx, ldw, ldy).
//   Every term of the epilogue is optional: with no terms, no loraBias and no rowScale the result is
//   exactly  Σ x·W + bias, computed by the very same code (the "adapter off" path is bit-identical to a
//   plain linear because it *is* the plain linear).
// Reduction order (batch invariance)
//   Every path computes each output element in one order, whatever m is and whichever rows ride along: with
//   k4 = k − k mod 4, four lanes l_c = Σ x[i,p]·W[j,p] over p ≡ c (mod 4), p < k4, each summed in p order; then
//   (l_0 + l_2) + (l_1 + l_3); then + x[i,p]·W[j,p] for p = k4 … k−1 in order; then the epilogue in the order
//   above. So a row computed in a batch of m equals the same row computed alone, bit for bit (speculative
//   decoding verifies a batch of drafted tokens and must equal token-by-token decoding), and the SIMD kernels
//   equal their scalar twins bit for bit.
// Kernel shape (W is read in its [n,k] row-major layout, rows ldw ≥ k apart, or in panels (ldw = 0, a layer's resident
// W: linear_panel.h) through the same tiles on another address map; W is never copied or packed per call)
//   "Dot form" everywhere: an accumulator is one output's four lanes (x[i,p:p+4] · W[j,p:p+4]).
//   m ≤ 3, GEMV f32_gemm_MRxNR: MR = m rows of x × NR rows of W (NR = 8 for m = 1), over all of k; W is streamed
//   exactly once.
//   m > 3, GEMM f32_gemm_dot: 2×4 tiles over k-blocks of KC; per strip of 4 W rows the lanes of every row of x are
//   carried between k-blocks in scratch (m·16 floats), so blocking keeps the order; the W strip (4·KC floats) stays
//   in L1 while x streams from L2. A W stored in another form (bf16) is widened strip by strip into scratch. From
//   m = PEFT_F32_PACKED_MIN_M on, a W in panels and a bf16 W take the packed form of the same tiles (x in row pairs,
//   f32_gemm_packed_strips__simd128): the same order.
// Tails
//   k % 4 by the scalar loop after the lane sum; m % MR and n % NR by narrower instantiations of the same template.
//   Unaligned pointers are fine (v128.load has no alignment need).
// Accuracy
//   f32 accumulation; |y − y_exact| ≤ ~(k/4 + 2 + r)·2⁻²⁴·Σ|terms| (4-lane split of the k sum).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>
#include "madd.h"
#include "tuning.h"

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

// Where W's element (j, p) sits, for the tiles below (W rows j of a tile relative to its first row, p relative to the
// tile's k-block; `at` only for p a multiple of the chunk). Both layouts hold the same numbers and every kernel reads
// them in the same order, so the layout never changes a bit. T: float, or uint16_t for a bf16 W (linear_bf16.h).
//   RowMajorOf: nn.Linear's [n,k], rows ldw ≥ k elements apart.
//   PanelOf:    linear_panel.h's panels of PANEL_ROWS = 4 rows, k-chunk by k-chunk: a chunk is 16 bytes of a row (C = 4
//               f32 or 8 bf16), the 4 rows' chunks side by side (one 64-byte line), then the next chunk. `w` points
//               at the tile's first row's first chunk in its panel (a tile never crosses a panel); ldw is unused.
constexpr size_t PANEL_ROWS = 4;
template <class T>
struct RowMajorOf {
  static inline const T* at(const T* w, size_t ldw, size_t j, size_t p) { return w + j * ldw + p; }
  static inline T elem(const T* w, size_t ldw, size_t j, size_t p) { return w[j * ldw + p]; }
};
template <class T>
struct PanelOf {
  static constexpr size_t C = 16 / sizeof(T);
  static inline const T* at(const T* w, size_t, size_t j, size_t p) { return w + PANEL_ROWS * p + C * j; }
  static inline T elem(const T* w, size_t, size_t j, size_t p) { return w[PANEL_ROWS * (p & ~(C - 1)) + C * j + (p & (C - 1))]; }
};
using RowMajorW = RowMajorOf<float>;
using PanelW = PanelOf<float>;

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
// f32_gemm_MRxNR: out = x[0:MR, 0:k] · W[0:NR, 0:k]ᵀ in the order above, then the epilogue. Same signature for
// both ISAs.
template <int MR, int NR, class WL = RowMajorW>
static inline void f32_gemm__scalar(size_t kc, const float* __restrict x, const float* __restrict w,
                                    float* __restrict y, size_t ldx, size_t ldw, size_t ldy,
                                    const Epilogue* ep, size_t i0, size_t j0) {
  assert(kc > 0 && x && w && y);
  float lane[MR][NR][4] = {};
  const size_t k4 = kc & ~(size_t)3;
  for (size_t p = 0; p < k4; p += 4)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++)
        for (int c = 0; c < 4; c++) lane[i][j][c] += x[i * ldx + p + c] * WL::elem(w, ldw, j, p + c);
  float out[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      float s = (lane[i][j][0] + lane[i][j][2]) + (lane[i][j][1] + lane[i][j][3]);
      for (size_t p = k4; p < kc; p++) s += x[i * ldx + p] * WL::elem(w, ldw, j, p);
      out[i][j] = s;
    }
  f32_store_tile__scalar<MR, NR>(out, y, ldy, false, ep, i0, j0);
}

template <int MR, int NR, class WL = RowMajorW>
static inline void f32_gemm__simd128(size_t kc, const float* __restrict x, const float* __restrict w,
                                     float* __restrict y, size_t ldx, size_t ldw, size_t ldy,
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
      const v128_t wv = wasm_v128_load(WL::at(w, ldw, j, p));
      for (int i = 0; i < MR; i++) acc[i][j] = f32x4_madd(xv[i], wv, acc[i][j]);
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
      for (int j = 0; j < NR; j++) out[i][j] += x[i * ldx + p] * WL::elem(w, ldw, j, p);
  f32_store_tile__simd128<MR, NR>(out, y, ldy, false, ep, i0, j0);
}


// ---------------------------------------------------------------------------------------------------------
// GEMV path (m ≤ PEFT_F32_GEMV_MAX_M): one tile of m rows covers all of x, so each W row is read exactly once. m = 1 takes 8 W
// rows per tile (8 independent accumulators keep the adds off one chain; 10 registers).
struct Simd128 {
  template <int MR, int NR, class WL = RowMajorW>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__simd128<MR, NR, WL>(kc, x, w, y, ldx, ldw, ldy, ep, i0, j0);
  }
};
struct Scalar {
  template <int MR, int NR, class WL = RowMajorW>
  static inline void gemm(size_t kc, const float* x, const float* w, float* y, size_t ldx, size_t ldw, size_t ldy,
                          const Epilogue* ep, size_t i0, size_t j0) {
    f32_gemm__scalar<MR, NR, WL>(kc, x, w, y, ldx, ldw, ldy, ep, i0, j0);
  }
};
// Tags naming the GEMM form of f32_linear (kept for the exports' template arguments).
struct PackedSimd128 {};
struct PackedScalar {};


// Touch-ahead for the m = 1 GEMVs (f32 here, bf16 in linear_bf16.h) on short rows. A tile streams NR rows at once;
// rows under 4 KiB are stored unpadded, so the next tile is one contiguous block right after this one, but a short row
// ends before the hardware prefetcher has ramped up on it. wasm has no prefetch instruction, so each k-step also does
// plain loads of as many lines of the next tile as the step consumes: the next tile comes in as one sequential stream
// while this one computes. The loads feed a sink stored to a volatile (no compiler drops them) and never touch the
// sums, so the bits are the same. Measured (W cold, 2-core Xeon, ÷ without, one run each): f32 k = 256 1.30–1.34×,
// 448 1.25×, 512 1.28×, 640 1.22×, 768 1.07×, 896 0.90×; bf16 k = 256 1.65×, 896 1.13–1.16× (n = 151936: 1.16×),
// 1536 0.91×, 1792 1.00×; two lines a line consumed 0.86×. Hence rows of at most 2560 bytes. The short-row drivers
// are out of line with their own tile instantiations: sharing the long-row GEMV's tile function cost it 25 %.
constexpr size_t GEMV_TOUCH_MAX_ROW_BYTES = 2560;
// One k-step's touch: LINES 64-byte lines from `ahead` (advanced past them) folded into `sink`.
template <int LINES>
static inline void touch_lines(const uint8_t*& ahead, v128_t& sink) {
  for (int l = 0; l < LINES; l++, ahead += 64) sink = wasm_v128_or(sink, wasm_v128_load(ahead));
}
// After the k-loop: the sink stored to a volatile, so no compiler drops the touching loads.
static inline void touch_keep(v128_t sink) {
  volatile v128_t keep;
  keep = sink;
  (void)keep;
}

// V8's TurboFan keeps a wasm loop's loads in order but places its pure arithmetic late, so in a GEMV k-step with
// nothing effectful between rows it issues all NR·U W loads first and holds them: the loaded vectors + x + NR
// accumulators + the product exceed x64's 16 xmm registers and spill (seen in --print-wasm-code). A store of each row's
// accumulator after its multiply-adds, to a volatile stack slot nobody reads, puts that row's arithmetic on the effect
// chain between its loads and the next row's, so each row's W dies before the next row loads. Same bits. Measured on
// AMD Zen 5 (Node 20, ÷ without): W cold 16×2 1.03–1.08×, 8×2 1.01–1.05×, k = 4864 n = 896 1.14×; W in L3 (k = n =
// 1024) 1.09–1.30×. Not in the relaxed build: its fused multiply-add needs no product register, and the pin cost it
// 0.86–0.90× (Deno 2.9); nor in the bf16 GEMV (0.95–1.03×).
#ifdef __wasm_relaxed_simd__
constexpr bool GEMV1_SCHEDULE_PIN = false;
#else
constexpr bool GEMV1_SCHEDULE_PIN = true;
#endif

#ifndef PEFT_GEMV1_NR
#define PEFT_GEMV1_NR 16
#endif
#ifndef PEFT_GEMV1_U
#define PEFT_GEMV1_U 2
#endif
// m = 1: NR W rows at once, k unrolled by 4·U; every row keeps one accumulator (its four lanes), so the order is the
// dot form's. Measured (x86-64 V8, Node 20, W cycled cold, 15 rounds, GB/s of W streamed; emcc / clang-19 builds):
// k = n = 4096: NR 8 U 8 18.5–19.6 / 20.1, NR 16 U 4 21.8–22.5 / 21.4, NR 16 U 2 24.3 / 23.3, NR 8 U 2 21.4,
// NR 32 U 2 10.7 (spills); k 3072 n 8192: 8×8 17.8–19.1 / 18.6, 16×2 21.6 / 22.4; k 11008: 8×8 24.7, 16×2 23.1.
// More rows in flight hide the power-of-two row stride (every row's line maps to the same L1 set) better (Xeon); on
// AMD Zen 3 the 16 accumulators spill and 8 × 2 is 1.3–1.4× faster: both tiles are built, tuning.h picks at run time.
template <int NR, int U, bool TOUCH = false>
static inline void f32_gemv1__simd128(size_t k, const float* __restrict x, const float* __restrict w, size_t ldw,
                                      float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0,
                                      [[maybe_unused]] const uint8_t* ahead = nullptr) {
  v128_t acc[NR];
  for (int j = 0; j < NR; j++) acc[j] = wasm_f32x4_splat(0.0f);
  const size_t k4 = k & ~(size_t)3;
  size_t p = 0;
  [[maybe_unused]] v128_t sink = wasm_i32x4_splat(0);
  alignas(16) v128_t pin_slots[NR];
  [[maybe_unused]] volatile v128_t* pin = pin_slots;  // GEMV1_SCHEDULE_PIN
  for (; p + 4 * U <= k4; p += 4 * U) {
    if constexpr (TOUCH) touch_lines<NR * U / 4>(ahead, sink);  // the lines this step consumes: NR rows × 16U bytes
    v128_t xv[U];
    for (int u = 0; u < U; u++) xv[u] = wasm_v128_load(x + p + 4 * u);
    for (int j = 0; j < NR; j++) {
      for (int u = 0; u < U; u++) acc[j] = f32x4_madd(xv[u], wasm_v128_load(w + j * ldw + p + 4 * u), acc[j]);
      if constexpr (GEMV1_SCHEDULE_PIN) pin[j] = acc[j];
    }
  }
  for (; p < k4; p += 4) {
    const v128_t xv = wasm_v128_load(x + p);
    for (int j = 0; j < NR; j++) acc[j] = f32x4_madd(xv, wasm_v128_load(w + j * ldw + p), acc[j]);
  }
  alignas(16) float out[1][NR];
  for (int j = 0; j < NR; j++) {
    const v128_t a = acc[j];
    float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
              (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
    for (size_t q = k4; q < k; q++) s += x[q] * w[j * ldw + q];
    out[0][j] = s;
  }
  if constexpr (TOUCH) touch_keep(sink);
  f32_store_tile__simd128<1, NR>(out, y, ldy, false, ep, 0, j0);
}
// m = 1 on short rows stored contiguously (ldw = k, rows ≤ GEMV_TOUCH_MAX_ROW_BYTES): every tile loads the next tile's
// lines as it consumes its own (see GEMV_TOUCH_MAX_ROW_BYTES); the last whole tile touches its own again.
template <int NR, int U>
__attribute__((noinline)) static void f32_gemv1_short__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                              const float* x, const float* w, float* y,
                                                              const Epilogue* ep) {
  size_t j = j0;
  for (; j + NR <= j1; j += NR) {
    const float* wj = w + j * k;
    f32_gemv1__simd128<NR, U, true>(k, x, wj, k, y + j, n, ep, j, (const uint8_t*)(j + 2 * NR <= j1 ? wj + NR * k : wj));
  }
  for (; j + 4 <= j1; j += 4) f32_gemm__simd128<1, 4>(k, x, w + j * k, y + j, k, k, n, ep, 0, j);
  for (; j < j1; j++) f32_gemm__simd128<1, 1>(k, x, w + j * k, y + j, k, k, n, ep, 0, j);
}
// m = 1 on any rows (W rows ldw apart), NR × U tiles: out of line, one copy per tile (each its own registers).
template <int NR, int U>
__attribute__((noinline)) static void f32_gemv1_long__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                             const float* x, const float* w, size_t ldw, float* y,
                                                             const Epilogue* ep) {
  size_t j = j0;
  for (; j + NR <= j1; j += NR) f32_gemv1__simd128<NR, U>(k, x, w + j * ldw, ldw, y + j, n, ep, j);
  for (; j + 4 <= j1; j += 4) f32_gemm__simd128<1, 4>(k, x, w + j * ldw, y + j, k, ldw, n, ep, 0, j);
  for (; j < j1; j++) f32_gemm__simd128<1, 1>(k, x, w + j * ldw, y + j, k, ldw, n, ep, 0, j);
}
// One m = 1 GEMV tile as a type: NR rows × U 4-wide k-steps per turn, on short (touch-ahead) or long rows.
template <int NR_, int U_, bool SHORT_>
struct Gemv1Tile {
  static constexpr int NR = NR_, U = U_;
  static constexpr bool SHORT = SHORT_;
};
template <class Tile, class Drive>
static inline void gemv1_call(const Epilogue* ep, Drive& drive) {
  if (ep) drive(Tile{}, ep);
  else drive(Tile{}, nullptr);
}
// Calls drive(Gemv1Tile<…>{}, ep) with the tile `alt` names (tuning.h: the build's NR × U or the alternative) on short
// or long rows. Each driver gets two call sites (ep or none): wasm-opt inlines a function called once, whatever its
// attributes, and the out-of-line drivers keep V8's register allocation of each tile to itself.
template <int NR, int U, class Drive>
static inline void gemv1_tuned(bool alt, bool short_rows, const Epilogue* ep, Drive drive) {
  if (short_rows) {
    if (alt) gemv1_call<Gemv1Tile<GEMV1_ALT_NR, GEMV1_ALT_U, true>>(ep, drive);
    else gemv1_call<Gemv1Tile<NR, U, true>>(ep, drive);
  } else {
    if (alt) gemv1_call<Gemv1Tile<GEMV1_ALT_NR, GEMV1_ALT_U, false>>(ep, drive);
    else gemv1_call<Gemv1Tile<NR, U, false>>(ep, drive);
  }
}
// The m = 1 SIMD128 GEMV: short or long rows, the tile g_tuning.gemv1_f32 names.
static inline void f32_gemv1_tuned__simd128(size_t n, size_t k, size_t j0, size_t j1, const float* x, const float* w,
                                            size_t ldw, float* y, const Epilogue* ep) {
  gemv1_tuned<PEFT_GEMV1_NR, PEFT_GEMV1_U>(g_tuning.gemv1_f32 != 0, ldw == k && 4 * k <= GEMV_TOUCH_MAX_ROW_BYTES, ep,
                                           [&](auto tile, const Epilogue* e) {
                                             using T = decltype(tile);
                                             if constexpr (T::SHORT) f32_gemv1_short__simd128<T::NR, T::U>(n, k, j0, j1, x, w, y, e);
                                             else f32_gemv1_long__simd128<T::NR, T::U>(n, k, j0, j1, x, w, ldw, y, e);
                                           });
}
// Columns [j0, j1) of y [M,n]. Every tile width computes each element in the same order, so how a range is cut
// into tiles (or a layer's columns into ranges, one per thread) never changes a bit. (SIMD128 at m = 1 takes
// f32_gemv1_tuned__simd128 instead.)
template <class Isa, int M>
static inline void f32_gemv(size_t n, size_t k, size_t j0, size_t j1, const float* x, const float* w, size_t ldw,
                            float* y, const Epilogue* ep) {
  size_t j = j0;
  if (M == 1)
    for (; j + PEFT_GEMV1_NR <= j1; j += PEFT_GEMV1_NR) Isa::template gemm<1, PEFT_GEMV1_NR>(k, x, w + j * ldw, y + j, k, ldw, n, ep, 0, j);
  for (; j + 4 <= j1; j += 4) Isa::template gemm<M, 4>(k, x, w + j * ldw, y + j, k, ldw, n, ep, 0, j);
  for (; j < j1; j++) Isa::template gemm<M, 1>(k, x, w + j * ldw, y + j, k, ldw, n, ep, 0, j);
}

// Up to this m the GEMV; above, f32_gemm_dot. Measured (W cold, GEMM ÷ GEMV in one run): m = 4 1.07–1.22×
// (k = 896 n = 4864, k = n = 4096); m = 3 0.68× / 1.05×.
#ifndef PEFT_F32_GEMV_MAX_M
#define PEFT_F32_GEMV_MAX_M 3
#endif
// Tile of the scalar column driver.
#ifndef PEFT_GEMM_MR
#define PEFT_GEMM_MR 3
#endif
#ifndef PEFT_GEMM_NR
#define PEFT_GEMM_NR 4
#endif

// Rows [0, m) × columns [j0, j0+NR), over all of k: full MR tiles, then one narrower tile.
template <class Isa, int MR, int NR, class WL = RowMajorW>
static inline void f32_gemm_column(size_t m, size_t k, const float* x, const float* w, size_t ldw, float* y, size_t n,
                                   const Epilogue* ep, size_t j0) {
  size_t i = 0;
  for (; i + MR <= m; i += MR) Isa::template gemm<MR, NR, WL>(k, x + i * k, w, y + i * n + j0, k, ldw, n, ep, i, j0);
  switch (m - i) {
    case 0: break;
    case 1: Isa::template gemm<1, NR, WL>(k, x + i * k, w, y + i * n + j0, k, ldw, n, ep, i, j0); break;
    case 2: Isa::template gemm<2, NR, WL>(k, x + i * k, w, y + i * n + j0, k, ldw, n, ep, i, j0); break;
    default: assert(false);
  }
}

// Columns [j_begin, j_end) of y for all m rows, with W rows starting at `w` (= row j_begin) at stride ldw: the scalar
// twins' driver (f32, and the strips of linear_bf16.h and quant.h). No k-blocking: the order is the kernel's.
template <class Isa>
static inline void f32_gemm_columns(size_t m, size_t n, size_t k, size_t j_begin, size_t j_end, const float* x,
                                    const float* w, size_t ldw, float* y, const Epilogue* ep) {
  constexpr int MR = PEFT_GEMM_MR, NR = PEFT_GEMM_NR;
  static_assert(MR == 3, "f32_gemm_column's tail handles up to 2 rows");
  size_t j = j_begin;
  for (; j + NR <= j_end; j += NR) f32_gemm_column<Isa, MR, NR>(m, k, x, w + (j - j_begin) * ldw, ldw, y, n, ep, j);
  for (; j < j_end; j++) f32_gemm_column<Isa, MR, 1>(m, k, x, w + (j - j_begin) * ldw, ldw, y, n, ep, j);
}

// ---------------------------------------------------------------------------------------------------------
// GEMM path (m > PEFT_F32_GEMV_MAX_M), f32_gemm_dot: per strip of NR = 4 W rows, k in blocks of KC (a multiple of 4); each 2×4 tile
// of a block starts from the lanes the previous block left in P [m][4] (v128 each) and stores them back; after
// the last block the lanes are summed, the k tail added, the epilogue applied. 8 accumulators + 2 x + 1 W vector
// fit the 15 registers V8 gives wasm SIMD on x86-64 (a 3×4 tile spills).
// KC: 512, or PEFT_GEMM_KC_SMALL = 128 for m ≤ 32 (a 2 KiB W block; 4 KiB of x at m = 8). Measured (k = n = 4096, W
// cold, ÷ KC 512 in the same run): KC 128 1.21× at m = 8, 1.11× at m = 16, 1.01× at m = 32, 0.97× at m = 64 and
// 256; KC 256 1.01× at m = 8; KC 64 1.14× at m = 8, 0.95× at m = 64. Loading the block two ahead in the second tile
// ("touch-ahead": wasm has no prefetch) lost 5–10 % at every KC. The order is KC's business only through the lanes
// carried between blocks, so every KC gives the same bits.
#ifndef PEFT_GEMM_KC
#define PEFT_GEMM_KC 512
#endif
#ifndef PEFT_GEMM_KC_SMALL
#define PEFT_GEMM_KC_SMALL 128
#endif
static_assert(PEFT_GEMM_KC_SMALL % 4 == 0 && PEFT_GEMM_KC_SMALL <= PEFT_GEMM_KC, "k-blocks must keep the lanes aligned");
static_assert(PEFT_GEMM_KC % 4 == 0, "k-blocks must keep the lanes aligned");

// The rows×kc block of W at (row j, column p0) as the GEMM reads it: a pointer and a row stride.
struct WStrip {
  const float* w;
  size_t ldw;
};

// lanes[i·4 + j] += Σ over kc columns of x[i, p:p+4] ⊙ W[j, p:p+4] (one k-step: MR x loads, NR W loads, MR·NR
// multiply-adds), the MR × NR tile of the GEMM's dot form. The loads sit at constant offsets from pointers that
// advance, not at an index scaled per row: V8 (x86-64) then spends 25 instructions on a 2 × 4 k-step, not 30 (a
// `lea` per x row and a shift for W each step). Two steps per turn: clang's unroll keeps a loop-exit test between
// them, which also keeps TurboFan from hoisting the second step's loads above the first's arithmetic (4 steps
// unrolled by hand without the tests spilled the accumulators: 0.52–0.75×). Measured (AMD Zen 4, one thread, m = 64,
// k = 512, n = 32, all in L2, ÷ the indexed loop in one run): Node 20 1.08–1.13×, Deno 2.9 1.08–1.11×; same bits.
template <int MR, int NR, class WL = RowMajorW>
static inline void f32_gemm_dot_block__simd128(size_t kc, const float* __restrict x, size_t ldx, const float* __restrict w,
                                               size_t ldw, v128_t* __restrict lanes) {
  v128_t acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = wasm_v128_load(&lanes[i * 4 + j]);
  const float* xr[MR];
  for (int i = 0; i < MR; i++) xr[i] = x + i * ldx;
  const float* const xend = x + kc;
  const float* wp = w;
#pragma clang loop unroll_count(2)
  while (xr[0] < xend) {
    v128_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = wasm_v128_load(xr[i]);
    for (int j = 0; j < NR; j++) {
      const v128_t wv = wasm_v128_load(WL::at(wp, ldw, j, 0));
      for (int i = 0; i < MR; i++) acc[i][j] = f32x4_madd(xv[i], wv, acc[i][j]);
    }
    for (int i = 0; i < MR; i++) xr[i] += 4;
    wp = WL::at(wp, ldw, 0, 4);
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) wasm_v128_store(&lanes[i * 4 + j], acc[i][j]);
}

template <int NR, class WL = RowMajorW>
static inline void f32_gemm_dot_rows__simd128(size_t m, size_t kc, const float* x, size_t ldx, const float* w,
                                              size_t ldw, v128_t* lanes) {
  size_t i = 0;
  for (; i + 2 <= m; i += 2) f32_gemm_dot_block__simd128<2, NR, WL>(kc, x + i * ldx, ldx, w, ldw, lanes + i * 4);
  if (i < m) f32_gemm_dot_block__simd128<1, NR, WL>(kc, x + i * ldx, ldx, w, ldw, lanes + i * 4);
}

// Lanes → sums, + the k tail (W[j, p] from `wtail(j, p)`), then the epilogue, for NR columns at j0 of every row.
template <int NR, class Tail>
static inline void f32_gemm_dot_finish__simd128(size_t m, size_t n, size_t k, const float* x, const v128_t* lanes,
                                                float* y, const Epilogue* ep, size_t j0, Tail wtail) {
  const size_t k4 = k & ~(size_t)3;
  for (size_t i = 0; i < m; i++) {
    float out[1][NR];
    for (int j = 0; j < NR; j++) {
      const v128_t a = lanes[i * 4 + j];
      float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      for (size_t p = k4; p < k; p++) s += x[i * k + p] * wtail(j0 + j, p);
      out[0][j] = s;
    }
    f32_store_tile__simd128<1, NR>(out, y + i * n + j0, n, false, ep, i, j0);
  }
}

// The f32 GEMM on a panel W from this m on: x packed in row pairs, each panel's k-block swept in place by the packed
// 2×4 tile (f32_gemm_packed_strips__simd128, linear_panel.h), in k-blocks of PEFT_F32_PACKED_KC (a 16·KC-byte block of
// the panel and a row pair of x, 8·KC bytes, stay in L1). Measured (AMD Zen 5, Node 20, one thread, W cold, ÷ the
// unpacked f32_gemm_dot in one process): k = n = 4096 m = 40 / 64 / 256 1.08 / 1.07–1.10 / 1.08–1.13×, k = n = 2048
// m = 64 / 256 1.09–1.10 / 1.09–1.11×; KC 512 1.02–1.07×, KC 2048 as 1024; m = 17–32 0.98–1.12× (k = n = 2048 gains,
// 4096 level), m = 8 / 16 0.95 / 0.99× (the panel groups stay); two threads at m = 32 / 64 / 256 1.08 / 0.97–1.05 /
// 1.00–1.04×. Row blocks of 512 or 256 KiB instead of 1 MiB (f32_gemm_row_block) lost 2–9 %.
#ifndef PEFT_F32_PACKED_MIN_M
#define PEFT_F32_PACKED_MIN_M 17
#endif
#ifndef PEFT_F32_PACKED_KC
#define PEFT_F32_PACKED_KC 1024
#endif
static_assert(PEFT_F32_PACKED_KC % 4 == 0, "k-blocks must keep the lanes aligned");

// W strips a panel W's GEMM sweeps per k-block at m < PEFT_F32_PACKED_MIN_M (linear_panel.h f32_gemm_dot_panels).
#ifndef PEFT_PANEL_GROUP
#define PEFT_PANEL_GROUP 8
#endif

// Rows of x per GEMM call: every strip of W sweeps the whole block of x (rows × k floats), so a block larger than L2
// streams x from L3 once per 4 columns. Even, so the 2-row tiles stay whole. Measured (k = n = 4096, W cold, blocked
// ÷ unblocked in one run, Xeon with 2 MiB L2): m = 256 1.12–1.37× at 1 MiB blocks, 1.12× at 512 KiB; m = 64 (one
// block) level. The caller cuts the batch (row blocks carry no state: each row's order is its own), so the tiles'
// code is untouched.
#ifndef PEFT_GEMM_XBLOCK_BYTES
#define PEFT_GEMM_XBLOCK_BYTES (1024 * 1024)
#endif
static inline size_t f32_gemm_row_block(size_t m, size_t k) {
  size_t mb = ((size_t)PEFT_GEMM_XBLOCK_BYTES / 4 / k) & ~(size_t)1;
  if (mb < 8) mb = 8;
  return mb < m ? mb : m;
}

// Scratch floats the GEMM needs: the lanes P [m][4] v128 (m·16 floats), then one widened W strip [4, KC].
// Floats of the LoRA epilogue's packed B chunk (f32_epilogue_tiles__simd128), + 4 for its alignment.
constexpr size_t EPI_PACK_FLOATS = 16384;
static inline size_t f32_linear_scratch_floats(size_t m, size_t k) {
  const size_t mb = f32_gemm_row_block(m, k);  // one block of rows at a time
  const size_t kc = k < PEFT_GEMM_KC ? k : PEFT_GEMM_KC;
  // + 4: P is aligned to 16 bytes inside the block. A panel W below PEFT_F32_PACKED_MIN_M may carry the lanes of
  // PANEL_GROUP strips, or (tuning.h panel_sweep 2, and from PEFT_F32_PACKED_MIN_M on) the lanes followed by x in
  // row pairs (linear_panel.h).
  const size_t packed = mb * 16 + (mb & ~(size_t)1) * k;
  const size_t groups = mb < PEFT_F32_PACKED_MIN_M ? mb * 16 * PEFT_PANEL_GROUP : 0;
  const size_t gemm = (packed > groups ? packed : groups) + 4 * kc + 4;
  const size_t epi = m > 4 ? EPI_PACK_FLOATS + 4 : 0;
  return gemm > epi ? gemm : epi;
}
static inline size_t f32_packed_strips_scratch_floats(size_t m, size_t k) { return f32_linear_scratch_floats(m, k); }

// y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ) in dot form; `strip(j, rows, p0, kc)` gives W's rows×kc block at (j, p0)
// (an f32 W is its own strip; bf16 widens it into ws = scratch after P), `wtail(j, p)` one element of W.
// Columns [j0, j1) only (the rest of y untouched): one thread's share of a layer.
template <class WL = RowMajorW, class Strip, class Tail>
static inline void f32_gemm_dot(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* x, float* y,
                                const Epilogue* ep, float* scratch, Strip strip, Tail wtail) {
  v128_t* lanes = (v128_t*)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
  const size_t k4 = k & ~(size_t)3;
  const size_t KC = m <= 32 ? PEFT_GEMM_KC_SMALL : PEFT_GEMM_KC;
  size_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    for (size_t q = 0; q < m * 4; q++) lanes[q] = wasm_f32x4_splat(0.0f);
    for (size_t p0 = 0; p0 < k4; p0 += KC) {
      const size_t kc = p0 + KC < k4 ? KC : k4 - p0;
      const WStrip s = strip(j, (size_t)4, p0, kc);
      f32_gemm_dot_rows__simd128<4, WL>(m, kc, x + p0, k, s.w, s.ldw, lanes);
    }
    f32_gemm_dot_finish__simd128<4>(m, n, k, x, lanes, y, ep, j, wtail);
  }
  for (; j < j1; j++) {
    for (size_t q = 0; q < m * 4; q++) lanes[q] = wasm_f32x4_splat(0.0f);
    for (size_t p0 = 0; p0 < k4; p0 += KC) {
      const size_t kc = p0 + KC < k4 ? KC : k4 - p0;
      const WStrip s = strip(j, (size_t)1, p0, kc);
      f32_gemm_dot_rows__simd128<1, WL>(m, kc, x + p0, k, s.w, s.ldw, lanes);
    }
    f32_gemm_dot_finish__simd128<1>(m, n, k, x, lanes, y, ep, j, wtail);
  }
}

// The f32 W GEMM as one function (the kernels of every caller share one compiled copy; its tiles inline).
__attribute__((noinline)) static void f32_gemm_dot_f32(size_t m, size_t n, size_t k, size_t j0, size_t j1,
                                                       const float* __restrict x, const float* __restrict w, size_t ldw,
                                                       float* __restrict y, const Epilogue* ep, float* __restrict scratch) {
  f32_gemm_dot(m, n, k, j0, j1, x, y, ep, scratch,
               [w, ldw](size_t j, size_t, size_t p0, size_t) { return WStrip{w + j * ldw + p0, ldw}; },
               [w, ldw](size_t j, size_t p) { return w[j * ldw + p]; });
}

// Packed operands of the GEMM. Dot form as f32_gemm_dot (same lanes, same p order, same (l0 + l2) + (l1 + l3),
// same tail and epilogue: the same bits), with both operands laid out in the order the 2×4 tile reads them, so the
// k-loop walks two pointers with constant offsets (strided, V8 spends an address add per load: 31 instructions per
// k-step instead of 26; on a core whose two mul and two add ports are the bound it measures the same).
//   W strip: ws [kc/4][4 rows][4]: the 4 rows' columns p..p+3 side by side (a k-block of an f32 panel is one as it
//   lies; a bf16 W's block is widened into scratch, linear_bf16.h).
//   x panel: xp [m/2][k4/4][2 rows][4]: each row pair's columns p..p+3 side by side, packed once per call (m·k floats
//   copied, against n/4 sweeps of it); an odd last row is read in place (one row is already contiguous).

// Floats of the x panel of m rows, and the pair of rows (i, i+1) in it (i even): where a row block starting at row i
// finds its pairs in an x panel packed for all rows.
static inline size_t f32_row_pairs_floats(size_t m, size_t k) { return (m & ~(size_t)1) * (k & ~(size_t)3); }
static inline const float* f32_row_pair(const float* xp, size_t i, size_t k) { return xp + i * (k & ~(size_t)3); }

// xp [m/2][k4/4][2][4] from x [m,k]: the pairs of rows (0,1), (2,3), …; columns 0 … k4−1.
static inline void f32_pack_row_pairs__simd128(size_t m, size_t k, const float* __restrict x, float* __restrict xp) {
  const size_t k4 = k & ~(size_t)3;
  for (size_t i = 0; i + 2 <= m; i += 2) {
    const float* x0 = x + i * k;
    const float* x1 = x0 + k;
    float* d = xp + i * k4;
    for (size_t p = 0; p < k4; p += 4) {
      wasm_v128_store(d + 2 * p, wasm_v128_load(x0 + p));
      wasm_v128_store(d + 2 * p + 4, wasm_v128_load(x1 + p));
    }
  }
}

// One MR×4 tile over one k-block: lanes[i][j] (+)= Σ_p x_i[p:p+4]·W_j[p:p+4], MR rows from `x` (MR vectors per 4
// columns: the packed pair, or the row itself), the 4 W rows from the interleaved strip `ws`. FROM_LANES: start from
// the lanes the previous block left (else from zero); TO_LANES: store them for the next block, else (last block)
// reduce each row's four accumulators to sum[i] = the (l0 + l2) + (l1 + l3) of its four columns (a 4×4 transpose
// folded into the adds, as f32_gemm__simd128) in registers.
template <int MR, bool FROM_LANES, bool TO_LANES>
static inline void f32_gemm_packed_tile__simd128(size_t kc, const float* __restrict x, const float* __restrict ws,
                                                 v128_t* __restrict lanes, v128_t (&sum)[MR]) {
  v128_t acc[MR][4];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < 4; j++) acc[i][j] = FROM_LANES ? wasm_v128_load(&lanes[i * 4 + j]) : wasm_f32x4_splat(0.0f);
  const float* const end = ws + 4 * kc;
  for (; ws < end; ws += 16, x += 4 * MR) {
    v128_t xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = wasm_v128_load(x + 4 * i);
    for (int j = 0; j < 4; j++) {
      const v128_t wv = wasm_v128_load(ws + 4 * j);
      for (int i = 0; i < MR; i++) acc[i][j] = f32x4_madd(xv[i], wv, acc[i][j]);
    }
  }
  if constexpr (TO_LANES) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < 4; j++) wasm_v128_store(&lanes[i * 4 + j], acc[i][j]);
  } else {
    for (int i = 0; i < MR; i++) {
      const v128_t a0 = acc[i][0], a1 = acc[i][1], a2 = acc[i][2], a3 = acc[i][3];
      const v128_t s01 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
      const v128_t s23 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
      sum[i] = wasm_f32x4_add(wasm_i32x4_shuffle(s01, s23, 0, 1, 4, 5), wasm_i32x4_shuffle(s01, s23, 2, 3, 6, 7));
    }
  }
}

// Sums of one MR×4 tile → + the k tail (p = k4 … k−1 in order, rows of the original x, W[j, p] = wtail(j, p)) →
// epilogue → y[i0:, j:j+4].
template <int MR, class Tail>
static inline void f32_gemm_packed_store__simd128(v128_t (&sum)[MR], size_t n, size_t k, const float* x, float* y,
                                                  const Epilogue* ep, size_t i0, size_t j, Tail wtail) {
  const size_t k4 = k & ~(size_t)3;
  float* yr = y + i0 * n + j;
  if (!ep && k4 == k) {
    for (int i = 0; i < MR; i++) wasm_v128_store(yr + i * n, sum[i]);
    return;
  }
  alignas(16) float out[MR][4];
  for (int i = 0; i < MR; i++) wasm_v128_store(out[i], sum[i]);
  for (int i = 0; i < MR; i++)
    for (int c = 0; c < 4; c++)
      for (size_t p = k4; p < k; p++) out[i][c] += x[(i0 + i) * k + p] * wtail(j + c, p);
  f32_store_tile__simd128<MR, 4>(out, yr, n, false, ep, i0, j);
}

// Whole strips of 4 W rows from column j while they fit before j1 (returns where it stopped): per strip, per k-block
// of KC columns, `strip4(j, p0, kc)` gives the block as [kc/4][4][4]; every row pair of the packed x (`xp`, from
// f32_pack_row_pairs__simd128) and an odd last row (read in place) sweep it; the last block reduces and stores.
// `lanes`: [m][4] v128 carried between blocks.
template <class Strip4, class Tail>
static inline size_t f32_gemm_packed_strips__simd128(size_t m, size_t n, size_t k, size_t KC, size_t j, size_t j1,
                                                     const float* __restrict x, const float* __restrict xp,
                                                     float* __restrict y, const Epilogue* ep, v128_t* __restrict lanes,
                                                     Strip4 strip4, Tail wtail) {
  const size_t k4 = k & ~(size_t)3, m2 = m & ~(size_t)1;
  if (k4 == 0) return j;
  v128_t sum2[2], sum1[1];
  for (; j + 4 <= j1; j += 4) {
    for (size_t p0 = 0; p0 < k4; p0 += KC) {
      const size_t kc = p0 + KC < k4 ? KC : k4 - p0;
      const bool first = p0 == 0, last = p0 + kc == k4;
      const float* ws = strip4(j, p0, kc);
      for (size_t i = 0; i < m2; i += 2) {
        const float* xi = xp + i * k4 + 2 * p0;
        v128_t* li = lanes + i * 4;
        if (first && last) f32_gemm_packed_tile__simd128<2, false, false>(kc, xi, ws, li, sum2);
        else if (first) f32_gemm_packed_tile__simd128<2, false, true>(kc, xi, ws, li, sum2);
        else if (!last) f32_gemm_packed_tile__simd128<2, true, true>(kc, xi, ws, li, sum2);
        else f32_gemm_packed_tile__simd128<2, true, false>(kc, xi, ws, li, sum2);
        if (last) f32_gemm_packed_store__simd128<2>(sum2, n, k, x, y, ep, i, j, wtail);
      }
      if (m2 < m) {
        const float* xi = x + m2 * k + p0;
        v128_t* li = lanes + m2 * 4;
        if (first && last) f32_gemm_packed_tile__simd128<1, false, false>(kc, xi, ws, li, sum1);
        else if (first) f32_gemm_packed_tile__simd128<1, false, true>(kc, xi, ws, li, sum1);
        else if (!last) f32_gemm_packed_tile__simd128<1, true, true>(kc, xi, ws, li, sum1);
        else f32_gemm_packed_tile__simd128<1, true, false>(kc, xi, ws, li, sum1);
        if (last) f32_gemm_packed_store__simd128<1>(sum1, n, k, x, y, ep, m2, j, wtail);
      }
    }
  }
  return j;
}

// The epilogue's per-column part on y_row[j0:j1] (after the LoRA terms): + lora_bias, × row_scale, + bias, each
// element as f32_store_tile__* computes it (elementwise, so 4 at a time gives the same bits).
static inline void f32_epilogue_affine_row(float* __restrict yr, size_t j0, size_t j1, const Epilogue* ep) {
  if (!ep->lora_bias && !ep->row_scale && !ep->bias) return;
  size_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    v128_t v = wasm_v128_load(yr + j);
    if (ep->lora_bias) v = wasm_f32x4_add(v, wasm_v128_load(ep->lora_bias + j));
    if (ep->row_scale) v = wasm_f32x4_mul(v, wasm_v128_load(ep->row_scale + j));
    if (ep->bias) v = wasm_f32x4_add(v, wasm_v128_load(ep->bias + j));
    wasm_v128_store(yr + j, v);
  }
  for (; j < j1; j++) {
    float v = yr[j];
    if (ep->lora_bias) v += ep->lora_bias[j];
    if (ep->row_scale) v *= ep->row_scale[j];
    if (ep->bias) v += ep->bias[j];
    yr[j] = v;
  }
}

// The epilogue as a separate pass over rows of y [·,n] holding the plain sums: y += Σ_d t_d·B_d (B streamed row by
// row), then + lora_bias, × row_scale, + bias — the order f32_store_tile__* use, so the bits are the same. Row i of
// the pass is row `rows[i]` of y (i itself when `rows` is null) and row i of every t_d: a route's group of rows,
// wherever they sit in the batch (the SGMV "expand" of a segment), or the whole batch.
// Columns [j0, j1) (a thread's share; 0, n for all). A long row segment takes four rows of B per pass (y += t_q·B_q
// four times per element, q ascending: the same operations in the same order), so y is read and written r/4 times
// instead of r: past about 8 KiB the segment no longer stays in L1 while B streams through. A short one keeps one
// row of B per pass: four B streams at once ran slower there (AMD Zen 4, B cold, m = 1, r = 16, ÷ one row per pass:
// n = 128…2048 0.40–0.80×; n = 4864 1.40–1.50×, m = 2 and 4 1.19–1.47×).
#ifndef PEFT_EPI_QUAD_MIN_COLS
#define PEFT_EPI_QUAD_MIN_COLS 2048
#endif
static inline void f32_epilogue_rows(size_t m, size_t n, size_t j0, size_t j1, const int32_t* __restrict rows,
                                     float* __restrict y, const Epilogue* ep) {
  const bool quad = j1 - j0 > PEFT_EPI_QUAD_MIN_COLS;
  for (size_t i = 0; i < m; i++) {
    float* yr = y + (rows ? (size_t)rows[i] : i) * n;
    for (int32_t d = 0; d < ep->nterms; d++) {
      const LoraTerm& lt = ep->terms[d];
      const float* ti = lt.t + i * lt.r;
      int32_t q = 0;
      if (quad)
        for (; q + 4 <= lt.r; q += 4) {
          const float t0 = ti[q], t1 = ti[q + 1], t2 = ti[q + 2], t3 = ti[q + 3];
          const float* b0 = lt.b + q * n;
          const float *b1 = b0 + n, *b2 = b1 + n, *b3 = b2 + n;
          for (size_t j = j0; j < j1; j++) {
            float v = yr[j];
            v += t0 * b0[j];
            v += t1 * b1[j];
            v += t2 * b2[j];
            v += t3 * b3[j];
            yr[j] = v;
          }
        }
      for (; q < lt.r; q++) {
        const float tv = ti[q];
        const float* br = lt.b + q * n;
        for (size_t j = j0; j < j1; j++) yr[j] += tv * br[j];
      }
    }
    f32_epilogue_affine_row(yr, j0, j1, ep);
  }
}
static inline void f32_gemv_epilogue(size_t m, size_t n, float* __restrict y, const Epilogue* ep) {
  f32_epilogue_rows(m, n, 0, n, nullptr, y, ep);
}

// The epilogue over rows [0, m) × columns [j0, j1) of y [m,n] holding the plain sums, for a batch (m > 4): per LoRA
// term, y += t·B in register tiles of 4 rows × 8 columns over B's columns packed chunk by chunk into `pack`
// ([cols/8][r][8], ≤ EPI_PACK_FLOATS floats), then + lora_bias, × row_scale, + bias. Per element the operations and
// their order are f32_store_tile__*'s (y, then + t_q·B_q for q ascending, unfused), so the bits are the fused
// epilogue's. Why not fused into the GEMM's store: that reads B[q, j:j+4] for every q at a stride of n floats, and
// with n a multiple of 1024 every such line falls in one L1 set: r = 64 at k = n = 2048, m = 64 cost +44 % over
// the plain layer (FLOPs: +6 %).
template <int MR>
static inline void f32_expand_tile__simd128(size_t r, const float* __restrict t, const float* __restrict bp,
                                            float* __restrict y, size_t ldy) {
  v128_t acc[MR][2];
  for (int i = 0; i < MR; i++) {
    acc[i][0] = wasm_v128_load(y + i * ldy);
    acc[i][1] = wasm_v128_load(y + i * ldy + 4);
  }
  for (size_t q = 0; q < r; q++) {
    const v128_t b0 = wasm_v128_load(bp + q * 8), b1 = wasm_v128_load(bp + q * 8 + 4);
    for (int i = 0; i < MR; i++) {
      const v128_t tv = wasm_v128_load32_splat(t + i * r + q);
      acc[i][0] = wasm_f32x4_add(acc[i][0], wasm_f32x4_mul(tv, b0));
      acc[i][1] = wasm_f32x4_add(acc[i][1], wasm_f32x4_mul(tv, b1));
    }
  }
  for (int i = 0; i < MR; i++) {
    wasm_v128_store(y + i * ldy, acc[i][0]);
    wasm_v128_store(y + i * ldy + 4, acc[i][1]);
  }
}
static inline void f32_epilogue_tiles__simd128(size_t m, size_t n, size_t j0, size_t j1, float* __restrict y,
                                               const Epilogue* ep, float* __restrict scratch) {
  float* pack = (float*)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
  for (int32_t d = 0; d < ep->nterms; d++) {
    const LoraTerm& lt = ep->terms[d];
    const size_t r = (size_t)lt.r;
    if (r == 0) continue;
    if (8 * r > EPI_PACK_FLOATS) {  // a rank too large for one 8-column panel: stream rows (same order)
      Epilogue one = {nullptr, nullptr, nullptr, 1, &lt};
      f32_epilogue_rows(m, n, j0, j1, nullptr, y, &one);
      continue;
    }
    const size_t cw = (EPI_PACK_FLOATS / r) & ~(size_t)7;  // columns per chunk, a multiple of 8
    for (size_t c0 = j0; c0 < j1; c0 += cw) {
      const size_t c1 = c0 + cw < j1 ? c0 + cw : j1;
      const size_t nb = (c1 - c0) / 8;
      for (size_t jb = 0; jb < nb; jb++)
        for (size_t q = 0; q < r; q++) {
          const float* src = lt.b + q * n + c0 + 8 * jb;
          float* dst = pack + (jb * r + q) * 8;
          wasm_v128_store(dst, wasm_v128_load(src));
          wasm_v128_store(dst + 4, wasm_v128_load(src + 4));
        }
      size_t i = 0;
      for (; i + 4 <= m; i += 4)
        for (size_t jb = 0; jb < nb; jb++)
          f32_expand_tile__simd128<4>(r, lt.t + i * r, pack + jb * r * 8, y + i * n + c0 + 8 * jb, n);
      for (; i < m; i++)
        for (size_t jb = 0; jb < nb; jb++)
          f32_expand_tile__simd128<1>(r, lt.t + i * r, pack + jb * r * 8, y + i * n + c0 + 8 * jb, n);
      for (size_t ii = 0; ii < m; ii++)  // the last c1 − c0 mod 8 columns
        for (size_t j = c0 + 8 * nb; j < c1; j++) {
          float v = y[ii * n + j];
          for (size_t q = 0; q < r; q++) v += lt.t[ii * r + q] * lt.b[q * n + j];
          y[ii * n + j] = v;
        }
    }
  }
  for (size_t i = 0; i < m; i++) f32_epilogue_affine_row(y + i * n, j0, j1, ep);
}

// The epilogue on rows [0, m) × columns [j0, j1) of y [m,n] holding plain sums, whatever m: B streamed by rows for
// m ≤ 4 (decode), swept in register tiles above (scratch: EPI_PACK_FLOATS + 4 floats). Every linear's LoRA path.
static inline void f32_epilogue_pass(size_t m, size_t n, size_t j0, size_t j1, float* __restrict y, const Epilogue* ep,
                                     float* __restrict scratch) {
  if (m <= 4) f32_epilogue_rows(m, n, j0, j1, nullptr, y, ep);
  else f32_epilogue_tiles__simd128(m, n, j0, j1, y, ep, scratch);
}
static inline void f32_gemv_epilogue(size_t m, size_t n, size_t j0, size_t j1, float* __restrict y, const Epilogue* ep) {
  f32_epilogue_rows(m, n, j0, j1, nullptr, y, ep);
}

// Columns [j0, j1) of y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ): one thread's share (every element is computed
// exactly as the whole layer computes it, so any split gives the one-thread bits). GEMV for m ≤ PEFT_F32_GEMV_MAX_M.
// W's rows are ldw ≥ k floats apart: a base weight's rows are padded when that streams faster (see f32_weight_ldw).
// `staged`: null, or x in row pairs for all m rows (f32_pack_row_pairs__simd128), packed once by a caller that splits
// the call across threads, for the panel GEMM's packed form, which otherwise packs x on every call (every chunk).
template <class Isa, class P>
static inline void f32_linear_panels(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* __restrict x,
                                     const float* __restrict w, float* __restrict y, const Epilogue* ep,
                                     float* __restrict scratch, const float* __restrict staged);  // linear_panel.h
template <class Isa, class P>
static inline void f32_linear_cols(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* __restrict x,
                                   const float* __restrict w, size_t ldw, float* __restrict y, const Epilogue* ep,
                                   float* __restrict scratch, const float* __restrict staged = nullptr) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y && j0 <= j1 && j1 <= n && (ldw >= k || ldw == 0));
  if (j0 >= j1) return;
  if (ep && ep->nterms > 0 && !__is_same(P, PackedScalar)) {
    // LoRA: the fused epilogue would read B [r,n] tile by tile, r rows at a stride of n floats, aliasing in L1 when n
    // is a power of two (≈ +6 % at k = n = 4096, r = 16, m = 1; +44 % at k = n = 2048, r = 64, m = 64). So: the plain
    // sums first (no epilogue), then one pass: m ≤ 4 streams B row by row, a batch sweeps it in register tiles. Same
    // operations in the same order per element as the fused epilogue (the scalar twins keep it fused), so the bits
    // are the same; "off" (nterms = 0) never comes here.
    f32_linear_cols<Isa, P>(m, n, k, j0, j1, x, w, ldw, y, nullptr, scratch, staged);
    f32_epilogue_pass(m, n, j0, j1, y, ep, scratch);
    return;
  }
  if (ldw == 0) {  // W in panels (linear_panel.h)
    f32_linear_panels<Isa, P>(m, n, k, j0, j1, x, w, y, ep, scratch, staged);
    return;
  }
  if constexpr (__is_same(P, PackedScalar)) {
    f32_gemm_columns<Isa>(m, n, k, j0, j1, x, w + j0 * ldw, ldw, y, ep);
    return;
  } else {
    switch (m <= PEFT_F32_GEMV_MAX_M ? m : 5) {
      case 1:
        if constexpr (__is_same(Isa, Simd128)) f32_gemv1_tuned__simd128(n, k, j0, j1, x, w, ldw, y, ep);
        else f32_gemv<Isa, 1>(n, k, j0, j1, x, w, ldw, y, ep);
        return;
      case 2: f32_gemv<Isa, 2>(n, k, j0, j1, x, w, ldw, y, ep); return;
      case 3: f32_gemv<Isa, 3>(n, k, j0, j1, x, w, ldw, y, ep); return;
      case 4: f32_gemv<Isa, 4>(n, k, j0, j1, x, w, ldw, y, ep); return;
      default: {
        // ep carries no LoRA terms here (they take the pass above), so a block of rows needs no row offset.
        const size_t mb = f32_gemm_row_block(m, k);
        for (size_t i = 0; i < m; i += mb)
          f32_gemm_dot_f32(m - i < mb ? m - i : mb, n, k, j0, j1, x + i * k, w, ldw, y + i * n, ep, scratch);
        return;
      }
    }
  }
}

// y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ): all columns (W rows ldw floats apart).
template <class Isa, class P>
static inline void f32_linear(size_t m, size_t n, size_t k, const float* __restrict x, const float* __restrict w,
                              size_t ldw, float* __restrict y, const Epilogue* ep, float* __restrict scratch) {
  f32_linear_cols<Isa, P>(m, n, k, 0, n, x, w, ldw, y, ep, scratch);
}

}  // namespace peft

#include "linear_panel.h"  // f32_linear_panels (W in panels: ldw = 0)
