import type { WasmRuntime } from '../../runtime/wasm.js';
import type { Kernels } from './linear.js';

/** Scratch bytes the quantised linear needs for m rows of k features (cpp/quant.h `f32_qlinear_scratch_floats`). */
export function quantScratchBytes(rt: WasmRuntime, m: number, k: number): number {
  return rt.exports.peft_f32_qlinear_scratch_bytes(m, k) >>> 0;
}

/** `out [n,k] = scales·q + biases` per group (cpp/quant.h, MLX affine layout). Arguments are byte offsets. */
export function f32Dequantize(
  rt: WasmRuntime, n: number, k: number, bits: number, group: number,
  wq: number, scales: number, biases: number, out: number, kernels: Kernels = 'simd128',
): void {
  if (kernels === 'scalar') rt.exports.peft_f32_dequantize__scalar(n, k, bits, group, wq, scales, biases, out);
  else rt.exports.peft_f32_dequantize(n, k, bits, group, wq, scales, biases, out);
}

/** `y [m,n] = epilogue(x [m,k] · dequantize(Wq)ᵀ)` (cpp/quant.h); `scratch`: `quantScratchBytes(m, k)` bytes. */
export function f32QLinear(
  rt: WasmRuntime, m: number, n: number, k: number, bits: number, group: number, x: number,
  wq: number, scales: number, biases: number, scratch: number, y: number, ep: number, kernels: Kernels = 'simd128',
): void {
  if (kernels === 'scalar') rt.exports.peft_f32_qlinear__scalar(m, n, k, bits, group, x, wq, scales, biases, scratch, y, ep);
  else rt.exports.peft_f32_qlinear(m, n, k, bits, group, x, wq, scales, biases, scratch, y, ep);
}
