// linear_bf16.h: nn.Linear with a bf16 base weight, f32 everywhere else (x, y, bias, LoRA terms, accumulators).
//
// Contract
//   The one of linear.h, with W [n,k] stored as bf16 (the upper 16 bits of an f32: widening is exact, a shift).
//   Checkpoints ship bf16; keeping W so halves its memory and the bytes a forward streams. Decode (m ≤ 4) is bound
//   by memory bandwidth, so it runs up to 2× an f32 W.
// Layouts
//   A layer's resident W is stored in panels of 4 rows ([⌈k/8⌉][4][8], Bf16PanelW below; the kernels take it as
//   ldw = 0), any other W row-major; the same tiles read both (on panels m ≤ 2 the GEMV, from k = 2048 m ≤ 4 through
//   the streams tiles, above that the GEMM).
// Kernel shape
//   m ≤ BF16_GEMV_MAX_M, f32xbf16_gemv (on chunks of ≤ 4 rows of x): linear.h's dot form on bf16 W. 8 weights of
//   a row per v128 load, widened by interleaving with zeros (each bf16 lands in the upper half of an f32: exact),
//   low half = columns p..p+3, high half = p+4..p+7, both into the same four lanes.
//   m > BF16_GEMV_MAX_M: linear.h's GEMM form (f32_gemm_dot's 2×4 dot tiles, same order) on packed operands:
//   x packed once per call into row pairs, per k-block (KC = 1024) the 4×KC strip of W widened into scratch
//   (16 KiB, stays in L1) once and swept by every row pair; a k ≤ KC runs as one block, accumulators in registers
//   to the sums. The widening costs n·k shuffles and stores per call against 2·m·n·k flops: ~10 % of the GEMM at
//   m = 16, ~2 % at m = 64 (the 2×4 tile itself runs at the two multiply and two add ports' rate, ~90 % of it).
//   The n % 4 last columns go through f32_gemm_dot itself.
// Reduction order
//   linear.h's (four lanes over k, then (l0 + l2) + (l1 + l3), then the k % 4 tail) on the widened W: every m, and
//   the scalar twin, give the same bits for a row.
// Accuracy
//   As linear.h on the widened W.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <string.h>
#include <wasm_simd128.h>
#include "linear.h"

namespace peft {

static inline float bf16_to_f32_1(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// A bf16 W's layouts for the tiles below: linear.h's RowMajorOf / PanelOf on uint16_t (panels: [⌈k/8⌉][4][8], a
// chunk of 8 bf16 per row; `at` only for p a multiple of 8). Why panels: linear_panel.h.
using Bf16RowMajorW = RowMajorOf<uint16_t>;
using Bf16PanelW = PanelOf<uint16_t>;
// W[j, p] of either layout (ldw = 0: panels), for the scalar twin and tails.
static inline uint16_t bf16_elem(const uint16_t* w, size_t ldw, size_t k, size_t j, size_t p) {
  return ldw ? w[j * ldw + p] : Bf16PanelW::elem(panel_row(w, k, j), 0, 0, p);
}

// ---------------------------------------------------------------------------------------------------------
// Scalar reference: widen QUANT-style strips of BF16_STRIP rows into scratch and run linear.h's scalar GEMM.
constexpr size_t BF16_STRIP = 4;

static inline void f32xbf16_linear__scalar(size_t m, size_t n, size_t k, const float* __restrict x,
                                           const uint16_t* __restrict w, size_t ldw, float* __restrict y,
                                           const Epilogue* ep, float* __restrict scratch) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y && scratch);
  if (m <= 4 && ep && ep->nterms > 0) {  // as f32_linear: plain sums, then the B-streaming epilogue pass
    f32xbf16_linear__scalar(m, n, k, x, w, ldw, y, nullptr, scratch);
    f32_gemv_epilogue(m, n, y, ep);
    return;
  }
  for (size_t j = 0; j < n; j += BF16_STRIP) {
    const size_t rows = j + BF16_STRIP <= n ? BF16_STRIP : n - j;
    for (size_t r = 0; r < rows; r++)
      for (size_t q = 0; q < k; q++) scratch[r * k + q] = bf16_to_f32_1(bf16_elem(w, ldw, k, j + r, q));
    f32_gemm_columns<Scalar>(m, n, k, j, j + rows, x, scratch, k, y, ep);
  }
}

// ---------------------------------------------------------------------------------------------------------
// SIMD128, m ≤ 4: linear.h's dot form on bf16 W.

// Four bf16 at `w` (8 bytes) → f32 lanes (only for the one 4-block between k & ~7 and k & ~3).
static inline v128_t bf16x4_to_f32x4(const uint16_t* w) {
  return wasm_i16x8_shuffle(wasm_i32x4_splat(0), wasm_v128_load64_zero(w), 0, 8, 1, 9, 2, 10, 3, 11);
}

// The relaxed build's k-loop multiply-add is one fused op whose latency (≈ 4 cycles, not the add's 3) sits on each
// row's chain: it needs more rows in flight. Measured (Deno 2.9, k = n = 4096, GB/s ÷ the SIMD128 build's 8×4):
// relaxed 8×4 0.75, 16×2 1.08–1.18, 16×1 1.04, 12×2 0.80, 16×4 0.53. These are each build's default; the m = 1 GEMV
// also carries an 8 × 2 tile that tuning.h picks at run time where it is faster (AMD Zen 3: 1.14–1.19×).
#ifdef __wasm_relaxed_simd__
#define PEFT_BF16_GEMV1_NR 16
#define PEFT_BF16_GEMV1_U 2
#endif
#ifndef PEFT_BF16_GEMV1_NR
#define PEFT_BF16_GEMV1_NR 8
#endif
#ifndef PEFT_BF16_GEMV1_U
#define PEFT_BF16_GEMV1_U 4
#endif
// y[0:M, j0:j0+NR] = epilogue(x [M,k] · widen(W[0:NR, :])ᵀ), W rows at stride ldw.
// TOUCH (m = 1, short rows): every k-step also loads as many lines at `ahead` (the next tile) as it consumes; see
// GEMV_TOUCH_MAX_ROW_BYTES in linear.h.
template <int M, int NR, bool TOUCH = false, int U = PEFT_BF16_GEMV1_U, class BL = Bf16RowMajorW>
static inline void f32xbf16_gemv__simd128(size_t k, const float* __restrict x, const uint16_t* __restrict w, size_t ldw,
                                          float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0,
                                          [[maybe_unused]] const uint8_t* ahead = nullptr) {
  const size_t k8 = k & ~(size_t)7, k4 = k & ~(size_t)3;
  const v128_t zero = wasm_i32x4_splat(0);
  v128_t acc[M][NR];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = wasm_f32x4_splat(0.0f);
  size_t p0 = 0;
  if constexpr (M == 1) {
    // One x row: each row's turn reads U × 16 bytes of W (U = 4: a cache line). Measured (k = n = 4096, W cold):
    // NR 8 U 4 15.8 GB/s, NR 8 U 2 13.3, NR 16 U 1 14.4, NR 16 U 2 10.8 (unlike f32, more rows do not pay here).
    [[maybe_unused]] v128_t sink = zero;  // TOUCH: `ahead` is the next tile (ldw = k: ≤ 16·k bytes touched)
    for (; p0 + 8 * U <= k8; p0 += 8 * U) {
      if constexpr (TOUCH) touch_lines<NR * U / 4>(ahead, sink);  // NR rows × 16U bytes
      for (int j = 0; j < NR; j++)
        for (int u = 0; u < U; u++) {
          const size_t p = p0 + 8 * u;
          const v128_t v = wasm_v128_load(BL::at(w, ldw, j, p));
          const v128_t lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);
          const v128_t hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);
          acc[0][j] = f32x4_madd(wasm_v128_load(x + p), lo, acc[0][j]);
          acc[0][j] = f32x4_madd(wasm_v128_load(x + p + 4), hi, acc[0][j]);
        }
    }
    if constexpr (TOUCH) touch_keep(sink);
  }
  for (size_t p = p0; p < k8; p += 8)
    for (int j = 0; j < NR; j++) {
      const v128_t v = wasm_v128_load(BL::at(w, ldw, j, p));
      const v128_t lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);    // columns p .. p+3
      const v128_t hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);  // columns p+4 .. p+7
      for (int i = 0; i < M; i++) {
        acc[i][j] = f32x4_madd(wasm_v128_load(x + i * k + p), lo, acc[i][j]);
        acc[i][j] = f32x4_madd(wasm_v128_load(x + i * k + p + 4), hi, acc[i][j]);
      }
    }
  if (k4 > k8)
    for (int j = 0; j < NR; j++) {
      const v128_t lo = bf16x4_to_f32x4(BL::at(w, ldw, j, k8));
      for (int i = 0; i < M; i++) acc[i][j] = f32x4_madd(wasm_v128_load(x + i * k + k8), lo, acc[i][j]);
    }
  alignas(16) float out[M][NR];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < NR; j++) {
      const v128_t a = acc[i][j];
      float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      for (size_t p = k4; p < k; p++) s += x[i * k + p] * bf16_to_f32_1(BL::elem(w, ldw, j, p));
      out[i][j] = s;
    }
  f32_store_tile__simd128<M, NR>(out, y, ldy, false, ep, 0, j0);  // ldy = n: also the row stride of LoRA B
}

// m = 1 over columns [j0, j1), short rows stored contiguously (ldw = k, 2k ≤ GEMV_TOUCH_MAX_ROW_BYTES): every tile
// touches the next one ahead (the last whole tile its own lines again). Out of line, two call sites (wasm-opt inlines
// a function called once).
template <int NR, int U>
__attribute__((noinline)) static void f32xbf16_gemv1_short__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                                    const float* x, const uint16_t* w, float* y,
                                                                    const Epilogue* ep) {
  size_t j = j0;
  for (; j + NR <= j1; j += NR) {
    const uint16_t* wj = w + j * k;
    // The last whole tile touches its own lines again (no tile after it to bring in).
    f32xbf16_gemv__simd128<1, NR, true, U>(k, x, wj, k, y + j, n, ep, j,
                                           (const uint8_t*)(j + 2 * NR <= j1 ? wj + NR * k : wj));
  }
  for (; j < j1; j++) f32xbf16_gemv__simd128<1, 1, true, U>(k, x, w + j * k, k, y + j, n, ep, j, (const uint8_t*)(w + j * k));
}
// m = 1 on any rows (W rows ldw apart), NR × U tiles: out of line, one copy per tile.
template <int NR, int U>
__attribute__((noinline)) static void f32xbf16_gemv1_long__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                                   const float* x, const uint16_t* w, size_t ldw,
                                                                   float* y, const Epilogue* ep) {
  size_t j = j0;
  for (; j + NR <= j1; j += NR) f32xbf16_gemv__simd128<1, NR, false, U>(k, x, w + j * ldw, ldw, y + j, n, ep, j);
  for (; j < j1; j++) f32xbf16_gemv__simd128<1, 1, false, U>(k, x, w + j * ldw, ldw, y + j, n, ep, j);
}
// The m = 1 GEMV: short or long rows, the tile g_tuning.gemv1_bf16 names (linear.h gemv1_tuned).
static inline void f32xbf16_gemv1_tuned__simd128(size_t n, size_t k, size_t j0, size_t j1, const float* x,
                                                 const uint16_t* w, size_t ldw, float* y, const Epilogue* ep) {
  gemv1_tuned<PEFT_BF16_GEMV1_NR, PEFT_BF16_GEMV1_U>(
      g_tuning.gemv1_bf16 != 0, ldw == k && 2 * k <= GEMV_TOUCH_MAX_ROW_BYTES, ep, [&](auto tile, const Epilogue* e) {
        using T = decltype(tile);
        if constexpr (T::SHORT) f32xbf16_gemv1_short__simd128<T::NR, T::U>(n, k, j0, j1, x, w, y, e);
        else f32xbf16_gemv1_long__simd128<T::NR, T::U>(n, k, j0, j1, x, w, ldw, y, e);
      });
}

// m = 2…4 (m = 1: f32xbf16_gemv1_tuned__simd128).
template <int M>
static inline void f32xbf16_gemv_m__simd128(size_t n, size_t k, size_t j0, size_t j1, const float* x,
                                            const uint16_t* w, size_t ldw, float* y, const Epilogue* ep) {
  constexpr int NR = M == 2 ? 4 : 2;  // M·NR ≤ 8 accumulators
  size_t j = j0;
  for (; j + NR <= j1; j += NR) f32xbf16_gemv__simd128<M, NR>(k, x, w + j * ldw, ldw, y + j, n, ep, j);
  for (; j < j1; j++) f32xbf16_gemv__simd128<M, 1>(k, x, w + j * ldw, ldw, y + j, n, ep, j);
}

// m ≤ PEFT_BF16_PANEL_GEMV_MAX_M on a W in panels (ldw = 0), columns [j0, j1): per panel one M × 4 tile (m = 1: one
// 64-byte line per k-step of 8, U = 1), single rows at a cut panel. Two call sites per M (f32xbf16_linear_cols): with
// one, wasm-opt inlined it into that function's 20,000 instructions of x86 code, where V8 kept the four accumulators,
// the zero vector and the loop's pointers on the stack, loading and storing them every k-step. Out of line (AMD Zen 4,
// one thread, ÷ inlined in one run): m = 1 k = n = 4096 1.17–1.20×, k 896 n 4864 1.28–1.45×, k 4864 n 896 1.18×,
// k 256 n 2048 1.31×; m = 2 1.09–1.20×. Measured (Zen 5,
// W cold, m = 1, GB/s ÷ the row-major 8 × 4 tile in one run): k = n = 4096 1.27× (76 % of the read loop, row-major
// 60 %), k 896 n 4864 1.58× (83 %); 4 × 2 and 4 × 4 levels 0.94–0.99× of 4 × 1, two panels at once (8 rows) 0.58×.
// m = 1, S panels far apart in step: ys[s][0 … 3] = the plain sums of the 4 rows of panel ws[s], each row exactly as
// the 1 × 4 tile above sums it (U = 1: one line of each panel a k-step), so the same bits; linear_panel.h's f32
// streams tile on bf16. No epilogue in it: out of line and with no epilogue code beside its accumulators (the driver
// applies the epilogue afterwards, elementwise: the same bits), as steadier variants of the two-stream tile ran
// 0.68–1.21×. Measured: see f32xbf16_gemv1_panels__simd128.
#ifndef PEFT_BF16_PANEL_GEMV1_STREAMS
#define PEFT_BF16_PANEL_GEMV1_STREAMS 4
#endif
template <int S>
__attribute__((noinline)) static void f32xbf16_gemv1_panel_streams__simd128(size_t k, const float* __restrict x,
                                                                            const uint16_t* const* wsp,
                                                                            float* const* ysp) {
  constexpr int NR = PANEL_ROWS;
  const size_t k8 = k & ~(size_t)7, k4 = k & ~(size_t)3;
  const v128_t zero = wasm_i32x4_splat(0);
  const uint16_t* ws[S];
  for (int s = 0; s < S; s++) ws[s] = wsp[s];
  v128_t acc[S][NR];
  for (int s = 0; s < S; s++)
    for (int r = 0; r < NR; r++) acc[s][r] = wasm_f32x4_splat(0.0f);
  for (size_t p = 0; p < k8; p += 8) {
    const v128_t x0 = wasm_v128_load(x + p), x1 = wasm_v128_load(x + p + 4);
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) {
        const v128_t v = wasm_v128_load(Bf16PanelW::at(ws[s], 0, r, p));
        const v128_t lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);
        const v128_t hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);
        acc[s][r] = f32x4_madd(x0, lo, acc[s][r]);
        acc[s][r] = f32x4_madd(x1, hi, acc[s][r]);
      }
  }
  if (k4 > k8)
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) acc[s][r] = f32x4_madd(wasm_v128_load(x + k8), bf16x4_to_f32x4(Bf16PanelW::at(ws[s], 0, r, k8)), acc[s][r]);
  for (int s = 0; s < S; s++)
    for (int r = 0; r < NR; r++) {
      const v128_t a = acc[s][r];
      float t = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      for (size_t p = k4; p < k; p++) t += x[p] * bf16_to_f32_1(Bf16PanelW::elem(ws[s], 0, r, p));
      ysp[s][r] = t;
    }
}

#ifndef PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K
#define PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K 2048
#endif
// m = 1 on a W in panels, columns [j0, j1): as f32xbf16_gemv_panels__simd128<1> below, but from k =
// PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K the whole panels in S parts swept in step by the streams tile (panel i of every
// part; the panels left over alone), then the epilogue (no LoRA terms here: f32xbf16_linear_cols splits them off) over
// those columns. Measured (AMD Zen 5, one thread, W cold, one process): S = 2 ÷ one stream (the session before)
// k = n = 4096 1.12–1.18× (with a bias 1.10×, two threads 1.14×), k 4864 n 896 1.20–1.22×, Deno relaxed 1.13–1.16×,
// rows of k 2048–3584 0.9–1.0×. S = 4 ÷ S = 2: Deno 2.9 (relaxed build: fused multiply-add) 1.13–1.19× (k = n =
// 4096, k 8192 n 2048, k 4864 n 896); Node 20 (SIMD128, where widening, multiply and add bound the tile more than
// the reads) 1.15–1.19× in phases where the host's memory was quiet, 0.88–0.96× where it was busy; S = 3 sat between.
// With four streams shorter rows pay too, ÷ one stream: k 2560 … 3584 1.06–1.17× (Node), 1.16–1.18× (Deno); k = 2048
// 0.97–1.03× (Node), 1.15× (Deno); k ≤ 1536 0.95–1.03×. Hence from k = 2048.
template <int M>
__attribute__((noinline)) static void f32xbf16_gemv1_panels__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                                     const float* x, const uint16_t* w, float* y,
                                                                     const Epilogue* ep) {
  static_assert(M == 1, "m = 1");
  size_t j = j0;
  for (; j < j1 && j % 4 != 0; j++)
    f32xbf16_gemv__simd128<1, 1, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
  const size_t panels = (j1 - j) / PANEL_ROWS;
  constexpr int S = PEFT_BF16_PANEL_GEMV1_STREAMS;
  const size_t part = k >= PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K ? panels / S * PANEL_ROWS : 0;
  for (size_t i = 0; i < part; i += PANEL_ROWS) {
    const uint16_t* ws[S];
    float* ys[S];
    for (int s = 0; s < S; s++) ws[s] = panel_row(w, k, j + s * part + i), ys[s] = y + j + s * part + i;
    f32xbf16_gemv1_panel_streams__simd128<S>(k, x, ws, ys);
  }
  if (part && ep) f32_epilogue_affine_row(y, j, j + S * part, ep);
  j += S * part;
  for (; j + PANEL_ROWS <= j1; j += PANEL_ROWS)
    f32xbf16_gemv__simd128<1, PANEL_ROWS, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
  for (; j < j1; j++) f32xbf16_gemv__simd128<1, 1, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
}

// m = M ≤ 4, S panels far apart in step: each output exactly as the M × 4 tile (f32xbf16_gemv__simd128<M, 4, …,
// Bf16PanelW>) computes it, so the same bits; linear_panel.h's f32_gemvm_panel_streams__simd128 on bf16. From k =
// PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K, where m = 3 and 4 took the GEMM (widened strips) before. Measured (AMD Zen 5,
// Node 20, one thread, W cold, bits checked equal, ÷ before in one process; k × n 4096², 8192 × 2048, 2048², 4864 ×
// 896, 2048 × 8192): m = 2 (S = 4 ÷ the one-panel 2 × 4 tile) 1.40–1.52× at k ≥ 4096, 1.03–1.07× at k = 2048; m = 3
// (S = 4 ÷ the GEMM) 1.44–1.55×, S = 2 1.35–1.52×; m = 4 S = 2 1.14–1.20×, S = 4 1.31–1.33× at n ≥ 4096 but
// 0.87–0.90× at n ≤ 2048. The tile is bound by how much of W one core keeps in flight, not by its arithmetic: 8·S·M
// accumulators spill (V8 has 15 vector registers) and still win. Rows below the threshold: level (0.98–1.00×).
#ifndef PEFT_BF16_PANEL_GEMVM_STREAMS
#define PEFT_BF16_PANEL_GEMVM_STREAMS 4
#endif
#ifndef PEFT_BF16_PANEL_GEMV4_STREAMS
#define PEFT_BF16_PANEL_GEMV4_STREAMS 2
#endif
template <int M, int S>
static inline void f32xbf16_gemvm_panel_streams__simd128(size_t k, const float* __restrict x, const uint16_t* const* wsp,
                                                         float* __restrict y, size_t ldy, const Epilogue* ep,
                                                         const size_t* js) {
  constexpr int NR = PANEL_ROWS;
  const size_t k8 = k & ~(size_t)7, k4 = k & ~(size_t)3;
  const v128_t zero = wasm_i32x4_splat(0);
  const uint16_t* ws[S];
  for (int s = 0; s < S; s++) ws[s] = wsp[s];
  v128_t acc[S][M][NR];
  for (int s = 0; s < S; s++)
    for (int i = 0; i < M; i++)
      for (int r = 0; r < NR; r++) acc[s][i][r] = wasm_f32x4_splat(0.0f);
  for (size_t p = 0; p < k8; p += 8) {
    v128_t xl[M], xh[M];
    for (int i = 0; i < M; i++) xl[i] = wasm_v128_load(x + i * k + p), xh[i] = wasm_v128_load(x + i * k + p + 4);
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) {
        const v128_t v = wasm_v128_load(Bf16PanelW::at(ws[s], 0, r, p));
        const v128_t lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);
        const v128_t hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);
        for (int i = 0; i < M; i++) {
          acc[s][i][r] = f32x4_madd(xl[i], lo, acc[s][i][r]);
          acc[s][i][r] = f32x4_madd(xh[i], hi, acc[s][i][r]);
        }
      }
  }
  if (k4 > k8)
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) {
        const v128_t lo = bf16x4_to_f32x4(Bf16PanelW::at(ws[s], 0, r, k8));
        for (int i = 0; i < M; i++) acc[s][i][r] = f32x4_madd(wasm_v128_load(x + i * k + k8), lo, acc[s][i][r]);
      }
  for (int s = 0; s < S; s++) {
    alignas(16) float out[M][NR];
    for (int i = 0; i < M; i++)
      for (int r = 0; r < NR; r++) {
        const v128_t a = acc[s][i][r];
        float t = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                  (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
        for (size_t p = k4; p < k; p++) t += x[i * k + p] * bf16_to_f32_1(Bf16PanelW::elem(ws[s], 0, r, p));
        out[i][r] = t;
      }
    f32_store_tile__simd128<M, NR>(out, y + js[s], ldy, false, ep, 0, js[s]);
  }
}

template <int M, int S = PEFT_BF16_PANEL_GEMVM_STREAMS>
__attribute__((noinline)) static void f32xbf16_gemv_panels__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                                    const float* x, const uint16_t* w, float* y,
                                                                    const Epilogue* ep) {
  static_assert(M <= 4, "M·4 ≤ 16 accumulators in the one-panel tile");
  constexpr int NR = 4;
  size_t j = j0;
  for (; j < j1 && j % 4 != 0; j++)
    f32xbf16_gemv__simd128<M, 1, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
  if constexpr (M >= 2) {
    const size_t part = k >= PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K ? (j1 - j) / PANEL_ROWS / S * PANEL_ROWS : 0;
    for (size_t i = 0; i < part; i += PANEL_ROWS) {
      const uint16_t* ws[S];
      size_t js[S];
      for (int s = 0; s < S; s++) js[s] = j + s * part + i, ws[s] = panel_row(w, k, js[s]);
      f32xbf16_gemvm_panel_streams__simd128<M, S>(k, x, ws, y, n, ep, js);
    }
    j += S * part;
  }
  for (; j + NR <= j1; j += NR)
    f32xbf16_gemv__simd128<M, NR, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
  for (; j < j1; j++) f32xbf16_gemv__simd128<M, 1, false, 1, Bf16PanelW>(k, x, panel_row(w, k, j), 0, y + j, n, ep, j);
}

// ---------------------------------------------------------------------------------------------------------
// SIMD128, m > 4: packed GEMM over widened W strips.

// ws [rows, kc] = widened W[0:rows, p0:p0+kc] (row stride ldw).
static inline void bf16_widen_strip__simd128(size_t rows, size_t kc, size_t ldw, const uint16_t* __restrict w,
                                             float* __restrict ws) {
  for (size_t j = 0; j < rows; j++) {
    const uint16_t* s = w + j * ldw;
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
// Measured (W cold, GEMM ÷ two GEMV passes in one run): k = n = 4096: m = 5 1.02×, m = 6 1.15×, m = 8 1.24×;
// k = 896, n = 4864: m = 6 1.29×, m = 8 1.42×. (An older GEMM lost at m = 5, hence a limit of 8 until then.)
#ifndef PEFT_BF16_GEMV_MAX_M
#define PEFT_BF16_GEMV_MAX_M 4
#endif
constexpr size_t BF16_GEMV_MAX_M = PEFT_BF16_GEMV_MAX_M;
// The same for a W in panels, where the GEMM's strips are read as one contiguous run each. Measured (Zen 5, W cold,
// k = n = 4096, ÷ the row-major W in one run): m = 3 1.10×, m = 4 1.10×, m = 8 1.12× through the GEMM (the M × 2
// GEMV tile: m = 4 0.75–0.77×, each line read in two sweeps); m = 2 0.85× with the 2 × 4 GEMV tile (0.82× through
// the GEMM; k-blocked 2 × 2 tiles over 1–8 panels at once 0.6–0.93×, unsteady): the one shape panels lose.
#ifndef PEFT_BF16_PANEL_GEMV_MAX_M
#define PEFT_BF16_PANEL_GEMV_MAX_M 2
#endif
static_assert(PEFT_BF16_PANEL_GEMV_MAX_M >= 1 && PEFT_BF16_PANEL_GEMV_MAX_M <= 2, "the panel GEMV tiles are 1 × 4 and 2 × 4");
// On rows from PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K the streams tiles take m = 3 and 4 too (f32xbf16_gemvm_panel_streams
// above). The largest m a bf16 panel W runs through the GEMV tiles at this k.
static inline size_t bf16_panel_gemv_max_m(size_t k) {
  return k >= PEFT_BF16_PANEL_GEMV1_STREAMS_MIN_K ? 4 : PEFT_BF16_PANEL_GEMV_MAX_M;
}

// k-block of the bf16 GEMM: the widened strip (16·KC bytes) and a row pair of x (8·KC) stay in L1. A k of up to KC
// runs as one block, its accumulators in registers from the first column to the sums (no lanes round trip).
#ifndef PEFT_BF16_GEMM_KC
#define PEFT_BF16_GEMM_KC 1024
#endif
static_assert(PEFT_BF16_GEMM_KC % 4 == 0, "k-blocks must keep the lanes aligned");

// Scratch floats of the packed GEMM: 16-byte alignment, the lanes [m][4] v128, one widened k-block [4, KC] (also
// the one-row strips of the n % 4 tail), the x panel [m/2][k4/4][2][4].
static inline size_t f32xbf16_gemm_scratch_floats(size_t m, size_t k) {
  m = f32_gemm_row_block(m, k);  // one block of rows at a time
  return 4 + m * 16 + 4 * (k < PEFT_BF16_GEMM_KC ? k : PEFT_BF16_GEMM_KC) + (m & ~(size_t)1) * (k & ~(size_t)3);
}

// Scratch floats for both twins: the packed GEMM's (the GEMV needs none); the scalar twin's strip [BF16_STRIP,k].
static inline size_t f32xbf16_linear_scratch_floats(size_t m, size_t k) {
  const size_t simd = m <= PEFT_BF16_PANEL_GEMV_MAX_M ? 0 : f32xbf16_gemm_scratch_floats(m, k);  // either layout (a panel W at m = 3, 4 may not need it)
  const size_t scalar = BF16_STRIP * k;
  const size_t epi = m > 4 ? EPI_PACK_FLOATS + 4 : 0;  // the LoRA epilogue's packed B (after the GEMM)
  const size_t most = simd > scalar ? simd : scalar;
  return most > epi ? most : epi;
}

// The GEMM's packed operands (x in row pairs, W strips [kc/4][4][4]) and its 2×4 tile: linear.h
// f32_gemm_packed_strips__simd128, which the f32 W in panels shares (a panel is such a strip, unwidened).

// ws [kc/4][4][4] = widened W[0:4, p0:p0+kc] (row stride ldw), kc a multiple of 4. Row by row (the strip's bytes in
// address order: four rows at once measured 5–8 % slower at m = 16), 16 columns per turn through bumped pointers.
static inline void bf16_widen_strip4_interleaved__simd128(size_t kc, size_t ldw, const uint16_t* __restrict w,
                                                          float* __restrict ws) {
  const v128_t zero = wasm_i32x4_splat(0);
  for (size_t r = 0; r < 4; r++) {
    const uint16_t* s = w + r * ldw;
    const uint16_t* const end16 = s + (kc & ~(size_t)15);
    float* d = ws + 4 * r;
    for (; s < end16; s += 16, d += 64) {
      const v128_t v0 = wasm_v128_load(s), v1 = wasm_v128_load(s + 8);
      wasm_v128_store(d, wasm_i16x8_shuffle(zero, v0, 0, 8, 1, 9, 2, 10, 3, 11));
      wasm_v128_store(d + 16, wasm_i16x8_shuffle(zero, v0, 4, 12, 5, 13, 6, 14, 7, 15));
      wasm_v128_store(d + 32, wasm_i16x8_shuffle(zero, v1, 0, 8, 1, 9, 2, 10, 3, 11));
      wasm_v128_store(d + 48, wasm_i16x8_shuffle(zero, v1, 4, 12, 5, 13, 6, 14, 7, 15));
    }
    size_t p = kc & ~(size_t)15;
    for (; p + 8 <= kc; p += 8) {
      const v128_t v = wasm_v128_load(w + r * ldw + p);
      wasm_v128_store(ws + 4 * r + 4 * p, wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11));
      wasm_v128_store(ws + 4 * r + 4 * p + 16, wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15));
    }
    if (p < kc) wasm_v128_store(ws + 4 * r + 4 * p, bf16x4_to_f32x4(w + r * ldw + p));
  }
}

// The same strip from a W in panels: `w` = the panel's chunk at p0 (its rows side by side, 8 columns each), so the
// block is one contiguous run; kc a multiple of 4.
static inline void bf16_widen_panel4_interleaved__simd128(size_t kc, const uint16_t* __restrict w, float* __restrict ws) {
  const v128_t zero = wasm_i32x4_splat(0);
  size_t p = 0;
  for (; p + 8 <= kc; p += 8)
    for (size_t r = 0; r < 4; r++) {
      const v128_t v = wasm_v128_load(w + 4 * p + 8 * r);
      wasm_v128_store(ws + 4 * p + 4 * r, wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11));
      wasm_v128_store(ws + 4 * p + 16 + 4 * r, wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15));
    }
  if (p < kc)
    for (size_t r = 0; r < 4; r++) wasm_v128_store(ws + 4 * p + 4 * r, bf16x4_to_f32x4(w + 4 * p + 8 * r));
}
// ws [kc] = one widened row of a W in panels: `w` = the row's chunk at p0.
static inline void bf16_widen_panel_row__simd128(size_t kc, const uint16_t* __restrict w, float* __restrict ws) {
  const v128_t zero = wasm_i32x4_splat(0);
  size_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    const v128_t v = wasm_v128_load(w + 4 * p);
    wasm_v128_store(ws + p, wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11));
    wasm_v128_store(ws + p + 4, wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15));
  }
  for (; p < kc; p++) ws[p] = bf16_to_f32_1(Bf16PanelW::elem(w, 0, 0, p));
}

// The GEMM path (m > BF16_GEMV_MAX_M), kept out of line. Inlined into f32xbf16_linear_cols__simd128 (one wasm
// function holding every GEMV instantiation too), V8's register allocator spilled the 2×4 tile's accumulators
// around its k-loop: bf16 ran 1.5–1.8× the f32 time at every m (widening was not what cost). clang honours
// noinline; emcc's wasm-opt inlines any function with one call site, hence the two call sites below.
// Per strip of 4 W rows, per k-block: widen the block, then every row pair (and an odd last row) over it; the last
// block reduces and stores. Scratch: lanes [m][4] v128, the widened block [4, KC], the x panel.
// BL = Bf16PanelW (ldw = 0): strips are panels, widened from one contiguous run; the columns before the first panel
// go the way of the n % 4 tail.
template <class BL>
__attribute__((noinline)) static void f32xbf16_gemm__simd128(size_t m, size_t n, size_t k, size_t j0, size_t j1,
                                                             const float* __restrict x, const uint16_t* __restrict w,
                                                             size_t ldw, float* __restrict y, const Epilogue* ep,
                                                             float* __restrict scratch, const float* __restrict staged) {
  constexpr bool PANELS = __is_same(BL, Bf16PanelW);
  constexpr size_t KC = PEFT_BF16_GEMM_KC;
  v128_t* lanes = (v128_t*)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
  float* ws = (float*)lanes + m * 16;  // right after the lanes, 16-byte aligned
  const size_t k4 = k & ~(size_t)3;
  float* own = ws + 4 * (k4 < KC ? k4 : KC);
  const auto widen_row = [w, ldw, k, ws](size_t jj, size_t rows, size_t p0, size_t kc) {
    if constexpr (PANELS) bf16_widen_panel_row__simd128(kc, panel_row(w, k, jj) + 4 * p0, ws);
    else bf16_widen_strip__simd128(rows, kc, ldw, w + jj * ldw + p0, ws);
    return WStrip{ws, kc};
  };
  const auto wtail = [w, ldw, k](size_t jj, size_t p) { return bf16_to_f32_1(bf16_elem(w, ldw, k, jj, p)); };
  size_t j = j0;
  if constexpr (PANELS) {  // the rows of a cut panel: one at a time
    j = (j0 + 3) & ~(size_t)3;
    if (j > j1) j = j1;
    if (j0 < j) f32_gemm_dot(m, n, k, j0, j, x, y, ep, scratch, widen_row, wtail);
  }
  if (k4 > 0) {
    const float* xp = staged;
    if (!xp) {
      f32_pack_row_pairs__simd128(m, k, x, own);
      xp = own;
    }
    const auto widen4 = [w, ldw, k, ws](size_t jj, size_t p0, size_t kc) {
      if constexpr (PANELS) bf16_widen_panel4_interleaved__simd128(kc, panel_row(w, k, jj) + 4 * p0, ws);
      else bf16_widen_strip4_interleaved__simd128(kc, ldw, w + jj * ldw + p0, ws);
      return (const float*)ws;
    };
    j = f32_gemm_packed_strips__simd128(m, n, k, KC, j, j1, x, xp, y, ep, lanes, widen4, wtail);
  }
  if (j < j1) f32_gemm_dot(m, n, k, j, j1, x, y, ep, scratch, widen_row, wtail);  // the last n % 4 columns (or k < 4), one W row at a time
}

// Columns [j0, j1) of y [m,n] = epilogue(x [m,k] · widen(W [n,k] bf16)ᵀ): one thread's share, each element
// computed as the whole layer computes it. `staged`: null, or x's row pairs for all m rows (f32_linear_cols).
static inline void f32xbf16_linear_cols__simd128(size_t m, size_t n, size_t k, size_t j0, size_t j1,
                                                 const float* __restrict x, const uint16_t* __restrict w, size_t ldw,
                                                 float* __restrict y, const Epilogue* ep, float* __restrict scratch,
                                                 const float* __restrict staged = nullptr) {
  assert(m > 0 && n > 0 && k > 0 && x && w && y && scratch && j0 <= j1 && j1 <= n);
  if (j0 >= j1) return;
  if (ep && ep->nterms > 0) {
    // As f32_linear: plain sums, then the epilogue pass (B streamed by rows for m ≤ 4, swept in tiles above).
    f32xbf16_linear_cols__simd128(m, n, k, j0, j1, x, w, ldw, y, nullptr, scratch, staged);
    f32_epilogue_pass(m, n, j0, j1, y, ep, scratch);
    return;
  }
  if (m > (ldw == 0 ? bf16_panel_gemv_max_m(k) : BF16_GEMV_MAX_M)) {
    // Two call sites on purpose: wasm-opt inlines a function called once whatever its attributes (see above).
    // Rows in blocks that stay in L2 (f32_gemm_row_block); ep has no LoRA terms here, so no row offset.
    const size_t mb = f32_gemm_row_block(m, k);
    for (size_t i = 0; i < m; i += mb) {
      const size_t mr = m - i < mb ? m - i : mb;
      const float* st = staged ? f32_row_pair(staged, i, k) : nullptr;
      if (ldw == 0) {  // W in panels
        if (ep) f32xbf16_gemm__simd128<Bf16PanelW>(mr, n, k, j0, j1, x + i * k, w, 0, y + i * n, ep, scratch, st);
        else f32xbf16_gemm__simd128<Bf16PanelW>(mr, n, k, j0, j1, x + i * k, w, 0, y + i * n, nullptr, scratch, st);
      } else {
        if (ep) f32xbf16_gemm__simd128<Bf16RowMajorW>(mr, n, k, j0, j1, x + i * k, w, ldw, y + i * n, ep, scratch, st);
        else f32xbf16_gemm__simd128<Bf16RowMajorW>(mr, n, k, j0, j1, x + i * k, w, ldw, y + i * n, nullptr, scratch, st);
      }
    }
    return;
  }
  // GEMV on chunks of up to 4 rows (the epilogue left is per column: bias, row scale, lora bias).
  for (size_t i = 0; i < m; i += 4) {
    const size_t mc = m - i < 4 ? m - i : 4;
    const float* xc = x + i * k;
    float* yc = y + i * n;
    if (ldw == 0) {  // W in panels; two call sites each (ep or none), so they stay out of line (above)
      if (mc == 1) {
        if (ep) f32xbf16_gemv1_panels__simd128<1>(n, k, j0, j1, xc, w, yc, ep);
        else f32xbf16_gemv1_panels__simd128<1>(n, k, j0, j1, xc, w, yc, nullptr);
      } else if (mc == 2) {
        if (ep) f32xbf16_gemv_panels__simd128<2>(n, k, j0, j1, xc, w, yc, ep);
        else f32xbf16_gemv_panels__simd128<2>(n, k, j0, j1, xc, w, yc, nullptr);
      } else if (mc == 3) {  // long rows only (bf16_panel_gemv_max_m)
        if (ep) f32xbf16_gemv_panels__simd128<3>(n, k, j0, j1, xc, w, yc, ep);
        else f32xbf16_gemv_panels__simd128<3>(n, k, j0, j1, xc, w, yc, nullptr);
      } else {
        if (ep) f32xbf16_gemv_panels__simd128<4, PEFT_BF16_PANEL_GEMV4_STREAMS>(n, k, j0, j1, xc, w, yc, ep);
        else f32xbf16_gemv_panels__simd128<4, PEFT_BF16_PANEL_GEMV4_STREAMS>(n, k, j0, j1, xc, w, yc, nullptr);
      }
      continue;
    }
    switch (mc) {
      case 1: f32xbf16_gemv1_tuned__simd128(n, k, j0, j1, xc, w, ldw, yc, ep); break;
      case 2: f32xbf16_gemv_m__simd128<2>(n, k, j0, j1, xc, w, ldw, yc, ep); break;
      case 3: f32xbf16_gemv_m__simd128<3>(n, k, j0, j1, xc, w, ldw, yc, ep); break;
      default: f32xbf16_gemv_m__simd128<4>(n, k, j0, j1, xc, w, ldw, yc, ep); break;
    }
  }
}

// y [m,n] = epilogue(x [m,k] · widen(W [n,k] bf16)ᵀ): all columns.
static inline void f32xbf16_linear__simd128(size_t m, size_t n, size_t k, const float* __restrict x,
                                            const uint16_t* __restrict w, size_t ldw, float* __restrict y,
                                            const Epilogue* ep, float* __restrict scratch) {
  f32xbf16_linear_cols__simd128(m, n, k, 0, n, x, w, ldw, y, ep, scratch);
}

}  // namespace peft
