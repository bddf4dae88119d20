import type { WasmRuntime } from '../../runtime/wasm.js';
import type { Kernels } from './linear.js';

/** `t [m,r] = s·(x [m,k] · A [k,r])` (cpp/lora.h). Arguments are byte offsets. */
export function f32LoraShrink(rt: WasmRuntime, m: number, k: number, r: number, x: number, a: number, t: number, s: number, kernels: Kernels = 'simd128'): void {
  if (kernels === 'scalar') rt.exports.peft_f32_lora_shrink__scalar(m, k, r, x, a, t, s);
  else rt.exports.peft_f32_lora_shrink(m, k, r, x, a, t, s);
}

/** `y [m,n] += t [m,r] · B [r,n]` (cpp/lora.h). Arguments are byte offsets. */
export function f32LoraExpand(rt: WasmRuntime, m: number, n: number, r: number, t: number, b: number, y: number, kernels: Kernels = 'simd128'): void {
  if (kernels === 'scalar') rt.exports.peft_f32_lora_expand__scalar(m, n, r, t, b, y);
  else rt.exports.peft_f32_lora_expand(m, n, r, t, b, y);
}
