// convert.h: bulk f16 / bf16 ⇄ f32.
//
// Contract
//   f16_to_f32, bf16_to_f32: exact (every 16-bit pattern has an f32 value); NaN → quiet NaN (sign and
//   payload kept, quiet bit set). f32_to_f16, f32_to_bf16: round to nearest, ties to even; overflow → ±inf;
//   f16 subnormals produced exactly; NaN → quiet NaN (f16 0x7E00|sign, bf16 top bits | 0x0040).
//   Arrays of n elements, contiguous; src and dst must not overlap. Any n: the last n % 8 by the scalar twin.
// Method
//   f16 → f32: normals by an integer exponent rebias; subnormals as mantissa·2⁻²⁴ (int → float convert, no f32
//   denormal operand); inf/NaN patched by select. The scalar twin uses the multiply-by-2¹¹² rebias (Giesen,
//   "Half to float done quick", 2012), a different route to the same exact result. f32 → f16: the rounding is done by the FPU in f32 (Maratyszcza FP16, fp16_ieee_from_fp32_value):
//   scale to the target exponent range, add a power of two that puts the f16 LSB at the f32 LSB, read bits.
//   bf16 ⇄ f32: shifts; RNE via w + 0x7FFF + ((w >> 16) & 1).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <wasm_simd128.h>

namespace peft {

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline uint32_t f16_to_f32_bits_one(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  const uint32_t em = (uint32_t)(h & 0x7fff) << 13;  // exponent+mantissa at f32 positions, bias still 15
  if ((h & 0x7c00) == 0x7c00) {                       // inf / NaN
    uint32_t o = 0x7f800000 | em;
    if (h & 0x3ff) o |= 0x00400000;                   // quiet
    return sign | o;
  }
  // ×2^112 rebias (127−15): normals exact, subnormals (em < 2^23) come out as f32 normals, exactly.
  return sign | f32_bits(f32_from_bits(em) * f32_from_bits(0x77800000));
}

static inline void f16_to_f32__scalar(size_t n, const uint16_t* __restrict src, float* __restrict dst) {
  for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits(f16_to_f32_bits_one(src[i]));
}

static inline void bf16_to_f32__scalar(size_t n, const uint16_t* __restrict src, float* __restrict dst) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)src[i] << 16;
    if ((u & 0x7f800000) == 0x7f800000 && (u & 0x007fffff)) u |= 0x00400000;
    dst[i] = f32_from_bits(u);
  }
}

static inline uint16_t f32_to_f16_one(float f) {
  const float scale_to_inf = f32_from_bits(0x77800000);   // 2^112
  const float scale_to_zero = f32_from_bits(0x08800000);  // 2^-110
  const uint32_t w = f32_bits(f);
  float base = (f32_from_bits(w & 0x7fffffff) * scale_to_inf) * scale_to_zero;
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000;
  uint32_t bias = shl1_w & 0xff000000;
  if (bias < 0x71000000) bias = 0x71000000;
  base = f32_from_bits((bias >> 1) + 0x07800000) + base;
  const uint32_t bits = f32_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007c00;
  const uint32_t mantissa_bits = bits & 0x00000fff;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return (uint16_t)((sign >> 16) | (shl1_w > 0xff000000 ? 0x7e00 : nonsign));
}

static inline void f32_to_f16__scalar(size_t n, const float* __restrict src, uint16_t* __restrict dst) {
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_one(src[i]);
}

static inline uint16_t f32_to_bf16_one(float f) {
  const uint32_t w = f32_bits(f);
  if ((w & 0x7fffffff) > 0x7f800000) return (uint16_t)((w >> 16) | 0x0040);
  return (uint16_t)((w + 0x7fff + ((w >> 16) & 1)) >> 16);
}

static inline void f32_to_bf16__scalar(size_t n, const float* __restrict src, uint16_t* __restrict dst) {
  for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_one(src[i]);
}

// ---- SIMD128 -------------------------------------------------------------------------------------------
// The f16 → f32 constants, loaded at run time once per call: as compile-time v128.consts LLVM sinks them into the
// loop and V8 rematerialises each one on every iteration (see linear_bf16.h).
static volatile uint32_t g_f16_consts[9] = {0x8000,     0x7fff,     0x38000000, 0x03ff,    0x33800000,
                                            0x00800000, 0x0f800000, 0x7f800000, 0x00400000};
struct F16Consts {
  v128_t sign, em, rebias, mant, two_m24, min_normal, infnan, exp_ones, quiet;
  F16Consts()
      : sign(wasm_i32x4_splat((int32_t)g_f16_consts[0])), em(wasm_i32x4_splat((int32_t)g_f16_consts[1])),
        rebias(wasm_i32x4_splat((int32_t)g_f16_consts[2])), mant(wasm_i32x4_splat((int32_t)g_f16_consts[3])),
        two_m24(wasm_i32x4_splat((int32_t)g_f16_consts[4])), min_normal(wasm_i32x4_splat((int32_t)g_f16_consts[5])),
        infnan(wasm_i32x4_splat((int32_t)g_f16_consts[6])), exp_ones(wasm_i32x4_splat((int32_t)g_f16_consts[7])),
        quiet(wasm_i32x4_splat((int32_t)g_f16_consts[8])) {}
};

static inline v128_t f16x4_to_f32x4(v128_t h /* i32 lanes, 16-bit patterns in the low halves */, const F16Consts& c) {
  const v128_t sign = wasm_i32x4_shl(wasm_v128_and(h, c.sign), 16);
  const v128_t em = wasm_i32x4_shl(wasm_v128_and(h, c.em), 13);
  // Normals: rebias the exponent by an integer add (+112 << 23). Subnormals: mantissa·2⁻²⁴ from an int
  // convert, so no f32 denormal is ever an operand (x86 takes a slow microcode assist on those).
  const v128_t normal = wasm_i32x4_add(em, c.rebias);
  const v128_t sub = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_v128_and(h, c.mant)), c.two_m24);
  const v128_t finite = wasm_v128_bitselect(sub, normal, wasm_i32x4_lt(em, c.min_normal));
  // em < 2^28, so a signed compare is exact.
  const v128_t is_infnan = wasm_i32x4_ge(em, c.infnan);
  v128_t special = wasm_v128_or(em, c.exp_ones);
  const v128_t is_nan = wasm_i32x4_gt(em, c.infnan);
  special = wasm_v128_or(special, wasm_v128_and(is_nan, c.quiet));
  return wasm_v128_or(sign, wasm_v128_bitselect(special, finite, is_infnan));
}

static inline void f16_to_f32__simd128(size_t n, const uint16_t* __restrict src, float* __restrict dst) {
  const F16Consts c;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v128_t h = wasm_v128_load(src + i);
    // Sign-extended on purpose (every use masks the low 16 bits): from a zero-extended value clang 19 proves the
    // subnormal convert's input non-negative and emits f32x4.convert_i32x4_u, which V8 emulates on x86.
    wasm_v128_store(dst + i, f16x4_to_f32x4(wasm_i32x4_extend_low_i16x8(h), c));
    wasm_v128_store(dst + i + 4, f16x4_to_f32x4(wasm_i32x4_extend_high_i16x8(h), c));
  }
  f16_to_f32__scalar(n - i, src + i, dst + i);
}

static inline v128_t bf16x4_to_f32x4(v128_t h) {
  const v128_t u = wasm_i32x4_shl(h, 16);
  const v128_t is_nan = wasm_f32x4_ne(u, u);
  return wasm_v128_or(u, wasm_v128_and(is_nan, wasm_i32x4_splat(0x00400000)));
}

static inline void bf16_to_f32__simd128(size_t n, const uint16_t* __restrict src, float* __restrict dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v128_t h = wasm_v128_load(src + i);
    wasm_v128_store(dst + i, bf16x4_to_f32x4(wasm_u32x4_extend_low_u16x8(h)));
    wasm_v128_store(dst + i + 4, bf16x4_to_f32x4(wasm_u32x4_extend_high_u16x8(h)));
  }
  bf16_to_f32__scalar(n - i, src + i, dst + i);
}

static inline v128_t f32x4_to_f16x4(v128_t w /* f32 bits */) {
  const v128_t base0 = wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_and(w, wasm_i32x4_splat(0x7fffffff)),
                                                     wasm_i32x4_splat(0x77800000)),
                                      wasm_i32x4_splat(0x08800000));
  const v128_t shl1_w = wasm_i32x4_add(w, w);
  const v128_t sign = wasm_v128_and(w, wasm_i32x4_splat((int32_t)0x80000000));
  const v128_t bias = wasm_u32x4_max(wasm_v128_and(shl1_w, wasm_i32x4_splat((int32_t)0xff000000)),
                                     wasm_i32x4_splat(0x71000000));
  const v128_t base = wasm_f32x4_add(wasm_i32x4_add(wasm_u32x4_shr(bias, 1), wasm_i32x4_splat(0x07800000)), base0);
  const v128_t exp_bits = wasm_v128_and(wasm_u32x4_shr(base, 13), wasm_i32x4_splat(0x7c00));
  const v128_t mantissa_bits = wasm_v128_and(base, wasm_i32x4_splat(0x0fff));
  const v128_t nonsign = wasm_i32x4_add(exp_bits, mantissa_bits);
  const v128_t is_nan = wasm_u32x4_gt(shl1_w, wasm_i32x4_splat((int32_t)0xff000000));
  return wasm_v128_or(wasm_u32x4_shr(sign, 16), wasm_v128_bitselect(wasm_i32x4_splat(0x7e00), nonsign, is_nan));
}

static inline void f32_to_f16__simd128(size_t n, const float* __restrict src, uint16_t* __restrict dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v128_t lo = f32x4_to_f16x4(wasm_v128_load(src + i));
    const v128_t hi = f32x4_to_f16x4(wasm_v128_load(src + i + 4));
    wasm_v128_store(dst + i, wasm_u16x8_narrow_i32x4(lo, hi));  // lanes are in [0, 0xffff]: no saturation
  }
  f32_to_f16__scalar(n - i, src + i, dst + i);
}

static inline v128_t f32x4_to_bf16x4(v128_t w) {
  const v128_t lsb = wasm_v128_and(wasm_u32x4_shr(w, 16), wasm_i32x4_splat(1));
  const v128_t rounded = wasm_u32x4_shr(wasm_i32x4_add(wasm_i32x4_add(w, wasm_i32x4_splat(0x7fff)), lsb), 16);
  const v128_t quiet = wasm_v128_or(wasm_u32x4_shr(w, 16), wasm_i32x4_splat(0x0040));
  const v128_t is_nan = wasm_f32x4_ne(w, w);
  return wasm_v128_bitselect(quiet, rounded, is_nan);
}

static inline void f32_to_bf16__simd128(size_t n, const float* __restrict src, uint16_t* __restrict dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v128_t lo = f32x4_to_bf16x4(wasm_v128_load(src + i));
    const v128_t hi = f32x4_to_bf16x4(wasm_v128_load(src + i + 4));
    wasm_v128_store(dst + i, wasm_u16x8_narrow_i32x4(lo, hi));
  }
  f32_to_bf16__scalar(n - i, src + i, dst + i);
}

}  // namespace peft
