// linear_panel.h: the f32 linear on a resident W stored in panels, the layout W streams fastest in.
//
// Layout
//   Rows in panels of 4; a panel is [K4/4][4][4] with K4 = k rounded up to 4: k-chunk q (columns 4q … 4q+3) of its
//   4 rows side by side, 64 bytes (one cache line), then chunk q + 1. Element (j, p) sits at
//     (j / 4)·4·K4 + (p / 4)·16 + (j mod 4)·4 + p mod 4.
//   A panel is one contiguous run of 16·k bytes. The last panel's missing rows and the padding past k are zeros
//   that no kernel reads.
// Why
//   Row-major, a tile's W rows are ldw apart at run time, so each row's load needs its own address (x86-64 V8: one
//   `lea` per row per k-step, as wasm's 32-bit address must wrap before the memory base is added) and the m = 1 tile
//   streams 8 or 16 rows at once. In panels a k-step of a 4-row tile is one 64-byte line at constant offsets from one
//   pointer: fewer instructions per byte of W (more of W in flight in the same reorder window) and one sequential
//   stream. Measured (AMD Zen 5, Node 20, one thread, W cold, GFLOP/s ÷ the faster row-major tile in one run):
//     m = 1: k = n = 4096 1.07–1.25× (28 GB/s, 90 % of the plain wasm read loop; row-major 70–77 %), k 896 n 4864
//     1.46×, k 4864 n 896 1.16×, k 256 n 704 1.28×, k 704 n 256 1.77×, k 256 n 2048 1.18×. The tile: 4 rows × 4
//     chunks (one panel) beat 8 rows × 2 chunks (two panels: 0.81–1.06× of it) and 16 rows × 1.
//     m = 2 1.21–1.26×; m = 3 through the GEMM 1.02× (its M × 4 GEMV tile 0.94×); m = 4 1.11×. (From k = 2048
//     m = 2 and 3 now sweep parts of the panels in step: f32_gemvm_panel_streams__simd128.)
//     m = 8 (k = n = 4096) 1.19–1.24×, m = 16 1.02–1.12×, m = 32 1.0×, m = 64 1.03–1.10× (k 896 / 4864: m = 8
//     1.12× / 1.27×, m = 64 1.08× / 1.10×): at m ≤ 32 the GEMM sweeps PANEL_GROUP = 8 panels per k-block, not one
//     (one: 0.74×; 2: 0.73×, 4: 1.17×; the prefetcher keeps more lines in flight over 8 streams than over 1).
// Order
//   Every kernel here is linear.h's on another address map (RowMajorW / PanelW): each output in the dot form's one
//   order, so a panel W gives the row-major W's bits at every m, on every thread split.
// Who reads it
//   Only these kernels, through the linear exports' `ldw = 0`. The JS storage (src/runtime/storage.ts,
//   PanelWasmStorage) hands everything else a compact row-major copy.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <wasm_simd128.h>
#include "linear.h"

namespace peft {

// k rounded up to whole chunks, the elements of an [n,k] weight in panels, and row j's first chunk (the PanelOf
// origin of a tile whose first row is j); T: float or uint16_t (bf16).
template <class T>
static inline size_t panel_kpad(size_t k) {
  return (k + PanelOf<T>::C - 1) & ~(PanelOf<T>::C - 1);
}
template <class T>
static inline size_t panel_elems(size_t n, size_t k) {
  return (n + PANEL_ROWS - 1) / PANEL_ROWS * PANEL_ROWS * panel_kpad<T>(k);
}
template <class T>
static inline const T* panel_row(const T* w, size_t k, size_t j) {
  return w + (j / PANEL_ROWS) * PANEL_ROWS * panel_kpad<T>(k) + (j % PANEL_ROWS) * PanelOf<T>::C;
}

// dst (panel_elems<T>(n, k)) = src [n,k] (rows lds ≥ k apart) in panels, padding zeroed: one 16-byte chunk per copy.
template <class T>
static inline void pack_panels(size_t n, size_t k, const T* __restrict src, size_t lds, T* __restrict dst) {
  constexpr size_t C = PanelOf<T>::C;
  const size_t kp = panel_kpad<T>(k), kf = k & ~(C - 1);
  for (size_t j0 = 0; j0 < n; j0 += PANEL_ROWS)
    for (size_t r = 0; r < PANEL_ROWS; r++) {
      T* d = dst + j0 * kp + C * r;
      if (j0 + r >= n) {
        for (size_t p = 0; p < kp; p += C) memset(d + PANEL_ROWS * p, 0, 16);
        continue;
      }
      const T* s = src + (j0 + r) * lds;
      size_t p = 0;
      for (; p < kf; p += C) wasm_v128_store(d + PANEL_ROWS * p, wasm_v128_load(s + p));
      if (p < kp)
        for (size_t c = 0; c < C; c++) d[PANEL_ROWS * p + c] = p + c < k ? s[p + c] : T(0);
    }
}
// dst [n,k] (compact) = the panel weight src.
template <class T>
static inline void unpack_panels(size_t n, size_t k, const T* __restrict src, T* __restrict dst) {
  for (size_t j = 0; j < n; j++) {
    const T* row = panel_row(src, k, j);
    for (size_t p = 0; p < k; p++) dst[j * k + p] = PanelOf<T>::elem(row, 0, 0, p);
  }
}

// d [k] = one row of an f32 W in panels (`row` = panel_row(w, k, j)): one 16-byte chunk per 64-byte line. The f32
// twin of linear_bf16.h's bf16_widen_panel_row__simd128; with it, peft_panel_gather_rows reads an embedding table
// stored in panels (its rows are also a tied head's W).
static inline void f32_panel_row__simd128(size_t k, const float* __restrict row, float* __restrict d) {
  size_t p = 0;
  for (; p + 4 <= k; p += 4) wasm_v128_store(d + p, wasm_v128_load(row + PANEL_ROWS * p));
  for (; p < k; p++) d[p] = PanelW::elem(row, 0, 0, p);
}

// m = 1, one panel: y[j0 : j0+4] = epilogue(x · W[4 rows]ᵀ), k-steps of 4U columns (U lines at constant offsets
// from one pointer). The schedule pin as in linear.h's row-major tile (SIMD128 builds).
#ifndef PEFT_PANEL_GEMV1_U
#define PEFT_PANEL_GEMV1_U 4
#endif
template <int U>
static inline void f32_gemv1_panel__simd128(size_t k, const float* __restrict x, const float* __restrict w,
                                            float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0) {
  constexpr int NR = PANEL_ROWS;
  v128_t acc[NR];
  for (int r = 0; r < NR; r++) acc[r] = wasm_f32x4_splat(0.0f);
  const size_t k4 = k & ~(size_t)3;
  alignas(16) v128_t pin_slots[NR];
  [[maybe_unused]] volatile v128_t* pin = pin_slots;
  size_t p = 0;
  for (; p + 4 * U <= k4; p += 4 * U) {
    const float* wq = w + PANEL_ROWS * p;
    v128_t xv[U];
    for (int u = 0; u < U; u++) xv[u] = wasm_v128_load(x + p + 4 * u);
    for (int r = 0; r < NR; r++) {
      for (int u = 0; u < U; u++) acc[r] = f32x4_madd(xv[u], wasm_v128_load(wq + 16 * u + 4 * r), acc[r]);
      if constexpr (GEMV1_SCHEDULE_PIN) pin[r] = acc[r];
    }
  }
  for (; p < k4; p += 4) {
    const v128_t xv = wasm_v128_load(x + p);
    for (int r = 0; r < NR; r++) acc[r] = f32x4_madd(xv, wasm_v128_load(w + PANEL_ROWS * p + 4 * r), acc[r]);
  }
  alignas(16) float out[1][NR];
  for (int r = 0; r < NR; r++) {
    const v128_t a = acc[r];
    float s = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
              (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
    for (size_t q = k4; q < k; q++) s += x[q] * PanelW::elem(w, 0, r, q);
    out[0][r] = s;
  }
  f32_store_tile__simd128<1, NR>(out, y, ldy, false, ep, 0, j0);
}

// m = 1, S panels far apart in step: rows js[s] … js[s]+3 of panel ws[s] for each stream s, each row exactly as the
// one-panel tile computes it (lanes in k order, then the same lane sum and k-tail), so the same bits. S read streams
// instead of one: a single core keeps more of W in flight. Pays on long rows only. Measured (AMD Zen 5, one thread, W
// cold, one process, the builds in turn):
//   S = 2 ÷ one stream (the session before, Node 20): k = n = 4096 1.02–1.21×, k 8192 n 1024 1.12×, k = n = 3584
//   1.10×, 3072 1.11×, k 2560 n 3072 1.07×, k 2048 n 4096 1.05×, k 1536 n 4096 1.02×, k 1024 n 4096 0.94×, k 896 n
//   4864 0.91×; hence from k = PEFT_PANEL_GEMV1_STREAMS_MIN_K.
//   S = 4 ÷ S = 2: Node 20 k = n = 4096 1.19–1.34×, k 2048 n 2048 … 8192 1.07–1.24×, k 2560 n 2560 1.07×, k 3072 n
//   1024 1.09×, k 4864 n 896 1.18–1.25×, k 8192 n 2048 1.13× (with a bias 1.10–1.19×); Deno 2.9 (relaxed build)
//   1.24–1.30×; two threads 1.04–1.10×. S = 3 sat between (1.09–1.18×); S = 6 and 8 lost (0.73–0.84×). In phases
//   where the host's memory was busy (every tile near 20 GB/s) S = 4 read 0.93–1.02×. Short rows lose more with 4
//   (k 512 … 1536: 0.83–0.90×). 4·S accumulators + U x vectors: S = 4 takes 17 of V8's registers (U = 1) and still
//   wins over the 10 of S = 2.
//   U = 2 k-steps a turn ÷ U = 1 (a later session, S = 4, bits equal; at U = 2 the schedule pin no longer matters,
//   0.96–1.06× without it): Node 20 k = n = 4096 1.14–1.25× (with a bias 1.15×), k = n = 2048
//   1.21–1.26×, k 4864 n 896 1.13–1.18×, k 8192 n 2048 1.28×, k 2048 n 8192 1.08×, k = n = 3072 1.18×; Deno 2.9
//   (relaxed build) 1.14–1.19× at k = n = 4096, 1.08–1.19× at 2048, 1.07× at k 8192 n 2048, 0.88–1.06× at k 4864 n 896.
//   U = 4 swung 0.80–1.08× of U = 2 from minute to minute, U = 8 0.53×.
#ifndef PEFT_PANEL_GEMV1_STREAMS
#define PEFT_PANEL_GEMV1_STREAMS 4
#endif
#ifndef PEFT_PANEL_GEMV1_STREAMS_U
#define PEFT_PANEL_GEMV1_STREAMS_U 2
#endif
#ifndef PEFT_PANEL_GEMV1_STREAMS_MIN_K
#define PEFT_PANEL_GEMV1_STREAMS_MIN_K 2048
#endif
template <int S, int U>
static inline void f32_gemv1_panel_streams__simd128(size_t k, const float* __restrict x, const float* const* ws,
                                                    float* __restrict y, size_t ldy, const Epilogue* ep,
                                                    const size_t* js) {
  constexpr int NR = PANEL_ROWS;
  v128_t acc[S][NR];
  for (int s = 0; s < S; s++)
    for (int r = 0; r < NR; r++) acc[s][r] = wasm_f32x4_splat(0.0f);
  const size_t k4 = k & ~(size_t)3;
  alignas(16) v128_t pin_slots[S * NR];
  [[maybe_unused]] volatile v128_t* pin = pin_slots;
  const float* w[S];
  for (int s = 0; s < S; s++) w[s] = ws[s];
  size_t p = 0;
  for (; p + 4 * U <= k4; p += 4 * U) {
    v128_t xv[U];
    for (int u = 0; u < U; u++) xv[u] = wasm_v128_load(x + p + 4 * u);
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) {
        for (int u = 0; u < U; u++) acc[s][r] = f32x4_madd(xv[u], wasm_v128_load(w[s] + PANEL_ROWS * p + 16 * u + 4 * r), acc[s][r]);
        if constexpr (GEMV1_SCHEDULE_PIN) pin[NR * s + r] = acc[s][r];
      }
  }
  for (; p < k4; p += 4) {
    const v128_t xv = wasm_v128_load(x + p);
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) acc[s][r] = f32x4_madd(xv, wasm_v128_load(w[s] + PANEL_ROWS * p + 4 * r), acc[s][r]);
  }
  for (int s = 0; s < S; s++) {
    alignas(16) float out[1][NR];
    for (int r = 0; r < NR; r++) {
      const v128_t a = acc[s][r];
      float t = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      for (size_t q = k4; q < k; q++) t += x[q] * PanelW::elem(ws[s], 0, r, q);
      out[0][r] = t;
    }
    f32_store_tile__simd128<1, NR>(out, y + js[s], ldy, false, ep, 0, js[s]);
  }
}

// m = 1, columns [j0, j1): the whole panels by the one-panel tile, or from k = PEFT_PANEL_GEMV1_STREAMS_MIN_K in S
// parts swept in step (panel i of every part: the streams tile above; the panels left over alone), the rows of a cut
// panel (an exported column range need not start or end on one) by linear.h's 1 × 1 tile on PanelW. Out of line: its
// own registers, as the row-major drivers; one copy without an epilogue (EP = false: `ep` is null), where V8 keeps
// more of the streams tile's accumulators in registers (with the epilogue's code in the same function the two-stream
// tile spilled them: 0.55× on a W in L2).
template <bool EP>
__attribute__((noinline)) static void f32_gemv1_panels__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                               const float* x, const float* w, float* y,
                                                               const Epilogue* ep) {
  if constexpr (!EP) ep = nullptr;
  size_t j = j0;
  for (; j < j1 && j % PANEL_ROWS != 0; j++) f32_gemm__simd128<1, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
  const size_t panels = j < j1 ? (j1 - j) / PANEL_ROWS : 0;
  constexpr int S = PEFT_PANEL_GEMV1_STREAMS;
  const size_t part = k >= PEFT_PANEL_GEMV1_STREAMS_MIN_K ? panels / S * PANEL_ROWS : 0;
  for (size_t i = 0; i < part; i += PANEL_ROWS) {
    const float* ws[S];
    size_t js[S];
    for (int s = 0; s < S; s++) js[s] = j + s * part + i, ws[s] = panel_row(w, k, js[s]);
    f32_gemv1_panel_streams__simd128<S, PEFT_PANEL_GEMV1_STREAMS_U>(k, x, ws, y, n, ep, js);
  }
  j += S * part;
  for (; j + PANEL_ROWS <= j1; j += PANEL_ROWS) f32_gemv1_panel__simd128<PEFT_PANEL_GEMV1_U>(k, x, panel_row(w, k, j), y + j, n, ep, j);
  for (; j < j1; j++) f32_gemm__simd128<1, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
}

// m = M ≤ 4, S panels far apart in step: the m = 1 streams tile above with every row of x against each line (M·4·S
// accumulators), each output exactly as the M × 4 tile (f32_gemm__simd128<M, 4, PanelW>) computes it, so the same
// bits. One panel at a time that tile keeps one read stream, which a single core cannot keep full. Measured (AMD Zen
// 5, Node 20, one thread, W cold, bits checked equal, ÷ before in one process; k × n 4096², 8192 × 2048, 2048², 4864
// × 896, 2048 × 8192): m = 2, S = 4 ÷ the one-panel 2 × 4 tile 1.22–1.58× (S = 2 1.10–1.28×, S = 3 level with 4, S = 6
// 0.88–0.91× of 4); m = 3, S = 4 ÷ the GEMM 1.22–1.47× (S = 2 1.12–1.20×); m = 4 lost to the GEMM (0.90–0.93×, S = 2
// or 4), so it keeps it. 32 and 48 accumulators spill (V8 has 15 vector registers) and still win: what bounds a
// decode-sized m is how much of W one core keeps in flight. Rows below PEFT_PANEL_GEMV1_STREAMS_MIN_K keep one panel at
// a time (k ≤ 1024 with four streams: 0.76–0.89×). The relaxed build (Deno 2.9, fused multiply-add; four builds
// interleaved in one process) wants two: m = 2 S = 2 1.10–1.19× (S = 4 0.92–1.08×), m = 3 S = 2 1.02–1.16× the GEMM
// (S = 4 0.83–0.96×). Two threads (the threads build, Node, S = 4): m = 2 1.22–1.38×, m = 3 1.04–1.09×. S = 1 would
// mean no streams (the M × 4 tile alone).
#ifdef __wasm_relaxed_simd__
#define PEFT_PANEL_GEMV2_STREAMS_DEFAULT 2
#define PEFT_PANEL_GEMV3_STREAMS_DEFAULT 2
#else
#define PEFT_PANEL_GEMV2_STREAMS_DEFAULT 4
#define PEFT_PANEL_GEMV3_STREAMS_DEFAULT 4
#endif
#ifndef PEFT_PANEL_GEMV2_STREAMS
#define PEFT_PANEL_GEMV2_STREAMS PEFT_PANEL_GEMV2_STREAMS_DEFAULT
#endif
#ifndef PEFT_PANEL_GEMV3_STREAMS
#define PEFT_PANEL_GEMV3_STREAMS PEFT_PANEL_GEMV3_STREAMS_DEFAULT
#endif
template <int M, int S>
static inline void f32_gemvm_panel_streams__simd128(size_t k, const float* __restrict x, const float* const* ws,
                                                    float* __restrict y, size_t ldy, const Epilogue* ep,
                                                    const size_t* js, size_t i0 = 0) {
  constexpr int NR = PANEL_ROWS;
  v128_t acc[S][M][NR];
  for (int s = 0; s < S; s++)
    for (int i = 0; i < M; i++)
      for (int r = 0; r < NR; r++) acc[s][i][r] = wasm_f32x4_splat(0.0f);
  const size_t k4 = k & ~(size_t)3;
  const float* w[S];
  for (int s = 0; s < S; s++) w[s] = ws[s];
  for (size_t p = 0; p < k4; p += 4) {
    v128_t xv[M];
    for (int i = 0; i < M; i++) xv[i] = wasm_v128_load(x + i * k + p);
    for (int s = 0; s < S; s++)
      for (int r = 0; r < NR; r++) {
        const v128_t wv = wasm_v128_load(w[s] + PANEL_ROWS * p + 4 * r);
        for (int i = 0; i < M; i++) acc[s][i][r] = f32x4_madd(xv[i], wv, acc[s][i][r]);
      }
  }
  for (int s = 0; s < S; s++) {
    alignas(16) float out[M][NR];
    for (int i = 0; i < M; i++)
      for (int r = 0; r < NR; r++) {
        const v128_t a = acc[s][i][r];
        out[i][r] = (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                    (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3));
      }
    for (size_t q = k4; q < k; q++)
      for (int i = 0; i < M; i++)
        for (int r = 0; r < NR; r++) out[i][r] += x[i * k + q] * PanelW::elem(ws[s], 0, r, q);
    f32_store_tile__simd128<M, NR>(out, y + js[s], ldy, false, ep, i0, js[s]);
  }
}

// m ≥ 3, whole panels from j (a multiple of 4) to j1, in groups of S = PEFT_PAIR_STREAMS consecutive panels (64·k
// bytes, in L2 at k ≤ 4096): rows 0 and 1 through the m = 2 streams tile above (the one pass that brings W in from
// memory, over S streams in step), then every other row pair through the 2 × 4 tile panel by panel, W from L2. Each
// output exactly as the M × 4 tile computes it (the dot form's one order), so the same bits as every sweep. Returns
// where it stopped. Why: in the other sweeps the first row pair meets each line of W cold, through a tile that keeps
// one or eight streams of 2 KiB blocks in flight; the streams tile keeps more of W in flight per core (as at m = 2,
// where it beat the one-panel 2 × 4 tile by 1.22–1.58×). Measured (AMD Zen 5, Node 20, one thread, W cold, bits equal,
// the sweeps interleaved in one process; a phase where the host's memory was busy, read loops 20–28 GB/s): k = n =
// 4096, ÷ the fastest of the other three: m = 4 1.12×, 5 1.05×, 6 1.07×, 8 1.05–1.09×, 10 0.99×, 12 1.02×, 16 1.00×;
// m = 8 at k = n = 2048 1.03×, k 4864 n 896 1.10×, but k 896 n 4864 0.95× (short rows: below
// PEFT_PANEL_GEMV1_STREAMS_MIN_K this sweep is the packed one). S = 2 and 8 lost (0.91× and 0.82× of S = 4 at m = 8);
// the first three rows through the m = 3 streams tile 0.96×; every pair through the streams tile (W from L2) 0.74×.
#ifndef PEFT_PAIR_STREAMS
#define PEFT_PAIR_STREAMS 4
#endif
__attribute__((noinline)) static size_t f32_gemm_pair_streams_panels__simd128(size_t m, size_t n, size_t k, size_t j,
                                                                             size_t j1, const float* __restrict x,
                                                                             const float* __restrict w,
                                                                             float* __restrict y, const Epilogue* ep) {
  constexpr int S = PEFT_PAIR_STREAMS;
  for (; j + PANEL_ROWS * S <= j1; j += PANEL_ROWS * S) {
    const float* ws[S];
    size_t js[S];
    for (int s = 0; s < S; s++) js[s] = j + PANEL_ROWS * s, ws[s] = panel_row(w, k, js[s]);
    f32_gemvm_panel_streams__simd128<2, S>(k, x, ws, y, n, ep, js, 0);
    size_t i = 2;
    for (; i + 2 <= m; i += 2)
      for (int s = 0; s < S; s++) f32_gemm__simd128<2, 4, PanelW>(k, x + i * k, ws[s], y + i * n + js[s], k, 0, n, ep, i, js[s]);
    if (i < m)
      for (int s = 0; s < S; s++) f32_gemm__simd128<1, 4, PanelW>(k, x + i * k, ws[s], y + i * n + js[s], k, 0, n, ep, i, js[s]);
  }
  return j;
}

// m = M, columns [j0, j1): as f32_gemv1_panels__simd128 with M-row tiles (from k = PEFT_PANEL_GEMV1_STREAMS_MIN_K
// the whole panels in S parts through the streams tile above, the rest by the M × 4 tile).
template <int M, int S, bool EP>
__attribute__((noinline)) static void f32_gemvm_panels__simd128(size_t n, size_t k, size_t j0, size_t j1,
                                                               const float* x, const float* w, float* y,
                                                               const Epilogue* ep) {
  if constexpr (!EP) ep = nullptr;
  size_t j = j0;
  for (; j < j1 && j % PANEL_ROWS != 0; j++) f32_gemm__simd128<M, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
  if constexpr (S > 1) {
    const size_t panels = j < j1 ? (j1 - j) / PANEL_ROWS : 0;
    const size_t part = k >= PEFT_PANEL_GEMV1_STREAMS_MIN_K ? panels / S * PANEL_ROWS : 0;
    for (size_t i = 0; i < part; i += PANEL_ROWS) {
      const float* ws[S];
      size_t js[S];
      for (int s = 0; s < S; s++) js[s] = j + s * part + i, ws[s] = panel_row(w, k, js[s]);
      f32_gemvm_panel_streams__simd128<M, S>(k, x, ws, y, n, ep, js);
    }
    j += S * part;
  }
  for (; j + PANEL_ROWS <= j1; j += PANEL_ROWS) f32_gemm__simd128<M, 4, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
  for (; j < j1; j++) f32_gemm__simd128<M, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
}

// Up to this m the GEMV tiles below; above, the GEMM (m = 3: GEMM 1.02×, an M × 4 GEMV tile 0.94× the row-major GEMV).
#ifndef PEFT_PANEL_GEMV_MAX_M
#define PEFT_PANEL_GEMV_MAX_M 2
#endif
// On rows from PEFT_PANEL_GEMV1_STREAMS_MIN_K the streams tiles take m = 3 too (they beat the GEMM there, not at m = 4;
// see f32_gemvm_panel_streams__simd128). The largest m an f32 panel W runs through the GEMV tiles at this k.
static inline size_t f32_panel_gemv_max_m(size_t k) {
  return k >= PEFT_PANEL_GEMV1_STREAMS_MIN_K ? 3 : PEFT_PANEL_GEMV_MAX_M;
}
// m ≤ PEFT_PANEL_GEMV_MAX_M rows (and the scalar twins' m = 1), columns [j0, j1): M × 4 tiles on whole panels,
// single rows at the cuts.
template <class Isa, int M>
static inline void f32_gemv_panels(size_t n, size_t k, size_t j0, size_t j1, const float* x, const float* w, float* y,
                                   const Epilogue* ep) {
  size_t j = j0;
  for (; j < j1 && j % PANEL_ROWS != 0; j++) Isa::template gemm<M, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
  for (; j + PANEL_ROWS <= j1; j += PANEL_ROWS) Isa::template gemm<M, 4, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
  for (; j < j1; j++) Isa::template gemm<M, 1, PanelW>(k, x, panel_row(w, k, j), y + j, k, 0, n, ep, 0, j);
}

// The scalar twins' driver on panels (linear.h f32_gemm_columns): any m, 3-row tiles.
template <class Isa>
static inline void f32_gemm_columns_panels(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* x,
                                           const float* w, float* y, const Epilogue* ep) {
  size_t j = j0;
  for (; j < j1 && j % PANEL_ROWS != 0; j++) f32_gemm_column<Isa, 3, 1, PanelW>(m, k, x, panel_row(w, k, j), 0, y, n, ep, j);
  for (; j + PANEL_ROWS <= j1; j += PANEL_ROWS) f32_gemm_column<Isa, 3, 4, PanelW>(m, k, x, panel_row(w, k, j), 0, y, n, ep, j);
  for (; j < j1; j++) f32_gemm_column<Isa, 3, 1, PanelW>(m, k, x, panel_row(w, k, j), 0, y, n, ep, j);
}

// The k-block of a panel sweep with TUNE_PANEL_SWEEP = 1 (one panel at a time: its rows over up to this many columns).
#ifndef PEFT_PANEL_KC_WHOLE
#define PEFT_PANEL_KC_WHOLE 4096
#endif
// G panels per k-block of KC columns, their lanes side by side in scratch ([G][m][4]), for columns [j, j1) while
// whole groups fit; returns where it stopped.
template <size_t G>
static inline size_t f32_gemm_dot_panel_groups(size_t m, size_t n, size_t k, size_t KC, size_t j, size_t j1,
                                               const float* __restrict x, const float* __restrict w, float* __restrict y,
                                               const Epilogue* ep, float* __restrict scratch) {
  const auto tail = [w, k](size_t jj, size_t p) { return PanelW::elem(panel_row(w, k, jj), 0, 0, p); };
  v128_t* lanes = (v128_t*)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
  const size_t k4 = k & ~(size_t)3;
  for (; j + PANEL_ROWS * G <= j1; j += PANEL_ROWS * G) {
    for (size_t q = 0; q < G * m * 4; q++) lanes[q] = wasm_f32x4_splat(0.0f);
    for (size_t p0 = 0; p0 < k4; p0 += KC) {
      const size_t kc = p0 + KC < k4 ? KC : k4 - p0;
      for (size_t g = 0; g < G; g++) {
        const float* wg = panel_row(w, k, j + PANEL_ROWS * g) + PANEL_ROWS * p0;
        f32_gemm_dot_rows__simd128<4, PanelW>(m, kc, x + p0, k, wg, 0, lanes + g * m * 4);
      }
    }
    for (size_t g = 0; g < G; g++)
      f32_gemm_dot_finish__simd128<4>(m, n, k, x, lanes + g * m * 4, y, ep, j + PANEL_ROWS * g, tail);
  }
  return j;
}

// m ≥ PEFT_F32_PACKED_MIN_M, whole panels from j (a multiple of 4) to j1: x in row pairs once per call; a panel's
// k-block is already the [kc/4][4][4] strip the packed tile reads. Returns where it stopped. Out of line, with two
// call sites: inlined into f32_linear_cols (every GEMV's code in one wasm function), V8 spilled the tile's
// accumulators and it ran 0.64–0.80× the unpacked GEMM.
__attribute__((noinline)) static size_t f32_gemm_packed_panels__simd128(size_t m, size_t n, size_t k, size_t j, size_t j1,
                                                                       const float* __restrict x, const float* __restrict w,
                                                                       float* __restrict y, const Epilogue* ep,
                                                                       float* __restrict scratch,
                                                                       const float* __restrict staged) {
  v128_t* lanes = (v128_t*)(((uintptr_t)scratch + 15) & ~(uintptr_t)15);
  const float* xp = staged;
  if (!xp) {
    float* own = (float*)lanes + m * 16;
    f32_pack_row_pairs__simd128(m, k, x, own);
    xp = own;
  }
  const auto strip4 = [w, k](size_t jj, size_t p0, size_t) { return panel_row(w, k, jj) + PANEL_ROWS * p0; };
  const auto tail = [w, k](size_t jj, size_t p) { return PanelW::elem(panel_row(w, k, jj), 0, 0, p); };
  return f32_gemm_packed_strips__simd128(m, n, k, PEFT_F32_PACKED_KC, j, j1, x, xp, y, ep, lanes, strip4, tail);
}

// m > PEFT_PANEL_GEMV_MAX_M: linear.h's f32_gemm_dot with a panel as its 4-row strip (a k-step's 4 W loads at
// constant offsets from one pointer), the packed form above from PEFT_F32_PACKED_MIN_M on; the columns before the
// first panel as single strips. Below PEFT_F32_PACKED_MIN_M the sweep is a tuning knob (tuning.h TUNE_PANEL_SWEEP,
// same bits either way): 0, PEFT_PANEL_GROUP = 8 panels per k-block of PEFT_GEMM_KC_SMALL columns; 1, one panel at a
// time over PEFT_PANEL_KC_WHOLE columns; 2, the packed form; 3, the first row pair over streams of panels, the rest
// from L2 (f32_gemm_pair_streams_panels__simd128). Measured (Zen 5, k = n = 4096, m = 8, GFLOP/s, the
// row-major W in the same run): Node 20 one thread 43.0 / 34.9 (row-major 37.9; one panel per 128-column block ran
// 0.74× the row-major W, 2 panels 0.73×, 4 1.17×); Deno 2.9, a newer V8, one thread 22.2 / 32.2 (33.9); two threads
// in Node: 8 panels ran slower than one thread (7.4 against 6.6 ms), one panel scales 1.9×. The packed form (a later
// session, W cold, ÷ the alternatives in one process): one thread in Node 0.88–0.91× 8 panels at m = 8, 0.97–1.01× at
// m = 16; two threads 1.03–1.09× one panel at m = 8 and 1.06–1.07× at m = 16 (k = n = 2048 and 4096), but on two
// threads 8 panels beat it at m = 6 … 12 and packed won at m = 4, 5 (a later session). So the backend times the three
// (src/backends/wasm/panel-sweep.ts): on one thread once for every m, across threads per m.
__attribute__((noinline)) static void f32_gemm_dot_panels(size_t m, size_t n, size_t k, size_t j0, size_t j1,
                                                          const float* __restrict x, const float* __restrict w,
                                                          float* __restrict y, const Epilogue* ep,
                                                          float* __restrict scratch, const float* __restrict staged) {
  const auto strip = [w, k](size_t j, size_t, size_t p0, size_t) { return WStrip{panel_row(w, k, j) + PANEL_ROWS * p0, 0}; };
  const auto tail = [w, k](size_t j, size_t p) { return PanelW::elem(panel_row(w, k, j), 0, 0, p); };
  size_t j = (j0 + PANEL_ROWS - 1) / PANEL_ROWS * PANEL_ROWS;
  if (j > j1) j = j1;
  if (j0 < j) f32_gemm_dot<PanelW>(m, n, k, j0, j, x, y, ep, scratch, strip, tail);
  const int sweep = g_tuning.panel_sweep == 3 && k < PEFT_PANEL_GEMV1_STREAMS_MIN_K ? 2 : g_tuning.panel_sweep;
  if (m < PEFT_F32_PACKED_MIN_M && sweep == 3) {
    // Two call sites, so wasm-opt keeps it out of line (as below).
    if (ep) j = f32_gemm_pair_streams_panels__simd128(m, n, k, j, j1, x, w, y, ep);
    else j = f32_gemm_pair_streams_panels__simd128(m, n, k, j, j1, x, w, y, nullptr);
  } else if (m < PEFT_F32_PACKED_MIN_M && sweep != 2) {
    if (sweep == 0) j = f32_gemm_dot_panel_groups<PEFT_PANEL_GROUP>(m, n, k, PEFT_GEMM_KC_SMALL, j, j1, x, w, y, ep, scratch);
    else j = f32_gemm_dot_panel_groups<1>(m, n, k, PEFT_PANEL_KC_WHOLE, j, j1, x, w, y, ep, scratch);
  } else {
    // Two call sites on purpose: wasm-opt inlines a function called once whatever its attributes.
    if (ep) j = f32_gemm_packed_panels__simd128(m, n, k, j, j1, x, w, y, ep, scratch, staged);
    else j = f32_gemm_packed_panels__simd128(m, n, k, j, j1, x, w, y, nullptr, scratch, staged);
  }
  if (j < j1) f32_gemm_dot<PanelW>(m, n, k, j, j1, x, y, ep, scratch, strip, tail);
}

// Columns [j0, j1) of y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ), W in panels: linear.h f32_linear_cols with ldw = 0
// comes here (after its LoRA split, so a SIMD128 call's `ep` carries no LoRA terms). `staged`: null, or x's row pairs
// for all m rows, packed once by the caller (row i's pair at staged + i·k4).
template <class Isa, class P>
static inline void f32_linear_panels(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* __restrict x,
                                     const float* __restrict w, float* __restrict y, const Epilogue* ep,
                                     float* __restrict scratch, const float* __restrict staged) {
  static_assert(PANEL_ROWS == 4, "a panel is one 4-row strip of the GEMM and one M x 4 GEMV tile");
  if constexpr (__is_same(P, PackedScalar)) {
    f32_gemm_columns_panels<Isa>(m, n, k, j0, j1, x, w, y, ep);
  } else if (m == 1) {
    if (ep) f32_gemv1_panels__simd128<true>(n, k, j0, j1, x, w, y, ep);
    else f32_gemv1_panels__simd128<false>(n, k, j0, j1, x, w, y, nullptr);
  } else if (m <= PEFT_PANEL_GEMV_MAX_M) {
    if (m == 2) {
      if (ep) f32_gemvm_panels__simd128<2, PEFT_PANEL_GEMV2_STREAMS, true>(n, k, j0, j1, x, w, y, ep);
      else f32_gemvm_panels__simd128<2, PEFT_PANEL_GEMV2_STREAMS, false>(n, k, j0, j1, x, w, y, nullptr);
    }
    else f32_gemv_panels<Simd128, PEFT_PANEL_GEMV_MAX_M>(n, k, j0, j1, x, w, y, ep);
  } else if (m <= f32_panel_gemv_max_m(k)) {  // m = 3, long rows
    if (ep) f32_gemvm_panels__simd128<3, PEFT_PANEL_GEMV3_STREAMS, true>(n, k, j0, j1, x, w, y, ep);
    else f32_gemvm_panels__simd128<3, PEFT_PANEL_GEMV3_STREAMS, false>(n, k, j0, j1, x, w, y, nullptr);
  } else {
    const size_t mb = f32_gemm_row_block(m, k);
    for (size_t i = 0; i < m; i += mb) {
      // Two call sites, so wasm-opt keeps it out of line (it inlines a function called once): inlined here, with the
      // streams drivers' calls beside it, V8 ran its 8-panel sweep at 0.62× (m = 8, k = n = 4096, Node 20).
      const float* st = staged ? f32_row_pair(staged, i, k) : nullptr;
      if (ep) f32_gemm_dot_panels(m - i < mb ? m - i : mb, n, k, j0, j1, x + i * k, w, y + i * n, ep, scratch, st);
      else f32_gemm_dot_panels(m - i < mb ? m - i : mb, n, k, j0, j1, x + i * k, w, y + i * n, nullptr, scratch, st);
    }
  }
}

}  // namespace peft
