import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { QuantizedWeight } from '../../src/backends/backend.js';
import { JsBackend, refDequantize, refLinear } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { f32Dequantize } from '../../src/backends/wasm/quant.js';
import { allocWasmTensor, copyToWasm } from '../../src/runtime/storage.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * MLX affine quantisation (bits 4/8, group 32/64/128): dequantize and quantised linear (SIMD128 and scalar)
 * against the golden fixture and the float64 reference.
 *
 * Tolerances: dequantisation is one f32 multiply-add per element, so |W − W_ref| ≤ 2·2⁻²⁴·(|s·q| + |b|).
 * The quantised linear is the f32 linear on that W: (k + Σr + 8)·2⁻²³ · ref_abs, as in linear.test.ts.
 */

/** Ten-line safetensors reader for the fixture (8-byte LE header length, JSON header, data). */
function readSafetensors(path: string): Record<string, { dtype: string; shape: number[]; data: ArrayBuffer }> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out: Record<string, { dtype: string; shape: number[]; data: ArrayBuffer }> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const bytes = b.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]);
    out[k] = { dtype: v.dtype, shape: v.shape, data: new Uint8Array(bytes).buffer };
  }
  return out;
}

const DIR = join(__dirname, '../fixtures/golden/qlora-affine');
const P = 'model.layers.0.mlp.up_proj';

/** Packs integer codes q [n,k] (each < 2^bits) into MLX words, low bits first. */
function pack(q: Uint8Array, n: number, k: number, bits: number): Uint32Array {
  const per = 32 / bits;
  const w = new Uint32Array((n * k) / per);
  for (let i = 0; i < n * k; i++) w[Math.floor(i / per)] += q[i] * 2 ** ((i % per) * bits);
  return w;
}

describe('quant: golden fixture qlora-affine (bits 4, group 32)', () => {
  const base = readSafetensors(join(DIR, 'base.safetensors'));
  const io = readSafetensors(join(DIR, 'io.safetensors'));
  const adapter = readSafetensors(join(DIR, 'adapter/adapter_model.safetensors'));
  const wq = new Uint32Array(base[`${P}.weight`].data);
  const scales = new Float32Array(base[`${P}.scales`].data);
  const biases = new Float32Array(base[`${P}.biases`].data);
  const expected = new Float64Array(io[`${P}.dequantized.weight`].data);
  const [n, k] = [24, 64];

  it('refDequantize equals the fixture', () => {
    expectClose(refDequantize(wq, scales, biases, n, k, 4, 32), expected, (i) => 1e-6 * (1 + Math.abs(expected[i])), '[24,64]');
  });

  for (const kernels of ['simd128', 'scalar'] as const) {
    it(`${kernels}: dequantize equals the fixture`, async () => {
      const be = await WasmBackend.create({ kernels });
      const rt = be.runtime;
      const tw = copyToWasm(rt, Tensor.from(wq, [24, 8], 'u32'));
      const ts = copyToWasm(rt, Tensor.from(scales, [24, 2], 'f32'));
      const tb = copyToWasm(rt, Tensor.from(biases, [24, 2], 'f32'));
      const out = allocWasmTensor(rt, [n, k], 'f32');
      const ptr = (t: Tensor) => (t.storage as unknown as { ptr: number }).ptr;
      f32Dequantize(rt, n, k, 4, 32, ptr(tw), ptr(ts), ptr(tb), ptr(out), kernels);
      const ref = refDequantize(wq, scales, biases, n, k, 4, 32);
      expectClose(out.data, expected, (i) => 2 * 2 ** -24 * (Math.abs(ref[i]) + 64 * Math.abs(scales[Math.floor(i / 32)])) + 1e-7, '[24,64]');
      for (const t of [tw, ts, tb, out]) t.dispose();
    });

    it(`${kernels}: quantizedLinear reproduces y_off and y_on (tolerance 1e-4·max(1, max|y|), from case.json)`, async () => {
      const be = await WasmBackend.create({ kernels });
      const x = new Float32Array(io[`${P}.x`].data);
      const q: QuantizedWeight = {
        w: be.upload(Tensor.from(wq, [24, 8], 'u32')),
        scales: be.upload(Tensor.from(scales, [24, 2], 'f32')),
        biases: be.upload(Tensor.from(biases, [24, 2], 'f32')),
        bits: 4,
        groupSize: 32,
        k,
        n,
      };
      // PEFT lora_A [r,in] / lora_B [out,r] → internal A [k,r] / B [r,n].
      const la = new Float32Array(adapter[`base_model.model.${P}.lora_A.weight`].data);
      const lb = new Float32Array(adapter[`base_model.model.${P}.lora_B.weight`].data);
      const r = 4;
      const A = new Float32Array(k * r);
      const B = new Float32Array(r * n);
      for (let i = 0; i < r; i++) for (let j = 0; j < k; j++) A[j * r + i] = la[i * k + j];
      for (let i = 0; i < n; i++) for (let j = 0; j < r; j++) B[j * n + i] = lb[i * r + j];
      const delta = { a: be.upload(Tensor.from(A, [k, r], 'f32')), b: be.upload(Tensor.from(B, [r, n], 'f32')), scale: 2 };
      for (const [key, deltas] of [['y_off', []], ['y_on', [delta]]] as const) {
        const want = new Float64Array(io[`${P}.${key}`].data);
        const tol = 1e-4 * Math.max(1, ...Array.from(want, Math.abs));
        const y = be.quantizedLinear(Tensor.from(x, [3, k], 'f32'), q, undefined, deltas);
        expectClose(y.data, want, () => tol, `${key} [3,64]→[3,24]`);
        y.dispose();
      }
    });
  }
});

interface QCase {
  m: number;
  n: number;
  k: number;
  bits: 4 | 8;
  group: number;
  r: number;
  bias: boolean;
  rowScale: boolean;
}
const qcases: QCase[] = [];
for (const bits of [4, 8] as const)
  for (const group of [32, 64, 128])
    for (const m of [1, 2, 3, 5, 64]) qcases.push({ m, n: 37, k: 256, bits, group, r: m % 2 ? 8 : 0, bias: m !== 2, rowScale: m === 3 });
qcases.push({ m: 4, n: 17, k: 128, bits: 4, group: 32, r: 64, bias: true, rowScale: false });
for (const bits of [4, 8] as const) qcases.push({ m: 4, n: 9, k: 128, bits, group: 128, r: 0, bias: true, rowScale: true }); // fused m = 4

qcases.push({ m: 7, n: 33, k: 4096 + 128, bits: 4, group: 64, r: 1, bias: true, rowScale: true }); // k-block edge

const qtitle = (c: QCase) => `m=${c.m} n=${c.n} k=${c.k} bits=${c.bits} group=${c.group} r=${c.r} bias=${c.bias} rowScale=${c.rowScale}`;

for (const kernels of ['simd128', 'scalar', 'js'] as const) {
  describe(`quantizedLinear (${kernels}) vs float64 reference`, () => {
    let be: WasmBackend | JsBackend;
    beforeAll(async () => {
      be = kernels === 'js' ? new JsBackend() : await WasmBackend.create({ kernels });
    });
    qcases.forEach((c, ci) => {
      it(qtitle(c), () => {
        const rand = rng(500 + ci);
        const codes = Uint8Array.from({ length: c.n * c.k }, () => Math.floor(rand() * 2 ** c.bits));
        const wq = pack(codes, c.n, c.k, c.bits);
        const g = c.k / c.group;
        const scales = Float32Array.from(randomF32(rand, c.n * g), (v) => v / 8);
        const biases = randomF32(rand, c.n * g);
        const x = randomF32(rand, c.m * c.k);
        const bias = c.bias ? randomF32(rand, c.n) : undefined;
        const rowScale = c.rowScale ? Float32Array.from(randomF32(rand, c.n), (v) => 1 + v / 2) : undefined;
        const A = randomF32(rand, c.k * c.r);
        const B = randomF32(rand, c.r * c.n);
        const W = refDequantize(wq, scales, biases, c.n, c.k, c.bits, c.group);
        const deltasRef = c.r ? [{ a: A, b: B, r: c.r, scale: 1.5 }] : [];
        const ref = refLinear(x, c.m, c.k, W, c.n, bias, deltasRef, rowScale);
        const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);
        const refAbs = refLinear(abs(x), c.m, c.k, abs(W), c.n, bias && abs(bias), deltasRef.map((d) => ({ ...d, a: abs(d.a), b: abs(d.b) })), rowScale && abs(rowScale));
        const up = <T extends Float32Array | Uint32Array>(a: T, shape: number[], dt: 'f32' | 'u32') => be.upload(Tensor.from(a as never, shape, dt));
        const q: QuantizedWeight = {
          w: up(wq, [c.n, (c.k * c.bits) / 32], 'u32'),
          scales: up(scales, [c.n, g], 'f32'),
          biases: up(biases, [c.n, g], 'f32'),
          bits: c.bits,
          groupSize: c.group,
          k: c.k,
          n: c.n,
        };
        const deltas = c.r ? [{ a: up(A, [c.k, c.r], 'f32'), b: up(B, [c.r, c.n], 'f32'), scale: 1.5 }] : [];
        const y = be.quantizedLinear(
          Tensor.from(x, [c.m, c.k], 'f32'), q, bias && up(bias, [c.n], 'f32'), deltas, rowScale && up(rowScale, [c.n], 'f32'),
        );
        // + 2 ulps of each dequantised W element, carried through the dot product (|x|·|W| ⊂ refAbs).
        expectClose(y.data, ref, (j) => (c.k + c.r + 10) * EPS32 * refAbs[j] + 1e-30, qtitle(c));
        y.dispose();
      });
    });
  });
}

describe('quantizedLinear, decode (m ≤ 4: the fused SIMD GEMV) with MLX-like symmetric ranges', () => {
  // MLX quantises w ∈ [lo, hi] as s = (hi − lo)/(2^bits − 1), b = lo ≈ −s·2^(bits−1): the fused form
  // s·Σx·q + b·Σx then subtracts two large terms. Bound: (k + r + 10)·2⁻²³·Σ_p |x_p|·(|s·q_p| + |b|).
  for (const bits of [4, 8] as const)
    for (const m of [1, 2, 3, 4])
      it(`bits=${bits} m=${m} k=512 group=64`, async () => {
        const be = await WasmBackend.create();
        const [n, k, group] = [13, 512, 64];
        const rand = rng(900 + bits * 10 + m);
        const g = k / group;
        const codes = Uint8Array.from({ length: n * k }, () => Math.floor(rand() * 2 ** bits));
        const wq = pack(codes, n, k, bits);
        const scales = Float32Array.from({ length: n * g }, () => 0.01 + rand() * 0.02);
        const biases = Float32Array.from(scales, (sc) => -sc * 2 ** (bits - 1) + (rand() - 0.5) * sc);
        const x = randomF32(rand, m * k);
        const W = refDequantize(wq, scales, biases, n, k, bits, group);
        const ref = refLinear(x, m, k, W, n, undefined, []);
        const bound = new Float64Array(m * n);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++)
            for (let p = 0; p < k; p++) {
              const gi = j * g + Math.floor(p / group);
              bound[i * n + j] += Math.abs(x[i * k + p]) * (Math.abs(scales[gi] * codes[j * k + p]) + Math.abs(biases[gi]));
            }
        const q: QuantizedWeight = {
          w: be.upload(Tensor.from(new Uint32Array(wq), [n, (k * bits) / 32], 'u32')),
          scales: be.upload(Tensor.from(scales, [n, g], 'f32')),
          biases: be.upload(Tensor.from(biases, [n, g], 'f32')),
          bits,
          groupSize: group,
          k,
          n,
        };
        const y = be.quantizedLinear(Tensor.from(x, [m, k], 'f32'), q, undefined, []);
        expectClose(y.data, ref, (j) => (k + 10) * EPS32 * bound[j], `symmetric bits=${bits} m=${m}`);
        y.dispose();
      });
});

describe('quantizedLinear layout checks', () => {
  it('rejects k not a multiple of the group', async () => {
    const be = await WasmBackend.create();
    const q = { w: Tensor.zeros([2, 5], 'u32'), scales: Tensor.zeros([2, 1], 'f32'), biases: Tensor.zeros([2, 1], 'f32'), bits: 4 as const, groupSize: 32, k: 40, n: 2 };
    expect(() => be.quantizedLinear(Tensor.zeros([1, 40], 'f32'), q, undefined, [])).toThrowError(/unsupported quantised layout/);
  });
});
