import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { AdapterSpec } from '../../src/adapter/spec.js';

/**
 * An independent safetensors reader and f16/bf16 decoder for tests: what the loader's output is checked against.
 * It shares no code with src/ (header parsed with JSON.parse, halves decoded by formula).
 */
export interface RefTensor {
  dtype: string;
  shape: number[];
  values: Float64Array;
}

export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function bf16Value(h: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, h << 16, true);
  return dv.getFloat32(0, true);
}

export function readRefSafetensors(bytes: Uint8Array): Map<string, RefTensor> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, RefTensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, end] = e.data_offsets;
    const at = 8 + n + b;
    const size = { F32: 4, F16: 2, BF16: 2, F64: 8, I32: 4, I64: 8 }[e.dtype]!;
    const count = (end - b) / size;
    const values = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const o = at + i * size;
      values[i] =
        e.dtype === 'F32' ? dv.getFloat32(o, true)
        : e.dtype === 'F64' ? dv.getFloat64(o, true)
        : e.dtype === 'F16' ? f16Value(dv.getUint16(o, true))
        : e.dtype === 'BF16' ? bf16Value(dv.getUint16(o, true))
        : e.dtype === 'I32' ? dv.getInt32(o, true)
        : Number(dv.getBigInt64(o, true));
    }
    out.set(name, { dtype: e.dtype, shape: e.shape, values });
  }
  return out;
}

export function readRefFile(path: string): Map<string, RefTensor> {
  return readRefSafetensors(new Uint8Array(readFileSync(path)));
}

/** Reference transpose of a row-major [rows, cols] matrix. */
export function refTranspose(v: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = v[i * cols + j]!;
  return out;
}

/** First index where `got` differs from `want` (bit-equal in f32 terms), or -1. Prints the facts on failure. */
export function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  if (got.length !== want.length) return `length ${got.length} ≠ ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], Math.fround(want[i]!))) return `index ${i}: got ${got[i]}, ref ${want[i]}`;
  }
  return undefined;
}

/** A synthetic tensor for `memoryAdapter`: values are made up from the shape unless given. */
export interface FakeTensor {
  shape: number[];
  dtype?: 'F32' | 'I32' | 'I64';
  values?: number[];
}

/** Deterministic, distinct, f32-exact values. */
export function fakeValues(n: number, seed = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (((i * 37 + seed * 101) % 97) - 48) / 64;
  return out;
}

export function tensorRecord(tensors: Record<string, FakeTensor>): Record<string, { dtype: 'F32' | 'I32' | 'I64'; shape: number[]; data: ArrayBufferView }> {
  let seed = 1;
  return Object.fromEntries(
    Object.entries(tensors).map(([k, t]) => {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const dtype = t.dtype ?? 'F32';
      const data = dtype === 'F32' ? (t.values ? Float32Array.from(t.values) : fakeValues(n, seed++)) : dtype === 'I32' ? Int32Array.from(t.values ?? []) : BigInt64Array.from((t.values ?? []).map(BigInt));
      return [k, { dtype, shape: t.shape, data }];
    }),
  );
}

export const BASE_CONFIG = { peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] };

/** Two specs are the same adapter: same modules and replacements, tensors bit-equal, scales equal. */
export function expectSameSpec(got: AdapterSpec, want: AdapterSpec, opts: { config?: boolean } = {}): void {
  const bits = (t: { data: ArrayBufferView }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex');
  const mod = (s: AdapterSpec) =>
    [...s.modules]
      .sort((a, b) => (a.path < b.path ? -1 : 1))
      .map((m) => ({
        path: m.path, kind: m.kind, rank: m.rank, alpha: m.alpha, scale: m.scale, in: m.in, out: m.out, dtype: m.dtype, fanInFanOut: m.fanInFanOut,
        a: bits(m.a), b: bits(m.b), bias: m.bias && bits(m.bias), magnitude: m.magnitude && bits(m.magnitude),
      }));
  const rep = (s: AdapterSpec) =>
    [...s.replacements]
      .sort((a, b) => (a.path + a.kind < b.path + b.kind ? -1 : 1))
      .map((r) => ({ path: r.path, kind: r.kind, dtype: r.dtype, tensors: Object.fromEntries(Object.entries(r.tensors).map(([k, t]) => [k, [t.dtype, t.shape, bits(t)]])) }));
  expect(mod(got)).toEqual(mod(want));
  expect(rep(got)).toEqual(rep(want));
  if (opts.config !== false) expect(got.config).toEqual(want.config);
}

