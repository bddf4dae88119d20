import { beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import type { LoRADelta } from '../../src/backends/backend.js';
import { CHUNK_MIN_WORK, COLUMN_ALIGN, LONE_GAP_MS, MAX_CHUNKS_PER_THREAD, THREAD_MIN_WORK, WAKE_MIN_WORK, chunkColumns } from '../../src/runtime/threads.js';
import { CTL, claimChunks, kernelTable } from '../../src/runtime/thread-body.js';
import { Tensor } from '../../src/tensor.js';
import { Linear } from '../../src/nn/linear.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * Threads split the columns of y into chunks that the caller and workers claim, on a shared memory; each output element is computed by one thread
 * exactly as one thread computes it. So: a threaded linear equals the one-thread linear bit for bit (f32 and bf16
 * W, LoRA on and off, a DoRA row scale, every path: GEMV m ≤ 4, the bf16 GEMV chunks, the packed GEMM), a row's
 * bits still do not depend on its batch, and both agree with the float64 reference (JsBackend) within the f32 bound.
 * Shapes are above THREAD_MIN_WORK so the pool really runs; n is not a multiple of the split's alignment.
 */
describe('chunkColumns', () => {
  it('gives chunks of whole COLUMN_ALIGN groups, about four per thread, never more than 65535 chunks', () => {
    for (const n of [1, 7, 8, 9, 45, 1000, 1027, 4096, 1 << 20])
      for (const t of [1, 2, 3, 4, 16]) {
        const w = chunkColumns(n, t);
        expect(w % COLUMN_ALIGN).toBe(0);
        expect(w).toBeGreaterThanOrEqual(COLUMN_ALIGN);
        expect(Math.ceil(n / w)).toBeLessThanOrEqual(Math.max(4 * t, 1));
        expect(Math.ceil(n / w)).toBeLessThanOrEqual(0xffff);
        if (n >= 64 * t) expect(Math.ceil(n / w)).toBeGreaterThanOrEqual(2 * t);
      }
  });
  it('cuts a long call finer, up to 16 chunks per thread, each keeping CHUNK_MIN_WORK multiply-adds', () => {
    // m = 1, k = n = 4096 on 2 threads: 2^24 multiply-adds, 32 chunks of 128 columns (2^19 each).
    expect(chunkColumns(4096, 2, 4096)).toBe(128);
    // A short call keeps four per thread (2^20 multiply-adds: finer chunks would carry less than 2^19 each).
    expect(chunkColumns(256, 2, 4096)).toBe(32);
    for (const n of [45, 1000, 1027, 4096, 1 << 20])
      for (const t of [1, 2, 3, 16])
        for (const colWork of [1, 896, 4096, 64 * 4096]) {
          const w = chunkColumns(n, t, colWork);
          const chunks = Math.ceil(n / w);
          expect(w % COLUMN_ALIGN).toBe(0);
          expect(chunks).toBeLessThanOrEqual(Math.max(MAX_CHUNKS_PER_THREAD * t, 1));
          expect(chunks).toBeLessThanOrEqual(0xffff);
          // Finer than four per thread only while a chunk keeps CHUNK_MIN_WORK (cut to whole COLUMN_ALIGN groups).
          if (chunks > 4 * t) expect((w + COLUMN_ALIGN) * colWork).toBeGreaterThanOrEqual(CHUNK_MIN_WORK);
          if (n >= 64 * t) expect(chunks).toBeGreaterThanOrEqual(2 * t);
        }
  });
});

describe('claimChunks (the protocol every thread runs)', () => {
  const job = (seq: number, n: number, width: number, limit: number, kernel = 1) => {
    const c = new Int32Array(new SharedArrayBuffer(CTL.WORDS * 4));
    c[CTL.SEQ] = seq;
    c[CTL.TICKET] = (seq & 0x7fff) << 16;
    c[CTL.KERNEL] = kernel;
    c[CTL.CHUNKS] = Math.ceil(n / width);
    c[CTL.WIDTH] = width;
    c[CTL.N] = n;
    c[CTL.SCRATCH] = 1000;
    c[CTL.STRIDE] = 64;
    c[CTL.LIMIT] = limit;
    c.set([3, n, 17, 100, 200, 300, 400], CTL.ARGS);
    return c;
  };
  type Fn = (a: number[], j0: number, j1: number, sp: number) => void;
  it('each chunk is claimed once, with its own columns, the job\'s args and the thread\'s scratch; DONE counts them', () => {
    const c = job(5, 100, 16, 2);
    const seen: number[][] = [];
    const fns: Fn[] = [() => { throw new Error('wrong kernel'); }, (a, j0, j1, sp) => seen.push([a[0], a[1], a[6], j0, j1, sp])];
    claimChunks(c, 5, 1, fns);
    expect(seen).toEqual([0, 16, 32, 48, 64, 80, 96].map((j0) => [3, 100, 400, j0, Math.min(100, j0 + 16), 1064]));
    expect(c[CTL.DONE]).toBe(7);
    claimChunks(c, 5, 0, fns); // nothing left
    expect(seen.length).toBe(7);
  });
  it('a thread woken for an older job claims nothing of a newer one; threads at or above LIMIT stay out; a trap is counted', () => {
    const calls: number[] = [];
    const fns: Fn[] = [(_a, j0) => calls.push(j0)];
    const c = job(6, 64, 16, 2, 0);
    claimChunks(c, 5, 1, fns);
    expect(calls).toEqual([]);
    claimChunks(c, 6, 2, fns);
    expect(calls).toEqual([]);
    claimChunks(c, 6, 0, [() => { throw new Error('trap'); }]);
    expect(c[CTL.ERRORS]).toBe(4);
    expect(c[CTL.DONE]).toBe(4);
  });
  it('kernelTable passes each kernel its arguments in its ABI order', () => {
    const got: Record<string, number[]> = {};
    const rec = (name: string) => (...a: number[]) => void (got[name] = a);
    const t = kernelTable({ peft_f32_linear_cols: rec('f32'), peft_f32xbf16_linear_cols: rec('bf16'), peft_f32_qlinear_cols: rec('q') });
    const a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    t[0](a, 20, 30, 99);
    t[1](a, 20, 30, 99);
    t[2](a, 20, 30, 99);
    expect(got.f32).toEqual([1, 2, 3, 20, 30, 4, 5, 6, 7, 8, 99, 9]); // m n k j0 j1 x w ldw y ep scratch staged
    expect(got.bf16).toEqual(got.f32);
    expect(got.q).toEqual([1, 2, 3, 4, 5, 20, 30, 6, 7, 8, 9, 99, 10, 11, 12]); // m n k bits group j0 j1 x wq scales biases scratch y ep staged
  });
});

describe('threaded wasm linear', () => {
  let one: WasmBackend;
  let three: WasmBackend;
  beforeAll(async () => {
    one = await WasmBackend.create({ threads: 1 });
    three = await WasmBackend.create({ threads: 3 });
  });

  it('the backends say how many threads run; a bad count is a typed error', async () => {
    expect(one.threads).toBe(1);
    expect(one.runtime.shared).toBeUndefined();
    expect(three.threads).toBe(3);
    expect(three.runtime.shared).toBeDefined();
    expect(three.build).toBe(one.build);
    // The pool really splits: the calling thread computes only the first range of a large layer.
    const ex = three.runtime.exports as unknown as Record<string, (...a: number[]) => void>;
    const orig = ex.peft_f32_linear_cols;
    const ranges: number[][] = [];
    ex.peft_f32_linear_cols = (...a: number[]) => {
      ranges.push([a[3], a[4]]);
      orig(...a);
    };
    try {
      const W = three.upload(Tensor.from(new Float32Array(1024 * 1024), [1024, 1024], 'f32'));
      three.linear(Tensor.from(new Float32Array(1024), [1, 1024], 'f32'), W, undefined, []).dispose();
      W.dispose();
    } finally {
      ex.peft_f32_linear_cols = orig;
    }
    // The calling thread claims some of the chunks (how many depends on the scheduler: possibly none), whole chunks.
    const w = chunkColumns(1024, 3);
    for (const [j0, j1] of ranges) {
      expect(j0 % w).toBe(0);
      expect(j1).toBe(Math.min(1024, j0 + w));
    }
    await expect(WasmBackend.create({ threads: 0 })).rejects.toMatchObject({ code: 'bad_option' });
    await expect(WasmBackend.create({ threads: 1.5 })).rejects.toMatchObject({ code: 'bad_option' });
  });

  it('a lone small call does not wake sleeping workers: the caller computes every column, with the bits of one thread', async () => {
    const k = 1024, n = 1040;
    expect(k * n).toBeGreaterThanOrEqual(THREAD_MIN_WORK); // split into chunks …
    expect(k * n).toBeLessThan(WAKE_MIN_WORK); // … but too small to wake a worker
    const wf = randomF32(rng(41), n * k);
    const xf = randomF32(rng(42), k);
    const W3 = three.upload(Tensor.from(wf, [n, k], 'f32'), { linearWeight: true });
    const W1 = one.upload(Tensor.from(wf, [n, k], 'f32'), { linearWeight: true });
    const ex = three.runtime.exports as unknown as Record<string, (...a: number[]) => void>;
    const orig = ex.peft_f32_linear_cols;
    const cols = new Uint8Array(n); // columns the calling thread computed (the workers call their own instances)
    ex.peft_f32_linear_cols = (...a: number[]) => {
      cols.fill(1, a[3], a[4]);
      orig(...a);
    };
    let got: Float32Array;
    try {
      // Idle far longer than a worker spins (SPIN_LOADS) and than LONE_GAP_MS: every worker sleeps in Atomics.wait.
      await new Promise((r) => setTimeout(r, 100 + LONE_GAP_MS));
      const y = three.linear(Tensor.from(xf, [1, k], 'f32'), W3, undefined, []);
      got = Float32Array.from(y.data as Float32Array);
      y.dispose();
    } finally {
      ex.peft_f32_linear_cols = orig;
    }
    expect(cols.every((c) => c === 1)).toBe(true);
    const ref = one.linear(Tensor.from(xf, [1, k], 'f32'), W1, undefined, []);
    expect(got).toEqual(ref.data);
    ref.dispose();
    W3.dispose();
    W1.dispose();
  });

  const n = 1027;
  expect(n * 1029).toBeGreaterThanOrEqual(THREAD_MIN_WORK);
  // W row-major (upload) and in panels (a layer's W: linearWeight), whose GEMMs from m = 3 read x packed once by the
  // caller for every chunk (staged) where one thread packs its own; panels on rows from k = 2048 too, where m ≤ 3
  // (f32) and m ≤ 4 (bf16) run the streams tiles on each chunk instead (x read in place).
  for (const dtype of ['f32', 'bf16'] as const)
    for (const panels of [false, true])
    for (const k of panels ? [1029, 2053] : [1029])
    for (const lora of [false, true]) {
      it(`${dtype} W${panels ? ' in panels' : ''}, k = ${k}${lora ? ', two LoRA terms + lora bias + row scale' : ''}: threads = 3 equals threads = 1 bit for bit at m = 1…5, 9, 17; rows batch-invariant; within the f32 bound of float64`, () => {
        const rand = rng(dtype === 'f32' ? 11 : 12);
        const wf = randomF32(rand, n * k);
        const bias = randomF32(rand, n);
        const ranks = lora ? [8, 3] : [];
        const a = ranks.map((r) => randomF32(rand, k * r));
        const b = ranks.map((r) => randomF32(rand, r * n));
        const lb = randomF32(rand, n);
        const rs = Float32Array.from(randomF32(rand, n), (v) => 0.5 + Math.abs(v));
        const x = randomF32(rng(5), 17 * k);
        const setup = (be: WasmBackend | JsBackend) => {
          const w = Tensor.from(wf, [n, k], 'f32');
          const W = dtype === 'bf16' ? be.upload(Tensor.from(toBf16(wf), [n, k], 'bf16'), { keepBf16: true, linearWeight: panels }) : be.upload(w, { linearWeight: panels });
          const deltas: LoRADelta[] = ranks.map((r, i) => ({
            a: be.upload(Tensor.from(a[i], [k, r], 'f32')),
            b: be.upload(Tensor.from(b[i], [r, n], 'f32')),
            scale: 0.5 + i,
            ...(i === 1 ? { bias: be.upload(Tensor.from(lb, [n], 'f32')) } : {}),
          }));
          const B = be.upload(Tensor.from(bias, [n], 'f32'));
          const R = lora ? be.upload(Tensor.from(rs, [n], 'f32')) : undefined;
          return (from: number, m: number) => {
            const y = be.linear(Tensor.from(x.slice(from * k, (from + m) * k), [m, k], 'f32'), W, B, deltas, R);
            const out = Float64Array.from(y.data as Float32Array);
            y.dispose();
            return out;
          };
        };
        const r1 = setup(one);
        const r3 = setup(three);
        const ref = setup(new JsBackend());
        const alone = Array.from({ length: 17 }, (_, i) => r3(i, 1));
        for (const m of [1, 2, 3, 4, 5, 9, 17]) {
          const y3 = r3(0, m);
          const y1 = r1(0, m);
          expect(bits(y3), `m=${m}: 3 threads vs 1`).toEqual(bits(y1));
          for (let i = 0; i < m; i++) expect(bits(y3.subarray(i * n, (i + 1) * n)), `m=${m} row ${i} vs alone`).toEqual(bits(alone[i]));
          if (m === 5) {
            const y = ref(0, m);
            // |Δ| ≤ (k/4 + 4 + Σr)·2⁻²³·Σ|terms| (linear.h); with |x|, |w|, |A|, |B|, |bias| ≤ 1 and row scale ≤ 1.5:
            // Σ|terms| ≤ 1.5·(k + Σ_d s_d·r_d·k + 2) + 1.
            const mag = 1.5 * (k + ranks.reduce((s, r, i) => s + (0.5 + i) * r * k, 0) + 2) + 1;
            expectClose(y3, y, () => (k / 4 + 4 + 11) * EPS32 * mag, `${dtype} m=5`);
          }
        }
      });
    }
});

describe('threaded wasm quantised linear', () => {
  it('4-bit W (group 64), with and without LoRA: threads = 3 equals threads = 1 bit for bit at m = 1…5, 9; rows batch-invariant', async () => {
    const one = await WasmBackend.create({ threads: 1 });
    const three = await WasmBackend.create({ threads: 3 });
    const n = 1030;
    const k = 1024;
    expect(n * k).toBeGreaterThanOrEqual(THREAD_MIN_WORK);
    const rand = rng(21);
    const wf = randomF32(rand, n * k);
    const bias = randomF32(rand, n);
    const a = randomF32(rand, k * 8);
    const b = randomF32(rand, 8 * n);
    const x = randomF32(rng(9), 9 * k);
    const setup = (be: WasmBackend, lora: boolean) => {
      const q = QuantizedLinear.fromLinear(new Linear(Tensor.from(wf, [n, k], 'f32'), Tensor.from(bias, [n], 'f32'), { backend: be }), { bits: 4, groupSize: 64 }).q;
      const B = be.upload(Tensor.from(bias, [n], 'f32'));
      const deltas: LoRADelta[] = lora ? [{ a: be.upload(Tensor.from(a, [k, 8], 'f32')), b: be.upload(Tensor.from(b, [8, n], 'f32')), scale: 0.5 }] : [];
      return (from: number, m: number) => {
        const y = be.quantizedLinear(Tensor.from(x.slice(from * k, (from + m) * k), [m, k], 'f32'), q, B, deltas);
        const out = Float64Array.from(y.data as Float32Array);
        y.dispose();
        return out;
      };
    };
    for (const lora of [false, true]) {
      const r1 = setup(one, lora);
      const r3 = setup(three, lora);
      const alone = Array.from({ length: 9 }, (_, i) => r3(i, 1));
      for (const m of [1, 2, 3, 4, 5, 9]) {
        const y3 = r3(0, m);
        expect(bits(y3), `lora=${lora} m=${m}: 3 threads vs 1`).toEqual(bits(r1(0, m)));
        for (let i = 0; i < m; i++) expect(bits(y3.subarray(i * n, (i + 1) * n)), `lora=${lora} m=${m} row ${i}`).toEqual(bits(alone[i]));
      }
    }
  });
});

function toBf16(f: Float32Array): Uint16Array<ArrayBuffer> {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  return Uint16Array.from(u, (v) => ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff);
}
function bits(a: Float64Array): number[] {
  return Array.from(new Uint32Array(Float32Array.from(a).buffer));
}
