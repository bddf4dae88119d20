// madd.h: the multiply-add of the k-loops, a·b + c on four f32 lanes.
//
// Base build (SIMD128): two rounded ops, add(c, mul(a, b)): the same bits on every engine.
// Relaxed build (clang-19 -mrelaxed-simd, wasm/peftjs-relaxed.wasm): f32x4.relaxed_madd, which an engine may run
// fused (one rounding: x86 FMA3, ARM fmla) or unfused (the base bits). Within one engine on one machine the choice
// is fixed, so every kernel that uses it still computes each output in one order (batch invariance holds, and
// "adapter off" is still the plain linear), but results may differ from the base build, and between engines, by
// the rounding of the products: |Δ| ≤ (k/4)·2⁻²⁴·Σ|x·w| per output, the same bound as the base accumulation.
// Only the k-loops of the linear kernels use it; epilogues, norms and the scalar twins keep the base ops.
#pragma once
#include <wasm_simd128.h>

namespace peft {

static inline v128_t f32x4_madd(v128_t a, v128_t b, v128_t c) {
#ifdef __wasm_relaxed_simd__
  return wasm_f32x4_relaxed_madd(a, b, c);
#else
  return wasm_f32x4_add(c, wasm_f32x4_mul(a, b));
#endif
}

}  // namespace peft
