// A linear layer's W on wasm is stored in the layout the kernels stream fastest: panels of 4 rows (f32:
// cpp/linear_panel.h, bf16: cpp/linear_bf16.h). The layout must be invisible: `data` reads row-major, every path (GEMV, GEMM, threads, scalar twins, LoRA, DoRA, fuse)
// gives float64's values within the f32 bound and the same bits as a compact row-major W, and the block is freed with
// the layer. References: float64 here.
import { beforeAll, describe, expect, test } from 'vitest';
import { WasmBackend } from '../../src/backends/wasm.js';
import { DoRALinear } from '../../src/lora/dora-linear.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { Embedding } from '../../src/nn/embedding.js';
import { Linear } from '../../src/nn/linear.js';
import { PanelWasmStorage, WasmStorage } from '../../src/runtime/storage.js';
import { PANEL_SWEEP_MIN_WORK, PANEL_SWEEP_NAMES, PANEL_SWEEP_SAMPLES, PanelSweepTuner } from '../../src/backends/wasm/panel-sweep.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, linearReference, randomF32, rng } from '../kernels/helpers.js';

const k = 1041; // k % 4 ≠ 0 (a panel's last chunk is padded) and k > a GEMM k-block, so tails and blocks both run
const n = 37; // n % 4 ≠ 0 and n % 16 ≠ 0: every column tail of the GEMV and the GEMM
const f32 = (a: Float32Array<ArrayBuffer>, shape: number[]) => Tensor.from(a, shape, 'f32');
const bits = (t: Tensor) => new Uint32Array(new Float32Array(t.data as Float32Array).buffer);

/** float64 x·Wᵀ (+ s·x·A·B) (row-scaled) + b, and Σ|terms| per element for the f32 bound. */
function reference(m: number, x: Float32Array, w: Float32Array, b: Float32Array, lora?: { a: Float32Array; b: Float32Array; r: number; s: number }, gain?: Float64Array) {
  const { ref, mag } = linearReference(x, w, m, n, k); // x·Wᵀ, no bias yet
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = ref[i * n + j];
      let abs = mag[i * n + j];
      if (lora) {
        for (let q = 0; q < lora.r; q++) {
          let t = 0;
          for (let p = 0; p < k; p++) t += x[i * k + p] * lora.a[p * lora.r + q];
          acc += lora.s * t * lora.b[q * n + j];
          abs += Math.abs(lora.s * t * lora.b[q * n + j]);
        }
      }
      const g = gain ? gain[j] : 1;
      ref[i * n + j] = g * acc + b[j];
      mag[i * n + j] = Math.abs(g) * abs + Math.abs(b[j]);
    }
  return { ref, mag };
}
const bound = (mag: Float64Array) => (i: number) => (k / 4 + 40) * EPS32 * mag[i] + 1e-30;

describe('the stored layout of a linear W (wasm)', () => {
  let be: WasmBackend;
  let scalar: WasmBackend;
  beforeAll(async () => {
    be = await WasmBackend.create({ threads: 1 });
    scalar = await WasmBackend.create({ threads: 1, kernels: 'scalar' });
  });
  const rand = rng(41);
  const w = randomF32(rand, n * k);
  const b = randomF32(rand, n);
  const x = randomF32(rand, 33 * k);

  test('an f32 W is stored in panels, reads back row-major, and the layer equals float64 and the row-major W bit for bit', () => {
    const layer = new Linear(f32(w, [n, k]), f32(b, [n]), { backend: be });
    const s = layer.weight.storage;
    expect(s).toBeInstanceOf(PanelWasmStorage);
    expect((s as PanelWasmStorage).ptr % 64).toBe(0); // panels start on a cache line
    expect(Array.from(layer.weight.data as Float32Array)).toEqual(Array.from(w));
    expect(be.upload(layer.weight, { linearWeight: true })).toBe(layer.weight); // already in panels: as it is
    const plain = be.upload(f32(w, [n, k])); // no linearWeight: compact row-major
    expect(plain.storage).toBeInstanceOf(WasmStorage);
    // m = 1 and 2: the panel GEMV tiles; 3, 4, 5, 9: the GEMM (one block of panels and its column tail); 33: x packed in row pairs (m ≥ 17).
    for (const m of [1, 2, 3, 4, 5, 9, 33]) {
      const xm = f32(x.slice(0, m * k), [m, k]);
      const y = layer.forward(xm);
      const { ref, mag } = reference(m, x, w, b);
      expectClose(y.data as Float32Array, ref, bound(mag), `m=${m}`);
      const y0 = be.linear(xm, plain, layer.bias, []);
      expect(bits(y), `m=${m} vs unpadded`).toEqual(bits(y0));
      // The scalar twins read the panels in place too.
      const ys = scalar.linear(xm, layer.weight, layer.bias, []);
      expectClose(ys.data as Float32Array, ref, bound(mag), `scalar m=${m}`);
      for (const t of [y, y0, ys]) t.dispose();
    }
    plain.dispose();
    layer.dispose();
  });

  test('a bf16 W is stored in panels too, reads back its bf16 values, and equals float64 on them and the compact bf16 W bit for bit', async () => {
    const kb = 2053; // k % 8 ≠ 0: the last chunk of each panel row is padded
    const wb = randomF32(rng(5), n * kb);
    const layer = new Linear(f32(wb, [n, kb]), undefined, { backend: be, weightDtype: 'bf16' });
    expect(layer.weight.dtype).toBe('bf16');
    expect(layer.weight.storage).toBeInstanceOf(PanelWasmStorage);
    expect((layer.weight.storage as PanelWasmStorage).ptr % 64).toBe(0);
    const h = layer.weight.data as Uint16Array;
    // The checkpoint's f32 values rounded to bf16 (nearest, ties to even), row-major: the panels read back as stored.
    expect(Array.from(h)).toEqual(Array.from(new Uint32Array(wb.buffer), (u) => ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff));
    const compact = be.upload(Tensor.from(h.slice(), [n, kb], 'bf16'), { keepBf16: true }); // row-major, no linearWeight
    expect(compact.storage).toBeInstanceOf(WasmStorage);
    const three = await WasmBackend.create({ threads: 3 });
    const l3 = new Linear(f32(wb, [n, kb]), undefined, { backend: three, weightDtype: 'bf16' });
    const wv = new Float32Array(new Uint32Array(Array.from(h, (v) => v << 16)).buffer);
    const xb = randomF32(rng(6), 40 * kb);
    // m = 1, 2: the panel GEMV tiles; 3, 5, 6, 40: the GEMM on panels (the row-major W: GEMV up to m = 4).
    for (const m of [1, 2, 3, 5, 6, 40]) {
      const xm = f32(xb.slice(0, m * kb), [m, kb]);
      const y = layer.forward(xm);
      const r = linearReference(xb, wv, m, n, kb);
      expectClose(y.data as Float32Array, r.ref, (i) => (kb / 4 + 8) * EPS32 * r.mag[i], `bf16 m=${m}`);
      const y0 = be.linear(xm, compact, undefined, []);
      expect(bits(y), `m=${m} vs the compact bf16 W`).toEqual(bits(y0));
      const y3 = l3.forward(xm);
      expect(bits(y3), `m=${m}, 3 threads`).toEqual(bits(y));
      for (const t of [y, y0, y3, xm]) t.dispose();
    }
    compact.dispose();
    l3.dispose();
    layer.dispose();
  });

  test('f32 and bf16 W of any shape go to panels, and so does an f16 / bf16 checkpoint weight widened to f32; an already resident W is used as it is (a tied head shares the table)', () => {
    const small = new Linear(f32(randomF32(rng(2), 5 * 3), [5, 3]), undefined, { backend: be, weightDtype: 'bf16' });
    expect(small.weight.storage).toBeInstanceOf(PanelWasmStorage);
    // A bf16 checkpoint tensor kept as f32 (the model loader's weightDtype 'f32'): widened on upload, then in panels.
    const h = Uint16Array.from(randomF32(rng(4), 6 * 10), (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16);
    const widened = new Linear(Tensor.from(h, [6, 10], 'bf16'), undefined, { backend: be, weightDtype: 'f32' });
    expect(widened.weight.dtype).toBe('f32');
    expect(widened.weight.storage).toBeInstanceOf(PanelWasmStorage);
    expect(Array.from(widened.weight.data as Float32Array)).toEqual(Array.from(new Float32Array(Uint32Array.from(h, (v) => v << 16).buffer)));
    widened.dispose();
    for (const [rows, cols] of [[1, 1], [5, 3], [8, 1016]]) {
      const wt = randomF32(rng(rows * cols), rows * cols);
      const l = new Linear(f32(wt, [rows, cols]), undefined, { backend: be });
      expect(l.weight.storage).toBeInstanceOf(PanelWasmStorage);
      expect(Array.from(l.weight.data as Float32Array)).toEqual(Array.from(wt));
      const xs = randomF32(rng(3), 2 * cols);
      const y = l.forward(f32(xs, [2, cols]));
      const r = linearReference(xs, wt, 2, rows, cols);
      expectClose(y.data as Float32Array, r.ref, (i) => (cols / 4 + 4) * EPS32 * r.mag[i], `[${rows}, ${cols}]`);
      y.dispose();
      l.dispose();
    }
    const resident = be.upload(f32(w, [n, k]));
    const tied = new Linear(resident, undefined, { backend: be });
    expect(tied.weight).toBe(resident);
    small.dispose();
    tied.dispose();
    resident.dispose();
  });

  test('LoRA, DoRA and fuse on a base in panels: float64 within the bound; off is bit-identical to the base layer', () => {
    const r = 3;
    const a = randomF32(rng(7), k * r);
    const bb = randomF32(rng(8), r * n);
    const mag = Float32Array.from(randomF32(rng(9), n), (v) => 0.5 + Math.abs(v));
    const base = new Linear(f32(w, [n, k]), f32(b, [n]), { backend: be });
    const lora = LoRALinear.fromBase(base, { name: 'a', a: f32(a, [k, r]), b: f32(bb, [r, n]), scale: 0.5 });
    const xm = f32(x.slice(0, 5 * k), [5, k]);
    const on = lora.forward(xm);
    const L = { a, b: bb, r, s: 0.5 };
    const { ref, mag: m1 } = reference(5, x, w, b, L);
    expectClose(on.data as Float32Array, ref, bound(m1), 'lora on');
    setLoRAEnabled(lora, false);
    const off = lora.forward(xm);
    const plain = base.forward(xm);
    expect(bits(off)).toEqual(bits(plain));
    setLoRAEnabled(lora, true);

    // DoRA: gain_j = m_j / ‖W_j + s·(A·B)ᵀ_j‖, from the row-major values of the W in panels.
    const dora = DoRALinear.fromBase(new Linear(f32(w, [n, k]), f32(b, [n]), { backend: be }), { name: 'd', a: f32(a, [k, r]), b: f32(bb, [r, n]), scale: 0.5, magnitude: f32(mag, [n]) });
    const gain = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let ss = 0;
      for (let p = 0; p < k; p++) {
        let d = 0;
        for (let q = 0; q < r; q++) d += a[p * r + q] * bb[q * n + j];
        ss += (w[j * k + p] + 0.5 * d) ** 2;
      }
      gain[j] = mag[j] / Math.sqrt(ss);
    }
    const yd = dora.forward(xm);
    const { ref: rd, mag: md } = reference(5, x, w, b, L, gain);
    expectClose(yd.data as Float32Array, rd, bound(md), 'dora');

    // Fuse: the merged W is W + s·(A·B)ᵀ rounded once to f32, stored in panels again, and reads back row-major.
    lora.fuseAdapter('a');
    const fused = lora.base as Linear;
    expect(fused).not.toBe(base);
    expect(fused.weight.storage).toBeInstanceOf(PanelWasmStorage);
    const merged = fused.weight.data as Float32Array;
    for (let j = 0; j < n; j += 7)
      for (let p = 0; p < k; p += 131) {
        let d = 0;
        for (let q = 0; q < r; q++) d += a[p * r + q] * bb[q * n + j];
        expect(merged[j * k + p]).toBe(Math.fround(w[j * k + p] + 0.5 * d));
      }
    const yf = lora.forward(xm);
    expectClose(yf.data as Float32Array, ref, bound(m1), 'fused');
    for (const t of [on, off, plain, yd, yf, xm]) t.dispose();
    lora.dispose();
    dora.dispose();
  });

  test('two and three threads give the one-thread bits on a W in panels', async () => {
    const two = await WasmBackend.create({ threads: 2 });
    const three = await WasmBackend.create({ threads: 3 });
    const big = randomF32(rng(11), 514 * 2047);
    const l1 = new Linear(f32(big, [514, 2047]), undefined, { backend: be });
    const l2 = new Linear(f32(big, [514, 2047]), undefined, { backend: two });
    const l3 = new Linear(f32(big, [514, 2047]), undefined, { backend: three });
    expect(l2.weight.storage).toBeInstanceOf(PanelWasmStorage);
    for (const m of [1, 2, 8, 40]) {
      const xm = f32(randomF32(rng(12), m * 2047), [m, 2047]);
      const y1 = l1.forward(xm);
      const y3 = l3.forward(xm);
      expect(bits(y3), `m=${m}, 3 threads`).toEqual(bits(y1));
      for (const t of [y1, y3, xm]) t.dispose();
    }
    l3.dispose();
    for (const m of [1, 8]) {
      const xm = f32(randomF32(rng(12), m * 2047), [m, 2047]);
      const y1 = l1.forward(xm);
      const y2 = l2.forward(xm);
      expect(bits(y2), `m=${m}`).toEqual(bits(y1));
      for (const t of [y1, y2, xm]) t.dispose();
    }
    l1.dispose();
    l2.dispose();
  });

  test('the panel sweep (8 panels per k-block, one, x packed, or the first pair over streams) is timed on the first large one-thread calls and settles; every call gives the same bits', () => {
    const tuner = PanelSweepTuner.of(be.runtime);
    const [nn, kk, m] = [256, 2048, 8]; // m·n·k = 2²²: large enough to time
    expect(m * nn * kk).toBeGreaterThanOrEqual(PANEL_SWEEP_MIN_WORK);
    const l = new Linear(f32(randomF32(rng(21), nn * kk), [nn, kk]), undefined, { backend: be });
    const xm = f32(randomF32(rng(22), m * kk), [m, kk]);
    const first = l.forward(xm);
    for (let i = 0; i < 4 * PANEL_SWEEP_SAMPLES + 4 && tuner.settled === undefined; i++) {
      const y = l.forward(xm);
      expect(bits(y)).toEqual(bits(first));
      y.dispose();
    }
    expect([0, 1, 2, 3]).toContain(tuner.settled);
    const [rep] = be.panelSweepTuning();
    expect(rep).toMatchObject({ state: 'settled', sweep: PANEL_SWEEP_NAMES[tuner.settled!] });
    expect(rep.m).toBeUndefined();
    expect(Math.min(...Object.values(rep.relative!))).toBe(1);
    expect(Object.keys(rep.relative!).sort()).toEqual([...PANEL_SWEEP_NAMES].sort());
    const y = l.forward(xm);
    expect(bits(y)).toEqual(bits(first));
    for (const t of [y, first, xm]) t.dispose();
    l.dispose();
  });

  test('split across threads, the panel sweep is timed per m and settles for each m on its own; every call gives the one-thread bits', async () => {
    const two = await WasmBackend.create({ threads: 2 });
    const tuner = PanelSweepTuner.of(two.runtime);
    const [nn, kk] = [512, 2048]; // m·n·k ≥ 2²² at m = 4 and 6: large enough to time
    const w = randomF32(rng(31), nn * kk);
    const l1 = new Linear(f32(w, [nn, kk]), undefined, { backend: be });
    const l2 = new Linear(f32(w, [nn, kk]), undefined, { backend: two });
    for (const m of [4, 6]) {
      expect(m * nn * kk).toBeGreaterThanOrEqual(PANEL_SWEEP_MIN_WORK);
      const xm = f32(randomF32(rng(32 + m), m * kk), [m, kk]);
      const want = l1.forward(xm);
      for (let i = 0; i < 4 * PANEL_SWEEP_SAMPLES + 4 && tuner.settledThreaded(m) === undefined; i++) {
        const y = l2.forward(xm);
        expect(bits(y), `m=${m}, call ${i}`).toEqual(bits(want));
        y.dispose();
      }
      expect([0, 1, 2, 3], `m=${m}`).toContain(tuner.settledThreaded(m));
      const y = l2.forward(xm);
      expect(bits(y)).toEqual(bits(want));
      for (const t of [y, want, xm]) t.dispose();
    }
    expect(tuner.settledThreaded(5), 'an m never called stays unsettled').toBeUndefined();
    // (the runtime is shared: other tests' calls may have started other stopwatches)
    expect(two.panelSweepTuning().filter((r) => r.m === 4 || r.m === 6).map((r) => [r.m, r.state, r.sweep])).toEqual([4, 6].map((m) => [m, 'settled', PANEL_SWEEP_NAMES[tuner.settledThreaded(m)!]]));
    l1.dispose();
    l2.dispose();
  });

  test('an embedding table is stored in panels: gathered rows are its rows exactly (f32, bf16 widened), a tied head reads the same block', () => {
    // vocab 37 and dim 1041 (k % 8 ≠ 0: the last chunk of a bf16 row is partial); ids repeat and hit both ends.
    const ids = Tensor.from(Int32Array.from([0, 36, 5, 5, 17, 3, 36]), [7], 'i32');
    const wb = Uint16Array.from(w, (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16); // bf16 of w, truncated
    const widened = Float32Array.from(wb, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]);
    for (const [table, expected] of [
      [f32(w, [n, k]), w],
      [Tensor.from(wb, [n, k], 'bf16'), widened],
    ] as const) {
      const e = new Embedding(table, { backend: be, weightDtype: table.dtype === 'bf16' ? 'bf16' : 'f32' });
      expect(e.weight.storage).toBeInstanceOf(PanelWasmStorage);
      expect(Array.from(e.weight.data as ArrayLike<number>)).toEqual(Array.from(table.data as ArrayLike<number>));
      const y = e.forward(ids);
      const got = y.data as Float32Array;
      const idv = ids.data as Int32Array;
      for (let i = 0; i < idv.length; i++)
        for (let p = 0; p < k; p++) if (!Object.is(got[i * k + p], expected[idv[i] * k + p])) throw new Error(`row ${i} (id ${idv[i]}), column ${p}: ${got[i * k + p]} ≠ ${expected[idv[i] * k + p]}`);
      // The tied head: a Linear over the same table reads it in place (no second copy) and equals float64.
      const head = new Linear(e.weight, undefined, { backend: be, weightDtype: e.weightDtype });
      expect(head.weight.storage).toBe(e.weight.storage);
      const xs = x.slice(0, 3 * k);
      const { ref, mag } = linearReference(xs, expected, 3, n, k);
      const logits = head.forward(f32(xs, [3, k]));
      expectClose(logits.data as Float32Array, ref, bound(mag), `tied head, ${table.dtype}`);
      for (const t of [y, logits]) t.dispose();
      head.dispose();
      e.dispose();
    }
    ids.dispose();
  });

  test('the block of panels is freed with the layer (wasm heap back to its baseline, no GC)', () => {
    const rt = be.runtime;
    const baseline = rt.heapBytesInUse;
    for (let c = 0; c < 50; c++) {
      const layer = new Linear(f32(w, [n, k]), undefined, { backend: be });
      layer.forward(f32(x.slice(0, k), [1, k])).dispose();
      layer.dispose();
    }
    expect(rt.heapBytesInUse).toBe(baseline);
  });
});
