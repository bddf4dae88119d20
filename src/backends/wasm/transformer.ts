import type { WasmRuntime } from '../../runtime/wasm.js';
import type { Kernels } from './linear.js';

/**
 * The transformer ops of cpp/transformer.h and cpp/attention.h. Pointers are byte offsets into wasm memory of
 * row-major f32 arrays; shapes are checked by the caller (WasmBackend). `kernels` picks the SIMD128 kernel
 * (default) or its scalar twin.
 */

/** `y [m,d] = x / √(mean(x²) + eps) ⊙ w`;  w [d]. Σx² in float64. */
export function f32RmsNorm(rt: WasmRuntime, m: number, d: number, x: number, w: number, y: number, eps: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_rms_norm__scalar : rt.exports.peft_f32_rms_norm)(m, d, x, w, y, eps);
}

/** `y [m,d] = (x − μ) / √(σ² + eps) ⊙ w + b`;  w, b [d]. μ, σ² in float64. */
export function f32LayerNorm(rt: WasmRuntime, m: number, d: number, x: number, w: number, b: number, y: number, eps: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_layer_norm__scalar : rt.exports.peft_f32_layer_norm)(m, d, x, w, b, y, eps);
}

/** Rotary embedding in place on x [m, heads·hd] (rotate_half), rows at positions start…; cos, sin [maxPos, hd/2]. */
export function f32Rope(rt: WasmRuntime, m: number, heads: number, hd: number, x: number, cos: number, sin: number, start: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_rope__scalar : rt.exports.peft_f32_rope)(m, heads, hd, x, cos, sin, start);
}

/** `a [n] += b [n]`. */
export function f32AddInPlace(rt: WasmRuntime, n: number, a: number, b: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_add_inplace__scalar : rt.exports.peft_f32_add_inplace)(n, a, b);
}

/** `y [n] = g / (1 + e⁻ᵍ) · u`. */
export function f32Swiglu(rt: WasmRuntime, n: number, g: number, u: number, y: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_swiglu__scalar : rt.exports.peft_f32_swiglu)(n, g, u, y);
}

/** `y [n] = ½x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, computed as `x / (1 + e^(−2u))`. */
export function f32GeluTanh(rt: WasmRuntime, n: number, x: number, y: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_gelu_tanh__scalar : rt.exports.peft_f32_gelu_tanh)(n, x, y);
}

/** `cache[g, start + i, :] = src[i, g·hd : (g+1)·hd]`;  src [m, kvHeads·hd], cache [kvHeads, maxLen, hd]. */
export function f32KvWrite(rt: WasmRuntime, m: number, kvHeads: number, hd: number, maxLen: number, start: number, src: number, cache: number, kernels: Kernels = 'simd128'): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_kv_write__scalar : rt.exports.peft_f32_kv_write)(m, kvHeads, hd, maxLen, start, src, cache);
}

/** Scratch bytes `f32Attention` needs when the last row attends `nKeys = start + m` positions. */
export function attentionScratchBytes(rt: WasmRuntime, nKeys: number): number {
  return rt.exports.peft_f32_attention_scratch_bytes(nKeys) >>> 0;
}

/**
 * Causal GQA attention: q [m, heads·hd] at positions start…start+m−1 over k, v [kvHeads, maxLen, hd] → y [m, heads·hd].
 * Each (row, head) is computed on its own in key order, so a row's bits do not depend on m.
 */
export function f32Attention(
  rt: WasmRuntime, m: number, heads: number, kvHeads: number, hd: number, maxLen: number, start: number,
  q: number, k: number, v: number, y: number, scale: number, scratch: number, kernels: Kernels = 'simd128',
): void {
  (kernels === 'scalar' ? rt.exports.peft_f32_attention__scalar : rt.exports.peft_f32_attention)(m, heads, kvHeads, hd, maxLen, start, q, k, v, y, scale, scratch);
}
