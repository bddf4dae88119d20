// expf.h: eˣ in f32 for the softmax and the activations; a SIMD128 version and a scalar twin that give the same
// bits (same operations in the same order; wasm has no FMA, so nothing is contracted).
//
// Method (Cephes expf, S. Moshier):
//   n = round(x·log₂e), by adding 1.5·2²³ (no float → int conversion: i32.trunc traps on NaN in wasm);
//   r = x − n·C1 − n·C2 (Cody–Waite, ln 2 = C1 + C2 with C1 = 0.693359375 in 9 bits, so n·C1 is exact),
//   |r| ≤ ½ln 2;  eʳ ≈ 1 + r + r²·P(r), P of degree 5 (Cephes' minimax coefficients);
//   eˣ = (eʳ + eʳ)·2ⁿ⁻¹, 2ⁿ⁻¹ built in the exponent bits (bits(1.5·2²³ + n) << 23 is n << 23): n − 1 reaches
//   127 where eˣ nears FLT_MAX, and the doubling is exact, so the product rounds once.
// Range
//   Finite up to the true overflow (x ≤ 88.7228); above, +inf by the product itself (x is clamped to 88.75,
//   where (eʳ + eʳ)·2¹²⁷ overflows), so there is no select for it;
//   x < −86.98 → +0 (eˣ < 1.8·10⁻³⁸, near the smallest normal: flushed rather than built as a subnormal);
//   NaN → NaN. The flush does not matter to the users here: softmax sums e^(s − max) ≥ 1, silu/gelu add 1.
// Accuracy (cpp/tools/expf_ulp.cpp: all 2.24·10⁹ f32 in [−86.98, 88.72] against float64 exp):
//   max error 0.990 ulp (relative 8.2e-8), 99.2 % correctly rounded; SIMD and scalar agree on every input.
#pragma once
#include <stdint.h>
#include <string.h>
#include <wasm_simd128.h>

namespace peft {

namespace expf_detail {
constexpr float kLo = -86.98f;  // n ≥ −125: 2ⁿ⁻¹ stays normal
constexpr float kHi = 88.75f;   // n ≤ 128; eˣ overflows past 88.7228 by itself
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kMagic = 12582912.0f;  // 1.5·2²³: adding it rounds to an integer (nearest, ties to even)
constexpr float kC1 = 0.693359375f;
constexpr float kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f;
constexpr float kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
}  // namespace expf_detail

static inline float expf_approx(float x) {
  using namespace expf_detail;
  // The clamps are wasm's pmax / pmin (one instruction each); NaN passes both and comes out NaN.
  float xc = x < kLo ? kLo : x;
  xc = kHi < xc ? kHi : xc;
  const float t = xc * kLog2e + kMagic;
  const float n = t - kMagic;
  float r = xc - n * kC1;
  r = r - n * kC2;
  const float z = r * r;
  float p = kP0 * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = (p * z + r) + 1.0f;
  uint32_t tb;
  memcpy(&tb, &t, 4);
  const uint32_t sb = (tb << 23) + 0x3f000000u;  // 2ⁿ⁻¹
  float s;
  memcpy(&s, &sb, 4);
  const float y = (p + p) * s;
  return x < kLo ? 0.0f : y;
}

// The constants as vectors, loaded once per kernel call from a volatile table: as compile-time v128.consts LLVM
// sinks them into the loop and V8 rematerialises each one on every iteration (see linear_bf16.h).
static volatile float g_expf_consts[13] = {expf_detail::kLo, expf_detail::kHi, expf_detail::kLog2e,
                                           expf_detail::kMagic, expf_detail::kC1, expf_detail::kC2,
                                           expf_detail::kP0, expf_detail::kP1, expf_detail::kP2,
                                           expf_detail::kP3, expf_detail::kP4, expf_detail::kP5, 1.0f};
static volatile uint32_t g_expf_bits[1] = {0x3f000000u /* 126 << 23: 2ⁿ⁻¹ */};
struct ExpConsts {
  v128_t lo, hi, log2e, magic, c1, c2, p0, p1, p2, p3, p4, p5, one, bias;
  ExpConsts()
      : lo(wasm_f32x4_splat(g_expf_consts[0])), hi(wasm_f32x4_splat(g_expf_consts[1])),
        log2e(wasm_f32x4_splat(g_expf_consts[2])), magic(wasm_f32x4_splat(g_expf_consts[3])),
        c1(wasm_f32x4_splat(g_expf_consts[4])), c2(wasm_f32x4_splat(g_expf_consts[5])),
        p0(wasm_f32x4_splat(g_expf_consts[6])), p1(wasm_f32x4_splat(g_expf_consts[7])),
        p2(wasm_f32x4_splat(g_expf_consts[8])), p3(wasm_f32x4_splat(g_expf_consts[9])),
        p4(wasm_f32x4_splat(g_expf_consts[10])), p5(wasm_f32x4_splat(g_expf_consts[11])),
        one(wasm_f32x4_splat(g_expf_consts[12])),
        bias(wasm_i32x4_splat((int32_t)g_expf_bits[0])) {}
};

// Lane-wise expf_approx.
static inline v128_t expf_approx_x4(v128_t x, const ExpConsts& c) {
  const v128_t xc = wasm_f32x4_pmin(wasm_f32x4_pmax(x, c.lo), c.hi);
  const v128_t t = wasm_f32x4_add(wasm_f32x4_mul(xc, c.log2e), c.magic);
  const v128_t n = wasm_f32x4_sub(t, c.magic);
  v128_t r = wasm_f32x4_sub(xc, wasm_f32x4_mul(n, c.c1));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, c.c2));
  const v128_t z = wasm_f32x4_mul(r, r);
  v128_t p = wasm_f32x4_add(wasm_f32x4_mul(c.p0, r), c.p1);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), c.p2);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), c.p3);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), c.p4);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), c.p5);
  p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(p, z), r), c.one);
  const v128_t s = wasm_i32x4_add(wasm_i32x4_shl(t, 23), c.bias);
  const v128_t y = wasm_f32x4_mul(wasm_f32x4_add(p, p), s);
  return wasm_v128_andnot(y, wasm_f32x4_lt(x, c.lo));
}

}  // namespace peft
