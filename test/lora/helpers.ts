import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import type { DType } from '../../src/dtype.js';
import type { Module } from '../../src/nn/module.js';
import { Tensor } from '../../src/tensor.js';
import type { AdapterModule, AdapterSpec } from '../../src/adapter/spec.js';

export const GOLDEN = new URL('../fixtures/golden/', import.meta.url).pathname;
export const REAL = new URL('../fixtures/peft-real/', import.meta.url).pathname;

const DTYPE: Record<string, DType> = { F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U32: 'u32', U8: 'u8', I8: 'i8' };

/** A plain safetensors read for test fixtures (the format module has its own tests). */
export function readSafetensors(path: string): Map<string, Tensor> {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, end] = e.data_offsets;
    const copy = new Uint8Array(end - b);
    copy.set(bytes.subarray(8 + n + b, 8 + n + end));
    const dtype = DTYPE[e.dtype];
    const T = { f64: Float64Array, f32: Float32Array, f16: Uint16Array, bf16: Uint16Array, i32: Int32Array, u32: Uint32Array, u8: Uint8Array, i8: Int8Array }[dtype];
    out.set(name, Tensor.from(new T(copy.buffer) as never, e.shape, dtype));
  }
  return out;
}

/** `tol = 1e-4·max(1, max|exp|)` (case.json); a failure prints first bad index, ref, got, max error and shape. */
export function expectClose(got: ArrayLike<number>, exp: ArrayLike<number>, shape: readonly number[], rel = 1e-4, what = ''): void {
  expect(got.length, `${what} length`).toBe(exp.length);
  let maxAbs = 0;
  for (let i = 0; i < exp.length; i++) maxAbs = Math.max(maxAbs, Math.abs(exp[i]));
  const tol = rel * Math.max(1, maxAbs);
  let maxErr = 0;
  let bad = -1;
  for (let i = 0; i < exp.length; i++) {
    const e = Math.abs(got[i] - exp[i]);
    if (!(e <= tol) && bad < 0) bad = i;
    if (e > maxErr || Number.isNaN(e)) maxErr = Number.isNaN(e) ? Infinity : e;
  }
  if (bad >= 0)
    expect.fail(`${what}: first bad index ${bad} ref ${exp[bad]} got ${got[bad]}; max error ${maxErr} > tol ${tol}; shape [${shape}]`);
}

/** Byte equality of two tensors' data. */
export function sameBytes(a: Tensor, b: Tensor): boolean {
  const x = a.storage.bytes();
  const y = b.storage.bytes();
  return x.length === y.length && Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.length), Buffer.from(y.buffer, y.byteOffset, y.length)) === 0;
}

/** Every module object and the bytes of every tensor field reachable from it, for before/after comparison. */
export function snapshot(model: Module): { modules: Map<string, Module>; bytes: Map<string, Uint8Array> } {
  const modules = new Map<string, Module>([['', model], ...model.namedModules()]);
  const bytes = new Map<string, Uint8Array>();
  for (const [path, m] of modules) {
    for (const [field, v] of Object.entries(m)) {
      if (v instanceof Tensor) bytes.set(`${path}.${field}`, v.storage.bytes().slice());
      if (field === 'q' && v && typeof v === 'object')
        for (const [f2, t] of Object.entries(v)) if (t instanceof Tensor) bytes.set(`${path}.q.${f2}`, t.storage.bytes().slice());
    }
  }
  return { modules, bytes };
}

export function expectSnapshotEqual(a: ReturnType<typeof snapshot>, b: ReturnType<typeof snapshot>): void {
  expect([...b.modules.keys()]).toEqual([...a.modules.keys()]);
  for (const [p, m] of a.modules) expect(b.modules.get(p), p).toBe(m);
  expect([...b.bytes.keys()]).toEqual([...a.bytes.keys()]);
  for (const [k, v] of a.bytes) expect(Buffer.compare(Buffer.from(v), Buffer.from(b.bytes.get(k)!)), k).toBe(0);
}

/** Deterministic PRNG (mulberry32) for synthetic weights. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomTensor(rand: () => number, shape: number[], amp = 1): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.f32(Array.from({ length: n }, () => (rand() * 2 - 1) * amp), shape);
}

/** A hand-built linear adapter module (internal layout a [in,r], b [r,out]). */
export function linearModule(path: string, a: Tensor<'f32'>, b: Tensor<'f32'>, scale: number, extra: Partial<AdapterModule> = {}): AdapterModule {
  const rank = a.shape[1];
  return { path, kind: 'linear', rank, alpha: scale * rank, scale, in: a.shape[0], out: b.shape[1], dtype: 'F32', a, b, fanInFanOut: false, ...extra };
}

export function specOf(modules: AdapterModule[], extra: Partial<AdapterSpec> = {}): AdapterSpec {
  return { format: 'peft', name: 'default', config: {}, modules, replacements: [], warnings: [], ...extra };
}

/** Reads an output tensor (any device) as a plain array. */
export async function values(t: Tensor): Promise<Float32Array> {
  return (await t.read()) as Float32Array;
}

export type BackendCase = { name: string; make: () => Promise<Backend> };
