import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../backends/wasm/convert.js';
import { AdapterError } from '../errors.js';
import { SAFE_DTYPES, toTyped, type SafeDType } from '../formats/safetensors.js';
import { bf16ToNumber, f16ToNumber, numberToBf16, numberToF16 } from '../float16.js';
import { checkWasmSupport, initWasm, wasmReady } from '../runtime/wasm.js';
import type { Tensor } from '../tensor.js';

/**
 * Checkpoint tensors → f32 and back. f16/bf16 use the wasm kernels (cpp/convert.h) once the runtime is up, and an
 * exact JavaScript loop otherwise, so loading needs no wasm (a runtime without WebAssembly SIMD can still load an
 * adapter and run it on the js backend). Both give the same bits: widening is exact (bf16→f32 is a 16-bit shift),
 * narrowing rounds to nearest even, so f32 values that came from a 16-bit tensor narrow back to the very same bits.
 */

/** Float dtypes a LoRA factor may be stored in (and saved back to). */
export const FLOAT_SAFE_DTYPES: readonly SafeDType[] = ['F64', 'F32', 'F16', 'BF16'];

export function isFloatDType(d: string): d is 'F64' | 'F32' | 'F16' | 'BF16' {
  return (FLOAT_SAFE_DTYPES as readonly string[]).includes(d);
}

/**
 * Starts the wasm module when this runtime has WebAssembly SIMD (idempotent), for its faster conversions; without
 * it the JavaScript conversions are used and loading still works.
 */
export async function convertReady(): Promise<void> {
  try {
    checkWasmSupport();
  } catch {
    return;
  }
  await initWasm().catch(() => undefined);
}

/** 16-bit floats → f32 through the wasm kernel when ready, else exactly in JavaScript. */
function halfToF32(kind: 'F16' | 'BF16', src: Uint16Array): Float32Array<ArrayBuffer> {
  if (wasmReady()) return (kind === 'F16' ? f16ToF32(src) : bf16ToF32(src)) as Float32Array<ArrayBuffer>;
  const out = new Float32Array(src.length);
  const widen = kind === 'F16' ? f16ToNumber : bf16ToNumber;
  for (let i = 0; i < src.length; i++) out[i] = widen(src[i]);
  return out;
}

/** f32 → 16-bit floats (round to nearest even) through the wasm kernel when ready, else in JavaScript. */
function f32ToHalf(kind: 'F16' | 'BF16', src: Float32Array): Uint16Array {
  if (wasmReady()) return kind === 'F16' ? f32ToF16(src) : f32ToBf16(src);
  const out = new Uint16Array(src.length);
  const narrow = kind === 'F16' ? numberToF16 : numberToBf16;
  for (let i = 0; i < src.length; i++) out[i] = narrow(src[i]);
  return out;
}

/** Little-endian checkpoint bytes of `dtype` → a fresh Float32Array (never a view of `bytes`). */
export function toF32(dtype: SafeDType, bytes: Uint8Array, where = 'tensor'): Float32Array<ArrayBuffer> {
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(bytes.byteLength / 4);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case 'F16':
      return halfToF32('F16', toTyped('F16', bytes) as Uint16Array);
    case 'BF16':
      return halfToF32('BF16', toTyped('BF16', bytes) as Uint16Array);
    case 'F64':
      return Float32Array.from(toTyped('F64', bytes) as Float64Array);
    default:
      throw new AdapterError('bad_dtype', 'a float tensor was expected', { where, expected: FLOAT_SAFE_DTYPES.join(', '), got: dtype });
  }
}

/** Integer checkpoint bytes (I64, I32, …, BOOL) → Int32Array (values outside i32 are an error). */
export function toI32(dtype: SafeDType, bytes: Uint8Array, where = 'tensor'): Int32Array<ArrayBuffer> {
  const src = toTyped(dtype, bytes);
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = Number(src[i]);
    if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) {
      throw new AdapterError('bad_dtype', 'integer value does not fit in i32', { where, expected: '−2³¹ … 2³¹−1', got: v });
    }
    out[i] = v;
  }
  return out;
}

/** f32 values → little-endian bytes of `dtype` (F32, F16, BF16, F64). */
export function fromF32(dtype: SafeDType, data: Float32Array, where = 'tensor'): Uint8Array {
  let out: ArrayBufferView;
  switch (dtype) {
    case 'F32':
      out = Float32Array.from(data);
      break;
    case 'F16':
      out = f32ToHalf('F16', data);
      break;
    case 'BF16':
      out = f32ToHalf('BF16', data);
      break;
    case 'F64':
      out = Float64Array.from(data);
      break;
    default:
      throw new AdapterError('bad_dtype', 'cannot save float data as this dtype', { where, expected: FLOAT_SAFE_DTYPES.join(', '), got: dtype });
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Checkpoint bytes of a `[rows, cols]` float tensor → its transpose `[cols, rows]` as f32, in one fresh array.
 * F32 is transposed straight out of the file bytes (a view when aligned), so loading writes each factor once.
 */
export function toF32Transposed(dtype: SafeDType, bytes: Uint8Array, rows: number, cols: number, where = 'tensor'): Float32Array<ArrayBuffer> {
  const src = dtype === 'F32' ? (toTyped('F32', bytes) as Float32Array) : toF32(dtype, bytes, where);
  return transpose(src, rows, cols);
}

/** Row-major `[rows, cols]` → `[cols, rows]`. */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[row + j]!;
  }
  return out;
}

export function bytesPer(dtype: string): number {
  return (SAFE_DTYPES as Record<string, { bytes: number }>)[dtype]?.bytes ?? 4;
}

/**
 * A float tensor's values as f32: f32 as is, f16/bf16 widened exactly, f64 rounded. Narrowing the result back to
 * the tensor's own 16-bit dtype (`fromF32`) gives its bits back, so savers can write any spec tensor through f32.
 */
export function tensorToF32(t: Tensor, where = 'tensor'): Float32Array {
  switch (t.dtype) {
    case 'f32':
      return t.data as Float32Array;
    case 'f16':
    case 'bf16':
      return halfToF32(t.dtype === 'f16' ? 'F16' : 'BF16', t.data as Uint16Array);
    case 'f64':
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new AdapterError('bad_dtype', 'a float tensor was expected', { where, expected: 'f32, f16, bf16 or f64', got: t.dtype });
  }
}
