// quant.h: MLX affine-quantised weights (4 or 8 bits, group 32/64/128) — dequantisation and the quantised
// linear (GEMV / GEMM) with the same epilogue as linear.h.
//
// Contract
//   Wq [n, k·bits/32] u32: element j of a row is in word ⌊j/(32/bits)⌋ at bit (j mod (32/bits))·bits, low bits
//   first (so, little-endian, byte b of a 4-bit row holds elements 2b (low nibble) and 2b+1 (high nibble)).
//   scales, biases [n, k/group] f32.  W[i,j] = scales[i,g]·q[i,j] + biases[i,g], g = ⌊j/group⌋ (one f32
//   multiply-add, rounded as written: the kernels and the reference agree bit for bit on W).
//   Requires k % group == 0 and group ∈ {32, 64, 128}, so a 32-element chunk never straddles two groups.
// Linear
//   y = epilogue(x · Wᵀ). SIMD128: for m ≤ QUANT_GEMV_MAX_M (2) the fused GEMV that never writes W out (f32_qgemv, below); above,
//   a GEMM (f32_qgemm) that decodes W strip by strip into L1 once per call and does the GEMV's arithmetic in the
//   GEMV's order for every element, so a row's bits never depend on the batch.
//   In the scalar reference: strips of QUANT_STRIP rows are dequantised into caller scratch
//   [QUANT_STRIP, k] f32 and fed to the f32 GEMM of linear.h; the packed weight is read once per call, the f32
//   strip stays in L1/L2. Its order is linear.h's (k order on the dequantised W), also the same for every m;
//   it agrees with the SIMD kernel within tolerance, not bit for bit (the fused form sums per group first).
//   Accuracy: that of linear.h on the dequantised W (the fused GEMV: see there).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>
#include "linear.h"

namespace peft {

// Rows dequantised per strip (a multiple of the GEMM's NR).
constexpr size_t QUANT_STRIP = 16;

// Run-time constants (see linear_bf16.h): compile-time v128.consts are rematerialised inside the loop by V8.
static volatile uint32_t g_q_low4 = 0x0f0f0f0fu;     // the low nibble of every byte
static volatile uint32_t g_q_magic = 0x4b000000u;    // 2^23 as f32: (bits | 2^23) − 2^23 = the integer, exactly
static volatile uint32_t g_q_code4 = 0x0000000fu;    // one 4-bit code per u32 lane
static volatile uint32_t g_q_code8 = 0x000000ffu;    // one 8-bit code per u32 lane
struct QConsts {
  v128_t low4, magic, code4, code8;
  v128_t code4at[7];  // code c of a u32 lane in place: 0xf << 4c (c ≤ 6; code 7 would set the sign bit)
  v128_t code8at[3];  // the same for 8-bit codes: 0xff << 8c (c ≤ 2)
  QConsts()
      : low4(wasm_i32x4_splat((int32_t)g_q_low4)), magic(wasm_i32x4_splat((int32_t)g_q_magic)),
        code4(wasm_i32x4_splat((int32_t)g_q_code4)), code8(wasm_i32x4_splat((int32_t)g_q_code8)) {
    for (int c = 0; c < 7; c++) code4at[c] = wasm_i32x4_shl(code4, 4 * c);
    for (int c = 0; c < 3; c++) code8at[c] = wasm_i32x4_shl(code8, 8 * c);
  }
};
// x's factor for code c of a lane: 16^−c (4 bits) or 256^−c (8 bits) where the code is decoded in place (q·16^c,
// q·256^c), 1 for the top code (shifted down). Exact (powers of two), so x·16^−c · q·16^c rounds to the bits of x·q
// (unless x·16^−c is subnormal: |x| < 2^−102).
static constexpr float kQ4Scale[8] = {1.0f, 0x1p-4f, 0x1p-8f, 0x1p-12f, 0x1p-16f, 0x1p-20f, 0x1p-24f, 1.0f};
static constexpr float kQ8Scale[4] = {1.0f, 0x1p-8f, 0x1p-16f, 1.0f};

// The quantised kernels' multiply-add: unfused in every build. The relaxed build's fused op lengthens each group's
// chain of multiply-adds (latency ≈ 4 cycles, not the add's 3): the m = 1 GEMV ran 0.83–0.88× the SIMD128 build's
// (Deno 2.9, k = n = 4096, 4- and 8-bit), and decode is what a quantised W is for. The GEMV and the GEMM share it
// (batch invariance), and both builds give the same bits.
static inline v128_t q_madd(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(c, wasm_f32x4_mul(a, b)); }

// u32 lanes (< 2^23) → f32 as (u | 2^23) − 2^23: two ops, exact. (LLVM turns extend + f32x4.convert_i32x4 into
// 4 scalar extract/convert/replace per vector here, 5× slower.)
static inline v128_t u32x4_to_f32x4_exact(v128_t u, const QConsts& c) {
  return wasm_f32x4_sub(wasm_v128_or(u, c.magic), c.magic);
}


// out [rows, k] = dequantised rows of Wq (row stride k·bits/32 words), scales/biases (row stride k/group).
static inline void f32_dequantize__scalar(size_t rows, size_t k, size_t bits, size_t group,
                                          const uint32_t* __restrict wq, const float* __restrict scales,
                                          const float* __restrict biases, float* __restrict out) {
  assert(bits == 4 || bits == 8);
  const size_t per_word = 32 / bits, words = k / per_word, groups = k / group;
  const uint32_t mask = (1u << bits) - 1;
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < k; j++) {
      const uint32_t q = (wq[i * words + j / per_word] >> ((j % per_word) * bits)) & mask;
      const size_t g = i * groups + j / group;
      out[i * k + j] = scales[g] * (float)q + biases[g];
    }
}

static inline void f32_dequantize__simd128(size_t rows, size_t k, size_t bits, size_t group,
                                           const uint32_t* __restrict wq, const float* __restrict scales,
                                           const float* __restrict biases, float* __restrict out) {
  assert((bits == 4 || bits == 8) && k % 32 == 0 && group % 32 == 0);
  const size_t row_bytes = k * bits / 8, groups = k / group;
  const QConsts consts;
  const v128_t low4 = consts.low4;
  for (size_t i = 0; i < rows; i++) {
    const uint8_t* src = (const uint8_t*)wq + i * row_bytes;
    float* o = out + i * k;
    for (size_t j = 0; j < k; j += 32) {
      const size_t g = i * groups + j / group;
      const v128_t sv = wasm_f32x4_splat(scales[g]), bv = wasm_f32x4_splat(biases[g]);
      v128_t e[2];  // 32 elements as u8
      if (bits == 4) {
        const v128_t v = wasm_v128_load(src + j / 2);
        const v128_t lo = wasm_v128_and(v, low4), hi = wasm_v128_and(wasm_u16x8_shr(v, 4), low4);
        e[0] = wasm_i8x16_shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        e[1] = wasm_i8x16_shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      } else {
        e[0] = wasm_v128_load(src + j);
        e[1] = wasm_v128_load(src + j + 16);
      }
      for (int h = 0; h < 2; h++) {
        const v128_t w0 = wasm_u16x8_extend_low_u8x16(e[h]), w1 = wasm_u16x8_extend_high_u8x16(e[h]);
        const v128_t q[4] = {wasm_u32x4_extend_low_u16x8(w0), wasm_u32x4_extend_high_u16x8(w0),
                             wasm_u32x4_extend_low_u16x8(w1), wasm_u32x4_extend_high_u16x8(w1)};
        for (int c = 0; c < 4; c++)
          wasm_v128_store(o + j + 16 * h + 4 * c, wasm_f32x4_add(wasm_f32x4_mul(sv, u32x4_to_f32x4_exact(q[c], consts)), bv));
      }
    }
  }
}

struct QuantSimd128 : Simd128 {
  static constexpr bool kFusedQGemv = true;
  static inline void dequantize(size_t rows, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                const float* scales, const float* biases, float* out) {
    f32_dequantize__simd128(rows, k, bits, group, wq, scales, biases, out);
  }
};
struct QuantScalar : Scalar {
  static constexpr bool kFusedQGemv = false;
  static inline void dequantize(size_t rows, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                const float* scales, const float* biases, float* out) {
    f32_dequantize__scalar(rows, k, bits, group, wq, scales, biases, out);
  }
};

// ---------------------------------------------------------------------------------------------------------
// Decode (m ≤ QUANT_GEMV_MAX_M, SIMD128), fused: W is decoded in registers and never written out. Per group g of a row,
//   Σ_p x_p·(s_g·q_p + b_g) = s_g·(Σ_p x_p·q_p) + b_g·(Σ_p x_p)        (MLX's qmv form)
// so a weight costs its unpack, one int→float convert and one multiply-add; Σ_p x_p per group (xs [M, k/group])
// and x permuted to the codes' lane order (xq [M, k]) are made once per call in scratch.
// Codes are cut out of u32 lanes: vector c = (v >> bits·c) & mask, then f32x4.convert_i32x4_s (one op; the
// values are < 256, so exact). Every code but a lane's top one skips the shift: v & (mask << bits·c) = q·2^(bits·c),
// exact in f32 and positive (the top code would set the sign bit), against x·2^(−bits·c) in xq (kQ4Scale, kQ8Scale),
// so each product has x·q's bits. Measured (one thread, W cold, ÷ shifting every code, one process): 4-bit m = 1
// 1.03–1.06× in Node, 1.05–1.08× in Deno, m = 8 1.06×; 8-bit m = 1 1.04–1.07×, m = 8 1.05×. The shift is arithmetic
// and the masks run-time constants on purpose: a value clang can prove non-negative it converts with
// f32x4.convert_i32x4_u (clang 19: the threads and relaxed builds), which V8 emulates in ~10 instructions on x86
// (4-bit decode with 2 threads ran 0.89× one thread). 4 bits: one v128 = 32 codes, u32 lane l holds codes 8l … 8l+7,
// so vector c holds codes {c, 8+c, 16+c, 24+c} and per 32-block xq[4c + l] = x[8l + c]·kQ4Scale[c]. 8 bits: per 16
// codes, vector c holds {c, 4+c, 8+c, 12+c}, xq[4c + l] = x[4l + c]·kQ8Scale[c]. (Widening u8 → u16 → u32 and converting with the 2^23 trick took 31 ops per 32
// codes against 23 here.) Accuracy: the two terms can cancel (b ≈ −s·2^(bits−1) for symmetric ranges): error
// ≲ (k/4 + groups)·2⁻²⁴·Σ_p |x_p|·(|s·q_p| + |b|).
static inline void f32_qgemv_prepare(size_t m, size_t k, size_t bits, size_t group, const float* __restrict x,
                                     float* __restrict xq, float* __restrict xs) {
  const size_t groups = k / group;
  for (size_t i = 0; i < m; i++) {
    const float* xr = x + i * k;
    float* d = xq + i * k;
    for (size_t g = 0; g < groups; g++) {
      float sum = 0.0f;
      for (size_t p = g * group; p < (g + 1) * group; p++) sum += xr[p];
      xs[i * groups + g] = sum;
    }
    if (bits == 4) {
      // Codes 0 … 6 of a lane are decoded in place, as q·16^c (f32_qdecode32__simd128), so their x carries 16^−c.
      for (size_t p = 0; p < k; p += 32)
        for (size_t c = 0; c < 8; c++)
          for (size_t l = 0; l < 4; l++) d[p + 4 * c + l] = xr[p + 8 * l + c] * kQ4Scale[c];
    } else {
      for (size_t p = 0; p < k; p += 16)
        for (size_t c = 0; c < 4; c++)
          for (size_t l = 0; l < 4; l++) d[p + 4 * c + l] = xr[p + 4 * l + c] * kQ8Scale[c];
    }
  }
}

// Codes of one 32-block (4 bits) or two 16-blocks (8 bits) as 8 f32 vectors, in xq's order (see above).
template <int BITS>
static inline void f32_qdecode32__simd128(const uint8_t* __restrict src, const QConsts& c, v128_t (&q)[8]) {
  if (BITS == 4) {
    const v128_t v = wasm_v128_load(src);
    for (int k = 0; k < 7; k++) q[k] = wasm_f32x4_convert_i32x4(wasm_v128_and(v, c.code4at[k]));
    q[7] = wasm_f32x4_convert_i32x4(wasm_v128_and(wasm_i32x4_shr(v, 28), c.code4));
  } else {
    for (int h = 0; h < 2; h++) {
      const v128_t v = wasm_v128_load(src + 16 * h);
      for (int k = 0; k < 3; k++) q[4 * h + k] = wasm_f32x4_convert_i32x4(wasm_v128_and(v, c.code8at[k]));
      q[4 * h + 3] = wasm_f32x4_convert_i32x4(wasm_v128_and(wasm_i32x4_shr(v, 24), c.code8));
    }
  }
}

// NR rows of Wq × all M rows of x → out [M][NR], then linear.h's SIMD epilogue.
template <int BITS, int M, int NR>
static inline void f32_qgemv_rows__simd128(size_t k, size_t group, const float* __restrict xq,
                                           const float* __restrict xs, const uint8_t* __restrict wq,
                                           const float* __restrict scales, const float* __restrict biases,
                                           float* __restrict y, size_t ldy, const Epilogue* ep, size_t j0) {
  constexpr int P = 1;  // one partial sum per x row and column, the same for every M (batch invariance)
  const size_t groups = k / group, row_bytes = k * BITS / 8, blocks = group / 32;
  const QConsts consts;
  alignas(16) float out[M][NR];
  for (int j = 0; j < NR; j++) {
    const uint8_t* wr = wq + j * row_bytes;
    const float* sr = scales + j * groups;
    const float* br = biases + j * groups;
    v128_t row[M];
    float bsum[M];
    for (int i = 0; i < M; i++) {
      row[i] = wasm_f32x4_splat(0.0f);
      bsum[i] = 0.0f;
    }
    for (size_t g = 0; g < groups; g++) {
      v128_t acc[M][P];
      for (int i = 0; i < M; i++)
        for (int c = 0; c < P; c++) acc[i][c] = wasm_f32x4_splat(0.0f);
      for (size_t bl = 0; bl < blocks; bl++) {
        const size_t p = (g * blocks + bl) * 32;
        v128_t q[8];
        f32_qdecode32__simd128<BITS>(wr + p * BITS / 8, consts, q);
        for (int i = 0; i < M; i++) {
          const float* xr = xq + i * k + p;
          for (int c = 0; c < 8; c++)
            acc[i][c % P] = q_madd(wasm_v128_load(xr + 4 * c), q[c], acc[i][c % P]);
        }
      }
      const v128_t sv = wasm_f32x4_splat(sr[g]);
      for (int i = 0; i < M; i++) {
        v128_t a = acc[i][0];
        if (P == 2) a = wasm_f32x4_add(a, acc[i][P - 1]);
        row[i] = wasm_f32x4_add(row[i], wasm_f32x4_mul(sv, a));
        bsum[i] += br[g] * xs[i * groups + g];
      }
    }
    for (int i = 0; i < M; i++) {
      const v128_t a = row[i];
      out[i][j] = ((wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                   (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3))) +
                  bsum[i];
    }
  }
  f32_store_tile__simd128<M, NR>(out, y, ldy, false, ep, 0, j0);
}

template <int BITS, int M>
static inline void f32_qgemv__simd128(size_t n, size_t k, size_t j0, size_t j1, size_t group, const float* xq, const float* xs,
                                      const uint32_t* wq, const float* scales, const float* biases, float* y,
                                      const Epilogue* ep) {
  const size_t row_bytes = k * BITS / 8, groups = k / group;
  const uint8_t* w8 = (const uint8_t*)wq;
  size_t j = j0;
  for (; j + 4 <= j1; j += 4)
    f32_qgemv_rows__simd128<BITS, M, 4>(k, group, xq, xs, w8 + j * row_bytes, scales + j * groups,
                                        biases + j * groups, y + j, n, ep, j);
  for (; j < j1; j++)
    f32_qgemv_rows__simd128<BITS, M, 1>(k, group, xq, xs, w8 + j * row_bytes, scales + j * groups,
                                        biases + j * groups, y + j, n, ep, j);
}

template <int BITS>
static inline void f32_qgemv_m__simd128(size_t m, size_t n, size_t k, size_t j0, size_t j1, size_t group,
                                        const float* xq, const float* xs, const uint32_t* wq, const float* scales,
                                        const float* biases, float* y, const Epilogue* ep) {
  switch (m) {
    case 1: f32_qgemv__simd128<BITS, 1>(n, k, j0, j1, group, xq, xs, wq, scales, biases, y, ep); return;
    case 2: f32_qgemv__simd128<BITS, 2>(n, k, j0, j1, group, xq, xs, wq, scales, biases, y, ep); return;
    case 3: f32_qgemv__simd128<BITS, 3>(n, k, j0, j1, group, xq, xs, wq, scales, biases, y, ep); return;
    default: f32_qgemv__simd128<BITS, 4>(n, k, j0, j1, group, xq, xs, wq, scales, biases, y, ep); return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Prefill (m > QUANT_GEMV_MAX_M, SIMD128), f32_qgemm: the fused GEMV's arithmetic, element for element, with W
// decoded once per call instead of once per 4 rows. Per strip of 4 W rows and k-block of KC (whole groups), the
// strip's codes are decoded into qs [kc/4][4][4] (f32 integers in xq's order, 8 KiB: stays in L1) and swept by every
// row of x in 2×4 tiles. For output (i, j) and group g the tile computes acc = Σ madd(xq, q) over the group in the
// GEMV's order, then lanes[i][j] = lanes + s_g·acc (the GEMV's `row`, carried between groups and k-blocks in
// scratch P [m][4]); the bias term Σ_g b_g·xs[i,g] and the lane sum are added at the end as the GEMV adds them.
// So a row's bits are the same for every m (batch invariance) at the GEMM's speed.
// Up to this m the fused GEMV; above, the GEMM. Measured (4-bit g64, W cold, GEMM ÷ GEMV in one run, k = n = 4096 /
// k = 896 n = 4864): m = 4 1.20× / 1.27×, m = 3 1.06× / 1.16×, m = 2 0.95× / 1.17×, m = 1 0.68×.
#ifndef PEFT_QUANT_GEMV_MAX_M
#define PEFT_QUANT_GEMV_MAX_M 2
#endif
constexpr size_t QUANT_GEMV_MAX_M = PEFT_QUANT_GEMV_MAX_M;
#ifndef PEFT_QUANT_KC
#define PEFT_QUANT_KC 512
#endif
constexpr size_t QUANT_KC = PEFT_QUANT_KC;  // a multiple of every group size (32, 64, 128)
// The tile: 2 rows of x × 4 W rows. Measured (k = n = 4096, 4-bit g64, ÷ the f32 GEMM's time at m = 8 / 64):
// 2×4 0.99 / 0.88, 3×4 0.81 / 0.64, 2×2 0.87 / 0.73, 1×4 0.83 / 0.68, 2×1 0.68 / 0.55.
constexpr int QMR = 2, QNR = 4;

// codes of W rows [0, rows ≤ 4) (row stride row_bytes), elements [p0, p0 + kc) → qs [kc/4][4][4] f32 in xq's order,
// the rows' 4-element chunks side by side (a panel's layout, linear_panel.h): a k-step of the tile below is one
// 64-byte line at constant offsets from one pointer.
template <int BITS>
static inline void f32_qdecode_strip__simd128(size_t rows, size_t kc, size_t p0, size_t row_bytes,
                                              const uint8_t* __restrict wq, float* __restrict qs) {
  const QConsts consts;
  for (size_t j = 0; j < rows; j++)
    for (size_t p = 0; p < kc; p += 32) {
      v128_t q[8];
      f32_qdecode32__simd128<BITS>(wq + j * row_bytes + (p0 + p) * BITS / 8, consts, q);
      for (int c = 0; c < 8; c++) wasm_v128_store(qs + 4 * (p + 4 * c) + 4 * j, q[c]);
    }
}

// MR rows of x × NR decoded W rows over one k-block: per group, fresh accumulators, then lanes += s·acc (the lanes
// are locals over the block; at 2×4 V8 keeps the accumulators in registers and the lanes on the stack).
template <int MR, int NR>
static inline void f32_qgemm_block__simd128(size_t kc, size_t group, const float* __restrict xq, size_t ldx,
                                            const float* __restrict qs, const float* __restrict sc, size_t lds,
                                            v128_t* __restrict lanes) {
  v128_t row[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) row[i][j] = lanes[i * 4 + j];
  for (size_t g0 = 0; g0 < kc; g0 += group) {
    // The group's first step starts each sum from the product itself, not 0 + product: equal for every nonzero
    // product, and a −0 sum can only meet a lane that is never −0 (lanes start at +0 and a round-to-nearest sum is
    // −0 only from two −0 terms), so the GEMV's bits hold. Saves 16 ops of ~400 per group.
    // Loads at constant offsets from bumped pointers (x rows, the interleaved strip), as linear.h's dot tile. Measured
    // (k = n = 4096, 4-bit g64, W cold, ÷ the strip row by row and loads at p + j·kc, one process, same bits): the
    // clang-19 builds Deno relaxed one thread 1.13× / 1.17× at m = 8 / 64, two threads (Node) 1.08–1.22× at m = 8 …
    // 256; emcc's SIMD128 build 0.94–0.96× at m = 8, 0.99–1.08× at m ≥ 16. (Row by row, clang 19's code ran
    // 0.85–0.91× emcc's on one thread, what held two threads to 1.52–1.54× one.)
    const float* xr[MR];
    for (int i = 0; i < MR; i++) xr[i] = xq + i * ldx + g0;
    const float* qp = qs + 4 * g0;
    const float* const qend = qp + 4 * group;
    v128_t acc[MR][NR];
    {
      v128_t xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = wasm_v128_load(xr[i]);
      for (int j = 0; j < NR; j++) {
        const v128_t qv = wasm_v128_load(qp + 4 * j);
        for (int i = 0; i < MR; i++) acc[i][j] = wasm_f32x4_mul(xv[i], qv);
      }
    }
    for (qp += 16; qp < qend; qp += 16) {
      v128_t xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = wasm_v128_load(xr[i] += 4);
      for (int j = 0; j < NR; j++) {
        const v128_t qv = wasm_v128_load(qp + 4 * j);
        for (int i = 0; i < MR; i++) acc[i][j] = q_madd(xv[i], qv, acc[i][j]);
      }
    }
    const size_t g = g0 / group;
    for (int j = 0; j < NR; j++) {
      const v128_t sv = wasm_f32x4_splat(sc[j * lds + g]);
      for (int i = 0; i < MR; i++) row[i][j] = wasm_f32x4_add(row[i][j], wasm_f32x4_mul(sv, acc[i][j]));
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) lanes[i * 4 + j] = row[i][j];
}

// Columns [j0, j1) for all m rows; xq [m,k], xs [m,groups] prepared; lanes: P [m][4] v128; qs: [QUANT_KC/4][4][4];
// bt: [groups][4].
template <int BITS>
__attribute__((noinline)) static void f32_qgemm__simd128(size_t m, size_t n, size_t k, size_t j0, size_t j1,
                                                         size_t group, const float* __restrict xq,
                                                         const float* __restrict xs, const uint32_t* __restrict wq,
                                                         const float* __restrict scales, const float* __restrict biases,
                                                         float* __restrict y, const Epilogue* ep,
                                                         v128_t* __restrict lanes, float* __restrict qs,
                                                         float* __restrict bt) {
  const size_t row_bytes = k * BITS / 8, groups = k / group;
  const uint8_t* w8 = (const uint8_t*)wq;
  for (size_t j = j0; j < j1;) {
    const size_t nr = j1 - j >= 4 ? 4 : 1;
    for (size_t q = 0; q < m * 4; q++) lanes[q] = wasm_f32x4_splat(0.0f);
    for (size_t p0 = 0; p0 < k; p0 += QUANT_KC) {
      const size_t kc = p0 + QUANT_KC < k ? QUANT_KC : k - p0;
      f32_qdecode_strip__simd128<BITS>(nr, kc, p0, row_bytes, w8 + j * row_bytes, qs);
      const float* sc = scales + j * groups + p0 / group;
      size_t i = 0;
      if (nr == 4) {
        for (; i + QMR <= m; i += QMR)
          f32_qgemm_block__simd128<QMR, QNR>(kc, group, xq + i * k + p0, k, qs, sc, groups, lanes + i * 4);
        for (; i < m; i++)
          f32_qgemm_block__simd128<1, QNR>(kc, group, xq + i * k + p0, k, qs, sc, groups, lanes + i * 4);
      } else {
        for (; i < m; i++) f32_qgemm_block__simd128<1, 1>(kc, group, xq + i * k + p0, k, qs, sc, groups, lanes + i * 4);
      }
    }
    // The GEMV's finish: ((l0 + l2) + (l1 + l3)) + Σ_g b_g·xs_g (that sum in g order, one lane per column, the
    // strip's biases transposed to bt [groups][4] first), then the epilogue.
    for (size_t g = 0; g < groups; g++)
      for (size_t c = 0; c < 4; c++) bt[g * 4 + c] = c < nr ? biases[(j + c) * groups + g] : 0.0f;
    for (size_t i = 0; i < m; i++) {
      const float* xsr = xs + i * groups;
      v128_t bsum = wasm_f32x4_splat(0.0f);
      for (size_t g = 0; g < groups; g++)
        bsum = wasm_f32x4_add(bsum, wasm_f32x4_mul(wasm_v128_load(bt + g * 4), wasm_v128_load32_splat(xsr + g)));
      alignas(16) float out[1][4];
      wasm_v128_store(out[0], bsum);
      for (size_t c = 0; c < nr; c++) {
        const v128_t a = lanes[i * 4 + c];
        out[0][c] = ((wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 2)) +
                     (wasm_f32x4_extract_lane(a, 1) + wasm_f32x4_extract_lane(a, 3))) +
                    out[0][c];
      }
      if (nr == 4) f32_store_tile__simd128<1, 4>(out, y + i * n + j, n, false, ep, i, j);
      else {
        float o1[1][1] = {{out[0][0]}};
        f32_store_tile__simd128<1, 1>(o1, y + i * n + j, n, false, ep, i, j);
      }
    }
    j += nr;
  }
}

// Scratch floats the quantised linear needs for m rows (both twins): the GEMV's x chunk [4,k] + sums [4,k/group]
// (≤ QUANT_STRIP·k, also the scalar twin's strip); per block of mb rows the GEMM's xq [mb,k], xs [mb,k/32], lanes
// [mb][4] v128, qs [4,KC],
// bt [k/32][4].
static inline size_t f32_qlinear_scratch_floats(size_t m, size_t k) {
  const size_t gemv = QUANT_STRIP * k;
  const size_t mb = f32_gemm_row_block(m, k);  // the GEMM stages one block of rows at a time
  const size_t gemm = m > QUANT_GEMV_MAX_M ? mb * k + mb * (k / 32) + mb * 16 + 4 * QUANT_KC + k / 8 + 8 : 0;
  const size_t epi = m > 4 ? EPI_PACK_FLOATS + 4 : 0;  // the LoRA epilogue's packed B (after the GEMM)
  const size_t most = gemv > gemm ? gemv : gemm;
  return most > epi ? most : epi;
}

// Floats of x staged once for every thread of a GEMM call (m > QUANT_GEMV_MAX_M): xq [m,k], then xs [m,k/group].
static inline size_t f32_qlinear_staged_floats(size_t m, size_t k, size_t group) { return m * k + m * (k / group); }
// staged (f32_qlinear_staged_floats) = the GEMM's x, prepared for all m rows: what every call on a column range would
// prepare for itself.
static inline void f32_qlinear_stage(size_t m, size_t k, size_t bits, size_t group, const float* __restrict x,
                                     float* __restrict staged) {
  f32_qgemv_prepare(m, k, bits, group, x, staged, staged + m * k);
}

// Columns [j0, j1) of the SIMD128 quantised linear below (one thread's share: each element computed as the whole
// call computes it). Every thread stages its own x in its own scratch, unless the caller staged it once for all of
// them (`staged`: f32_qlinear_stage of the same x, or null). The GEMM's prepare is O(m·k) scalar work per call:
// repeated by every chunk of a call split across threads (16 per thread), it cost 2 threads a quarter of their time
// at m ≥ 8 (threads ÷ one thread 1.52–1.54×).
static inline void f32_qlinear_cols__simd128(size_t m, size_t n, size_t k, size_t bits, size_t group, size_t j0,
                                             size_t j1, const float* __restrict x, const uint32_t* __restrict wq,
                                             const float* __restrict scales, const float* __restrict biases,
                                             float* __restrict scratch, float* __restrict y, const Epilogue* ep,
                                             const float* __restrict staged = nullptr) {
  assert(m > 0 && n > 0 && k > 0 && x && wq && scales && biases && scratch && y && j0 <= j1 && j1 <= n);
  if (j0 >= j1) return;
  if (ep && ep->nterms > 0) {  // as f32_linear: plain sums, then the epilogue pass
    f32_qlinear_cols__simd128(m, n, k, bits, group, j0, j1, x, wq, scales, biases, scratch, y, nullptr, staged);
    f32_epilogue_pass(m, n, j0, j1, y, ep, scratch);
    return;
  }
  if (m > QUANT_GEMV_MAX_M) {
    // Rows in blocks that stay in L2 (f32_gemm_row_block), each staged and swept on its own; ep has no LoRA terms
    // here, so a block needs no row offset.
    const size_t mb = f32_gemm_row_block(m, k);
    float* own_xq = scratch;                  // [mb,k]
    float* own_xs = own_xq + mb * k;          // [mb,k/group]
    v128_t* lanes = (v128_t*)(((uintptr_t)(own_xs + mb * (k / 32)) + 15) & ~(uintptr_t)15);  // [mb][4]
    float* qs = (float*)(lanes + mb * 4);  // [QUANT_KC/4][4][4]
    float* bt = qs + 4 * QUANT_KC;         // [k/group][4]
    for (size_t i = 0; i < m; i += mb) {
      const size_t mr = m - i < mb ? m - i : mb;
      float* yb = y + i * n;
      const float *xq = own_xq, *xs = own_xs;
      if (staged) {  // this block's rows of the staged xq [m,k] and xs [m,k/group]
        xq = staged + i * k;
        xs = staged + m * k + i * (k / group);
      } else {
        f32_qgemv_prepare(mr, k, bits, group, x + i * k, own_xq, own_xs);
      }
      // Two call sites each: wasm-opt inlines a function called once (see linear_bf16.h).
      if (bits == 4) {
        if (ep) f32_qgemm__simd128<4>(mr, n, k, j0, j1, group, xq, xs, wq, scales, biases, yb, ep, lanes, qs, bt);
        else f32_qgemm__simd128<4>(mr, n, k, j0, j1, group, xq, xs, wq, scales, biases, yb, nullptr, lanes, qs, bt);
      } else {
        if (ep) f32_qgemm__simd128<8>(mr, n, k, j0, j1, group, xq, xs, wq, scales, biases, yb, ep, lanes, qs, bt);
        else f32_qgemm__simd128<8>(mr, n, k, j0, j1, group, xq, xs, wq, scales, biases, yb, nullptr, lanes, qs, bt);
      }
    }
    return;
  }
  float* xq = scratch;          // [4,k]
  float* xs = scratch + 4 * k;  // [4, k/group]  (4·k + 4·k/32 ≤ QUANT_STRIP·k)
  for (size_t i = 0; i < m; i += 4) {
    const size_t mc = m - i < 4 ? m - i : 4;
    f32_qgemv_prepare(mc, k, bits, group, x + i * k, xq, xs);
    if (bits == 4) f32_qgemv_m__simd128<4>(mc, n, k, j0, j1, group, xq, xs, wq, scales, biases, y + i * n, ep);
    else f32_qgemv_m__simd128<8>(mc, n, k, j0, j1, group, xq, xs, wq, scales, biases, y + i * n, ep);
  }
}

// y [m,n] = epilogue(x [m,k] · dequantize(Wq)ᵀ); scratch: f32_qlinear_scratch_floats(m, k).
// SIMD128: the fused GEMV (m ≤ QUANT_GEMV_MAX_M) or f32_qgemm (same per-element order: the same bits for every m). The scalar twin (the
// reference): strips of QUANT_STRIP rows dequantised into scratch and fed to linear.h's GEMM.
template <class Isa>
static inline void f32_qlinear(size_t m, size_t n, size_t k, size_t bits, size_t group, const float* __restrict x,
                               const uint32_t* __restrict wq, const float* __restrict scales,
                               const float* __restrict biases, float* __restrict scratch, float* __restrict y,
                               const Epilogue* ep) {
  assert(m > 0 && n > 0 && k > 0 && x && wq && scales && biases && scratch && y);
  if constexpr (Isa::kFusedQGemv) {
    f32_qlinear_cols__simd128(m, n, k, bits, group, 0, n, x, wq, scales, biases, scratch, y, ep);
    return;
  } else {
    const size_t words = k * bits / 32, groups = k / group;
    for (size_t j = 0; j < n; j += QUANT_STRIP) {
      const size_t rows = j + QUANT_STRIP <= n ? QUANT_STRIP : n - j;
      Isa::dequantize(rows, k, bits, group, wq + j * words, scales + j * groups, biases + j * groups, scratch);
      f32_gemm_columns<Isa>(m, n, k, j, j + rows, x, scratch, k, y, ep);
    }
  }
}

}  // namespace peft
