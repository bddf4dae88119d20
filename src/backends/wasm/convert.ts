import { BackendError } from '../../errors.js';
import { Tensor } from '../../tensor.js';
import { ScratchArena } from '../../runtime/scratch.js';
import { WasmStorage, allocWasmTensor } from '../../runtime/storage.js';
import { type WasmRuntime, wasmRuntime } from '../../runtime/wasm.js';
import type { Kernels } from './linear.js';

/**
 * Bulk f16 / bf16 ⇄ f32 conversions, vectorised in wasm (cpp/convert.h). Widening is exact (NaN → quiet
 * NaN); narrowing rounds to nearest, ties to even (overflow → ±inf, NaN → quiet NaN).
 * All need the runtime: `await init()` (or `initWasm()`) first.
 *
 *   f16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array
 *   bf16ToF32(src: Uint16Array, dst?: Float32Array): Float32Array
 *   f32ToF16(src: Float32Array, dst?: Uint16Array): Uint16Array
 *   f32ToBf16(src: Float32Array, dst?: Uint16Array): Uint16Array
 *   halfToF32Into(kind, src: Uint16Array, dst: Tensor<'f32'> (wasm), dstOffset = 0): converts straight
 *     into wasm memory (the adapter loader's path: checkpoint f16/bf16 → resident f32 weight)
 *   toF32Tensor(t: Tensor<'f16'|'bf16'|'f32'>): Tensor<'f32'> in wasm memory
 */

type Half = 'f16' | 'bf16';

/** Elements converted per pass through the staging buffer (1 Mi elements: 2 MiB in + 4 MiB out). */
const CHUNK = 1 << 20;

const arenas = new WeakMap<WasmRuntime, ScratchArena>();
function arena(rt: WasmRuntime): ScratchArena {
  let a = arenas.get(rt);
  if (!a) arenas.set(rt, (a = new ScratchArena(rt)));
  return a;
}

function widen(rt: WasmRuntime, kind: Half, n: number, src: number, dst: number, kernels: Kernels): void {
  const e = rt.exports;
  if (kind === 'f16') (kernels === 'scalar' ? e.peft_f16_to_f32__scalar : e.peft_f16_to_f32)(n, src, dst);
  else (kernels === 'scalar' ? e.peft_bf16_to_f32__scalar : e.peft_bf16_to_f32)(n, src, dst);
}

function narrow(rt: WasmRuntime, kind: Half, n: number, src: number, dst: number, kernels: Kernels): void {
  const e = rt.exports;
  if (kind === 'f16') (kernels === 'scalar' ? e.peft_f32_to_f16__scalar : e.peft_f32_to_f16)(n, src, dst);
  else (kernels === 'scalar' ? e.peft_f32_to_bf16__scalar : e.peft_f32_to_bf16)(n, src, dst);
}

function checkLength(where: string, expected: number, got: number): void {
  if (got < expected) throw new BackendError('shape_mismatch', 'destination is too short', { expected, got, where });
}

function toF32(kind: Half, src: Uint16Array, dst: Float32Array | undefined, kernels: Kernels): Float32Array {
  const rt = wasmRuntime();
  const out = dst ?? new Float32Array(src.length);
  checkLength(`${kind}ToF32`, src.length, out.length);
  for (let i = 0; i < src.length; i += CHUNK) {
    const n = Math.min(CHUNK, src.length - i);
    const base = arena(rt).ensure(n * 6 + 16);
    const s = base, d = base + ((n * 2 + 15) & ~15);
    new Uint16Array(rt.memory.buffer, s, n).set(src.subarray(i, i + n));
    widen(rt, kind, n, s, d, kernels);
    out.set(new Float32Array(rt.memory.buffer, d, n), i);
  }
  return out;
}

function fromF32(kind: Half, src: Float32Array, dst: Uint16Array | undefined, kernels: Kernels): Uint16Array {
  const rt = wasmRuntime();
  const out = dst ?? new Uint16Array(src.length);
  checkLength(`f32To${kind === 'f16' ? 'F16' : 'Bf16'}`, src.length, out.length);
  for (let i = 0; i < src.length; i += CHUNK) {
    const n = Math.min(CHUNK, src.length - i);
    const base = arena(rt).ensure(n * 6 + 16);
    const s = base, d = base + n * 4;
    new Float32Array(rt.memory.buffer, s, n).set(src.subarray(i, i + n));
    narrow(rt, kind, n, s, d, kernels);
    out.set(new Uint16Array(rt.memory.buffer, d, n), i);
  }
  return out;
}

/** IEEE half bit patterns → f32 (exact). `dst` defaults to a new array of `src.length`. */
export function f16ToF32(src: Uint16Array, dst?: Float32Array, kernels: Kernels = 'simd128'): Float32Array {
  return toF32('f16', src, dst, kernels);
}
/** bfloat16 bit patterns → f32 (exact). */
export function bf16ToF32(src: Uint16Array, dst?: Float32Array, kernels: Kernels = 'simd128'): Float32Array {
  return toF32('bf16', src, dst, kernels);
}
/** f32 → IEEE half bit patterns, round to nearest even. */
export function f32ToF16(src: Float32Array, dst?: Uint16Array, kernels: Kernels = 'simd128'): Uint16Array {
  return fromF32('f16', src, dst, kernels);
}
/** f32 → bfloat16 bit patterns, round to nearest even. */
export function f32ToBf16(src: Float32Array, dst?: Uint16Array, kernels: Kernels = 'simd128'): Uint16Array {
  return fromF32('bf16', src, dst, kernels);
}

/**
 * Converts `src` (f16 or bf16 bit patterns, e.g. a checkpoint tensor's bytes) directly into the wasm-resident
 * f32 tensor `dst`, starting at element `dstOffset`: one staging copy of the 16-bit input, no f32 copy.
 */
export function halfToF32Into(kind: Half, src: Uint16Array, dst: Tensor<'f32'>, dstOffset = 0, kernels: Kernels = 'simd128'): void {
  const st = dst.storage;
  if (!(st instanceof WasmStorage)) {
    throw new BackendError('wrong_device', 'destination must live in wasm memory', { expected: 'wasm', got: st.device, where: 'halfToF32Into' });
  }
  checkLength('halfToF32Into', dstOffset + src.length, dst.size);
  const rt = st.runtime;
  for (let i = 0; i < src.length; i += CHUNK) {
    const n = Math.min(CHUNK, src.length - i);
    const s = arena(rt).ensure(n * 2);
    new Uint16Array(rt.memory.buffer, s, n).set(src.subarray(i, i + n));
    widen(rt, kind, n, s, st.ptr + (dstOffset + i) * 4, kernels);
  }
}

/**
 * `t` as a new f32 tensor in wasm memory: f16/bf16 are widened (in place from wasm memory when `t` already
 * lives there), f32 is copied. The caller owns (disposes) the result.
 */
export function toF32Tensor(t: Tensor, rt: WasmRuntime = wasmRuntime()): Tensor<'f32'> {
  const out = allocWasmTensor(rt, t.shape, 'f32');
  if (t.dtype === 'f32') {
    out.storage.bytes().set(t.storage.bytes());
  } else if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const st = t.storage;
    if (st instanceof WasmStorage && st.runtime === rt) widen(rt, t.dtype, t.size, st.ptr, (out.storage as WasmStorage).ptr, 'simd128');
    else halfToF32Into(t.dtype, t.data as Uint16Array, out);
  } else {
    const src = t.data as ArrayLike<number>;
    const f = out.data;
    for (let i = 0; i < t.size; i++) f[i] = src[i];
  }
  return out;
}

export type { Kernels };
