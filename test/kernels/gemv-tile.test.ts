import { beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { createBackend } from '../../src/backends/index.js';
import type { LoRADelta } from '../../src/backends/backend.js';
import { GEMV_TUNE_MIN_BYTES, GEMV_TUNE_SAMPLES, GemvTuner } from '../../src/backends/wasm/gemv-tuner.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * The m = 1 GEMV runs one of two tiles (cpp/tuning.h: the build's default or 8 × 2), chosen at run time by timing.
 * The choice must never show in the results: both tiles give the same bits as each other (f32 and bf16 W, short rows
 * that take the touch-ahead path and long rows, and a W in panels (where the knob must not matter), plain or with bias + two LoRA terms +
 * a row scale, one thread and three), and both agree with the float64 reference (JsBackend) within the f32 bound.
 */
const bits = (a: Float32Array) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
const toBf16 = (f: Float32Array) => Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16);
const fromBf16 = (h: Uint16Array) => new Float32Array(Uint32Array.from(h, (u) => u << 16).buffer);

describe('m = 1 GEMV tiles', () => {
  const be: Record<string, WasmBackend> = {};
  beforeAll(async () => {
    for (const t of [1, 3]) for (const tile of ['build', '8x2'] as const) be[`${tile}/${t}`] = await WasmBackend.create({ threads: t, gemvTile: tile });
  });

  it('the two knob values name different tiles in this build; a bad tile option is a typed error', async () => {
    const ex = be['build/1'].runtime.exports;
    for (const knob of [0, 1]) {
      const [a, b] = [ex.peft_gemv1_tile(knob, 0), ex.peft_gemv1_tile(knob, 1)];
      expect(b).toBe((8 << 8) | 2);
      expect(a).not.toBe(b);
      expect(a >> 8).toBeGreaterThanOrEqual(4);
    }
    expect(ex.peft_gemv1_tile(2, 0)).toBe(-1);
    expect(ex.peft_set_tuning(0, 2)).toBe(-1);
    expect(ex.peft_set_tuning(5, 0)).toBe(-1);
    // The panel sweep (knob 2) has a third and a fourth value (x packed in row pairs; the first pair over streams);
    // nothing past them.
    expect(ex.peft_set_tuning(2, 4)).toBe(-1);
    expect(ex.peft_set_tuning(2, 3)).toBe(0);
    expect(ex.peft_set_tuning(2, 2)).toBe(0);
    expect(ex.peft_set_tuning(2, 0)).toBe(0);
    await expect(WasmBackend.create({ gemvTile: 'fast' as never })).rejects.toMatchObject({ code: 'bad_option' });
    await expect(createBackend('wasm', { gemvTile: 'fast' as never })).rejects.toMatchObject({ code: 'bad_option' });
    expect(((await createBackend('wasm', { threads: 1, gemvTile: '8x2' })) as WasmBackend).gemvTile).toBe('8x2');
    expect(((await createBackend('wasm', { threads: 1, kernels: 'scalar' })) as WasmBackend).gemvTile).toBe('build');
  });

  // n = 1027: no multiple of 4, 8 or 16 (every column tail runs). k: short rows (k·bytes ≤ 2560, the touch-ahead
  // path) and long rows; `panels`: W uploaded as a linear weight, stored in panels (one tile: the knob must not matter).
  const cases = [
    { dtype: 'f32', k: 600, panels: false },
    { dtype: 'f32', k: 1029, panels: true },
    { dtype: 'bf16', k: 1208, panels: false },
    { dtype: 'bf16', k: 1029, panels: true },
  ] as const;
  const n = 1027;
  for (const c of cases)
    for (const lora of [false, true])
      it(`${c.dtype} W [${n}, ${c.k}]${c.panels ? ' in panels' : ''}${lora ? ' + bias, two LoRA terms, row scale' : ''}: 8×2 = build tile bit for bit, 1 and 3 threads; within the f32 bound of float64`, () => {
        const rand = rng(c.k + (lora ? 1 : 0));
        const k = c.k;
        const wf = randomF32(rand, n * k);
        const wb = toBf16(wf);
        const ranks = lora ? [8, 3] : [];
        const a = ranks.map((r) => randomF32(rand, k * r));
        const b = ranks.map((r) => randomF32(rand, r * n));
        const bias = randomF32(rand, n);
        const rs = Float32Array.from(randomF32(rand, n), (v) => 0.5 + Math.abs(v));
        const x = randomF32(rand, k);
        const run = (back: WasmBackend | JsBackend) => {
          const W = c.dtype === 'bf16'
            ? back.upload(Tensor.from(wb, [n, k], 'bf16'), { keepBf16: true, linearWeight: c.panels })
            : back.upload(Tensor.from(wf, [n, k], 'f32'), { linearWeight: c.panels });
          const deltas: LoRADelta[] = ranks.map((r, i) => ({
            a: back.upload(Tensor.from(a[i], [k, r], 'f32')),
            b: back.upload(Tensor.from(b[i], [r, n], 'f32')),
            scale: 0.5 + i,
          }));
          const y = back.linear(Tensor.from(x, [1, k], 'f32'), W, lora ? back.upload(Tensor.from(bias, [n], 'f32')) : undefined, deltas,
            lora ? back.upload(Tensor.from(rs, [n], 'f32')) : undefined);
          const out = (y.data as Float32Array).slice();
          y.dispose();
          return out;
        };
        const base = run(be['build/1']);
        for (const key of ['8x2/1', 'build/3', '8x2/3']) expect(bits(run(be[key])), key).toEqual(bits(base));
        // Reference on the W the kernels read (bf16 decoded exactly). |Δ| ≤ (k/4 + 4 + Σr)·2⁻²³·Σ|terms| (linear.h),
        // with |x|, |w|, |A|, |B|, |bias| ≤ 1 and row scale ≤ 1.5: Σ|terms| ≤ 1.5·(k + Σ_d s_d·r_d·k + 1) + 1.
        const js = new JsBackend();
        const ref = c.dtype === 'bf16'
          ? (() => { const save = wf.slice(); wf.set(fromBf16(wb)); const r = runRef(); wf.set(save); return r; })()
          : runRef();
        function runRef() {
          const W = js.upload(Tensor.from(wf, [n, k], 'f32'));
          const deltas: LoRADelta[] = ranks.map((r, i) => ({ a: Tensor.from(a[i], [k, r], 'f32'), b: Tensor.from(b[i], [r, n], 'f32'), scale: 0.5 + i }));
          const y = js.linear(Tensor.from(x, [1, k], 'f32'), W, lora ? Tensor.from(bias, [n], 'f32') : undefined, deltas, lora ? Tensor.from(rs, [n], 'f32') : undefined);
          return Float64Array.from(y.data as Float32Array);
        }
        const mag = 1.5 * (k + ranks.reduce((s, r, i) => s + (0.5 + i) * r * k, 0) + 1) + 1;
        expectClose(base, ref, () => (k / 4 + 4 + 11) * EPS32 * mag, `${c.dtype} k=${k}`);
      });
});

describe("gemvTile 'auto'", () => {
  it('times both tiles on a large shape, settles on one and says which; every call gives the same bits; small shapes are not timed', async () => {
    const be = await WasmBackend.create({ threads: 2 }); // the shared-memory runtime: its exports object can be spied on
    expect(be.gemvTile).toBe('auto');
    const ex = be.runtime.exports as unknown as Record<string, (...a: number[]) => number>;
    const orig = ex.peft_set_tuning;
    const set: number[][] = [];
    ex.peft_set_tuning = (...a: number[]) => (set.push(a), orig(...a));
    try {
      const n = 520, k = 512; // 1 MiB of f32 W: timed wherever performance.now() ticks in 2 µs or less
      expect(n * k * 4).toBeGreaterThanOrEqual(GemvTuner.of(be.runtime).minBytes);
      const rand = rng(3);
      const W = be.upload(Tensor.from(randomF32(rand, n * k), [n, k], 'f32'));
      const small = be.upload(Tensor.from(randomF32(rand, 8 * k), [8, k], 'f32')); // 16 KiB: never timed
      expect(8 * k * 4).toBeLessThan(GEMV_TUNE_MIN_BYTES);
      const x = be.upload(Tensor.from(randomF32(rand, k), [1, k], 'f32'));
      const outs: Uint32Array[] = [];
      for (let i = 0; i < 2 * GEMV_TUNE_SAMPLES + 2; i++) {
        expect(be.gemvTuning()[0]?.state ?? 'timing').toBe('timing');
        const y = be.linear(x, W, undefined, []);
        outs.push(bits((y.data as Float32Array).slice()));
        y.dispose();
        be.linear(x, small, undefined, []).dispose();
      }
      const [r, ...rest] = be.gemvTuning();
      expect(rest).toEqual([]); // the small W is not timed
      expect(r).toMatchObject({ dtype: 'f32', k, n, state: 'settled' });
      expect(r.altSpeedup).toBeGreaterThan(0);
      const ex2 = be.runtime.exports;
      expect([ex2.peft_gemv1_tile(0, 0), ex2.peft_gemv1_tile(0, 1)].map((t) => `${t >> 8}x${t & 255}`)).toContain(r.tile);
      // Both tiles ran while timing: the knob was set to 1 and back to 0 (the small W runs the build's tile).
      expect(set.some(([kn, v]) => kn === 0 && v === 1)).toBe(true);
      for (const o of outs) expect(o).toEqual(outs[0]);
      // Settled: no more knob writes for this shape alone.
      const before = set.length;
      for (let i = 0; i < 4; i++) be.linear(x, W, undefined, []).dispose();
      expect(set.length - before).toBeLessThanOrEqual(1);
    } finally {
      ex.peft_set_tuning = orig;
    }
  });
});
