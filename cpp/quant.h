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
//   y = epilogue(x · Wᵀ): strips of QUANT_STRIP rows are dequantised into caller scratch [QUANT_STRIP, k] f32
//   and fed to the f32 GEMM of linear.h (GEMV for m ≤ 4): the packed weight is read once per call, the f32
//   strip stays in L1/L2. Accuracy: that of linear.h on the dequantised W.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <wasm_simd128.h>
#include "linear.h"

namespace peft {

// Rows dequantised per strip (a multiple of the GEMM's NR).
constexpr size_t QUANT_STRIP = 16;

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
  const v128_t low4 = wasm_i8x16_splat(0x0f);
  for (size_t i = 0; i < rows; i++) {
    const uint8_t* src = (const uint8_t*)wq + i * row_bytes;
    float* o = out + i * k;
    for (size_t j = 0; j < k; j += 32) {
      const size_t g = i * groups + j / group;
      const v128_t sv = wasm_f32x4_splat(scales[g]), bv = wasm_f32x4_splat(biases[g]);
      v128_t e[2];  // 32 elements as u8
      if (bits == 4) {
        const v128_t v = wasm_v128_load(src + j / 2);
        const v128_t lo = wasm_v128_and(v, low4), hi = wasm_u8x16_shr(v, 4);
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
          wasm_v128_store(o + j + 16 * h + 4 * c, wasm_f32x4_add(wasm_f32x4_mul(sv, wasm_f32x4_convert_i32x4(q[c])), bv));
      }
    }
  }
}

struct QuantSimd128 : Simd128 {
  static inline void dequantize(size_t rows, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                const float* scales, const float* biases, float* out) {
    f32_dequantize__simd128(rows, k, bits, group, wq, scales, biases, out);
  }
};
struct QuantScalar : Scalar {
  static inline void dequantize(size_t rows, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                const float* scales, const float* biases, float* out) {
    f32_dequantize__scalar(rows, k, bits, group, wq, scales, biases, out);
  }
};

// y [m,n] = epilogue(x [m,k] · dequantize(Wq)ᵀ); scratch holds QUANT_STRIP·k floats.
template <class Isa>
static inline void f32_qlinear(size_t m, size_t n, size_t k, size_t bits, size_t group, const float* __restrict x,
                               const uint32_t* __restrict wq, const float* __restrict scales,
                               const float* __restrict biases, float* __restrict scratch, float* __restrict y,
                               const Epilogue* ep) {
  assert(m > 0 && n > 0 && k > 0 && x && wq && scales && biases && scratch && y);
  const size_t words = k * bits / 32, groups = k / group;
  for (size_t j = 0; j < n; j += QUANT_STRIP) {
    const size_t rows = j + QUANT_STRIP <= n ? QUANT_STRIP : n - j;
    Isa::dequantize(rows, k, bits, group, wq + j * words, scales + j * groups, biases + j * groups, scratch);
    f32_gemm_columns<Isa>(m, n, k, j, j + rows, x, scratch, y, ep);
  }
}

}  // namespace peft
