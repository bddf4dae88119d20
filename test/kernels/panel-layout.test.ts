import { beforeAll, describe, expect, it } from 'vitest';
import { WasmBackend } from '../../src/backends/wasm.js';
import { epilogueBytes, writeEpilogue } from '../../src/backends/wasm/linear.js';
import type { WasmRuntime } from '../../src/runtime/wasm.js';
import { EPS32, expectClose, linearReference, randomF32, rng } from './helpers.js';

/**
 * cpp/linear_panel.h: an f32 W in panels of 4 rows ([⌈k/4⌉][4][4] each) must hold exactly the row-major numbers
 * (pack → unpack is the identity; the padding is zeros) and every kernel must read it in the row-major order: the
 * linear export on panels (`ldw = 0`) equals the same export on the compact row-major W bit for bit, for every m
 * (the m = 1 tile, the m = 2 GEMV, the GEMM with its grouped panels at m ≤ 16 and x packed in row pairs above), on any
 * column range (a thread's share need not start or end on a panel), with a bias epilogue, SIMD128 and scalar twin;
 * and both agree with float64 within the f32 bound. The same for a bf16 W in panels ([⌈k/8⌉][4][8], linear_bf16.h).
 * Reference: float64 in this file.
 */
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));

describe('f32 W in panels (cpp/linear_panel.h)', () => {
  let rt: WasmRuntime;
  beforeAll(async () => {
    rt = (await WasmBackend.create({ threads: 1 })).runtime;
  });
  const put = (a: Float32Array) => {
    const p = rt.malloc(Math.max(4, a.byteLength));
    rt.f32.set(a, p >>> 2);
    return p;
  };
  const get = (p: number, len: number) => rt.f32.slice(p >>> 2, (p >>> 2) + len);

  it('pack then unpack gives W back; the layout is (j/4)·4·K4 + (p/4)·16 + (j mod 4)·4 + p mod 4, padding zero', () => {
    for (const [n, k] of [[1, 1], [5, 3], [4, 4], [37, 1041], [16, 8]]) {
      const w = randomF32(rng(n * 7 + k), n * k);
      const k4 = Math.ceil(k / 4) * 4;
      const bytes = rt.exports.peft_weight_panel_bytes(n, k, 4) >>> 0;
      expect(bytes, `[${n}, ${k}]`).toBe(Math.ceil(n / 4) * 4 * k4 * 4);
      const src = put(w);
      const dst = rt.malloc(bytes);
      rt.exports.peft_f32_pack_panels(n, k, src, k, dst);
      const packed = get(dst, bytes / 4);
      for (let j = 0; j < Math.ceil(n / 4) * 4; j++)
        for (let p = 0; p < k4; p++) {
          const at = Math.floor(j / 4) * 4 * k4 + Math.floor(p / 4) * 16 + (j % 4) * 4 + (p % 4);
          expect(packed[at]).toBe(j < n && p < k ? w[j * k + p] : 0);
        }
      const back = rt.malloc(n * k * 4);
      rt.exports.peft_f32_unpack_panels(n, k, dst, back);
      expect(bits(get(back, n * k))).toEqual(bits(w));
      for (const p of [src, dst, back]) rt.free(p);
    }
  });

  // n = 45: panels plus a cut one (11 whole: an odd count, or 9 or 8 in a range); ranges that start and end mid-panel,
  // a single column, a whole layer.
  const n = 45;
  const cases = [
    { k: 1029, ms: [1, 2, 3, 4, 9, 16, 17, 33, 40] },
    { k: 6, ms: [1, 2, 5] },
    // m ≤ 3 from k = 2048: four parts of the panels in step (PEFT_PANEL_GEMV1_STREAMS_MIN_K, the streams tiles), panels
    // left over; m = 4 the GEMM again; sweep 3 at m = 4, 5, 8 (groups of four panels: 2 whole of 11, 3 left, rows
    // 2 … m − 1 in pairs and one alone)
    { k: 2053, ms: [1, 2, 3, 4, 5, 8] },
    { k: 8197, ms: [67] }, // rows in blocks of 30 (f32_gemm_row_block): a staged x is read at each block's row pairs
  ];
  for (const { k, ms } of cases)
    for (const m of ms)
      it(`k = ${k}, m = ${m}: panels = row-major bit for bit on column ranges (SIMD128 and scalar twin), within the f32 bound of float64`, () => {
        const rand = rng(k * 100 + m);
        const w = randomF32(rand, n * k);
        const x = randomF32(rand, m * k);
        const bias = randomF32(rand, n);
        const wp = put(w);
        const pan = rt.malloc(rt.exports.peft_weight_panel_bytes(n, k, 4) >>> 0);
        rt.exports.peft_f32_pack_panels(n, k, wp, k, pan);
        const xp = put(x);
        const bp = put(bias);
        const ep = rt.malloc(epilogueBytes(0));
        writeEpilogue(rt, ep, { bias: bp, rowScale: 0, loraBias: 0, terms: [] });
        const scratch = rt.malloc(rt.exports.peft_f32_linear_scratch_bytes(m, k) >>> 0);
        const y = rt.malloc(m * n * 4);
        // x in row pairs, packed once for every column range (what a call split across threads hands its chunks).
        const staged = rt.malloc(Math.max(16, rt.exports.peft_f32_row_pairs_bytes(m, k) >>> 0));
        expect(rt.exports.peft_f32_row_pairs_bytes(m, k) >>> 0).toBe((m & ~1) * (k & ~3) * 4);
        rt.exports.peft_f32_stage_row_pairs(m, k, xp, staged);
        const run = (w0: number, ldw: number, j0: number, j1: number, withBias: boolean, st = 0) => {
          rt.f32.fill(0, y >>> 2, (y >>> 2) + m * n);
          rt.exports.peft_f32_linear_cols(m, n, k, j0, j1, xp, w0, ldw, y, withBias ? ep : 0, scratch, st);
          return get(y, m * n);
        };
        for (const [j0, j1] of [[0, n], [3, 42], [5, 6], [8, 40], [1, 3], [44, 45]])
          for (const withBias of [false, true])
            for (const sweep of [0, 1, 2, 3]) {
              // cpp/tuning.h TUNE_PANEL_SWEEP (the GEMM at m ≤ 16: 8 panels per k-block, one, x packed, or the first
              // pair over streams from k = 2048): speed only
              expect(rt.exports.peft_set_tuning(2, sweep)).toBe(0);
              const rowMajor = bits(run(wp, k, j0, j1, withBias));
              expect(bits(run(pan, 0, j0, j1, withBias)), `cols [${j0}, ${j1})${withBias ? ' + bias' : ''}, sweep ${sweep}`).toEqual(rowMajor);
              if (m > 2) expect(bits(run(pan, 0, j0, j1, withBias, staged)), `cols [${j0}, ${j1}), x staged, sweep ${sweep}`).toEqual(rowMajor);
            }
        rt.exports.peft_set_tuning(2, 0);
        // The whole layer on panels against float64 (and the scalar twin on panels against the scalar twin row-major).
        const got = run(pan, 0, 0, n, true);
        const { ref, mag } = linearReference(x, w, m, n, k, bias);
        expectClose(got, ref, (i) => (k / 4 + 4) * EPS32 * mag[i] + 1e-30, `k=${k} m=${m}`);
        const scalar = (w0: number, ldw: number) => {
          rt.exports.peft_f32_linear__scalar(m, n, k, xp, w0, ldw, y, ep, scratch);
          return get(y, m * n);
        };
        const sp = scalar(pan, 0);
        expect(bits(sp), 'scalar twin').toEqual(bits(scalar(wp, k)));
        expectClose(sp, ref, (i) => (k / 4 + 4) * EPS32 * mag[i] + 1e-30, `scalar k=${k} m=${m}`);
        for (const p of [wp, pan, xp, bp, ep, scratch, y, staged]) rt.free(p);
      });

  // bf16 (cpp/linear_bf16.h): panels [⌈k/8⌉][4][8]; m = 1, 2 the panel GEMV, m ≥ 3 the GEMM on panels; from k = 2048
  // m ≤ 4 the streams tiles (parts of the panels in step: four for m ≤ 3, two for m = 4), m = 5 the GEMM again.
  for (const { k, ms } of [{ k: 1029, ms: [1, 2, 3, 5, 9, 40] }, { k: 12, ms: [1, 2, 6] }, { k: 4101, ms: [1, 2, 3, 4, 5] }, { k: 8197, ms: [67] }])
    for (const m of ms)
      it(`bf16, k = ${k}, m = ${m}: pack/unpack is the identity; panels = row-major bit for bit on column ranges (SIMD128 and scalar twin)`, () => {
        const rand = rng(k * 10 + m + 7);
        const h = Uint16Array.from(randomF32(rand, n * k), (v) => (new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16) & 0xffff);
        const x = randomF32(rand, m * k);
        const bias = randomF32(rand, n);
        const k8 = Math.ceil(k / 8) * 8;
        const bytes = rt.exports.peft_weight_panel_bytes(n, k, 2) >>> 0;
        expect(bytes).toBe(Math.ceil(n / 4) * 4 * k8 * 2);
        const wp = rt.malloc(n * k * 2);
        new Uint16Array(rt.memory.buffer, wp, n * k).set(h);
        const pan = rt.malloc(bytes);
        rt.exports.peft_bf16_pack_panels(n, k, wp, k, pan);
        const packed = new Uint16Array(rt.memory.buffer, pan, bytes / 2);
        for (let j = 0; j < n; j += 5)
          for (let p = 0; p < k; p += 3) expect(packed[Math.floor(j / 4) * 4 * k8 + Math.floor(p / 8) * 32 + (j % 4) * 8 + (p % 8)]).toBe(h[j * k + p]);
        const back = rt.malloc(n * k * 2);
        rt.exports.peft_bf16_unpack_panels(n, k, pan, back);
        expect(Array.from(new Uint16Array(rt.memory.buffer, back, n * k))).toEqual(Array.from(h));
        const xp = put(x);
        const bp = put(bias);
        const ep = rt.malloc(epilogueBytes(0));
        writeEpilogue(rt, ep, { bias: bp, rowScale: 0, loraBias: 0, terms: [] });
        const scratch = rt.malloc(rt.exports.peft_f32xbf16_linear_scratch_bytes(m, k) >>> 0);
        const y = rt.malloc(m * n * 4);
        const staged = rt.malloc(Math.max(16, rt.exports.peft_f32_row_pairs_bytes(m, k) >>> 0));
        rt.exports.peft_f32_stage_row_pairs(m, k, xp, staged);
        const run = (w0: number, ldw: number, j0: number, j1: number, withBias: boolean, st = 0) => {
          rt.f32.fill(0, y >>> 2, (y >>> 2) + m * n);
          rt.exports.peft_f32xbf16_linear_cols(m, n, k, j0, j1, xp, w0, ldw, y, withBias ? ep : 0, scratch, st);
          return get(y, m * n);
        };
        for (const [j0, j1] of [[0, n], [3, 42], [5, 6], [8, 40], [1, 3], [44, 45]])
          for (const withBias of [false, true]) {
            const rowMajor = bits(run(wp, k, j0, j1, withBias));
            expect(bits(run(pan, 0, j0, j1, withBias)), `cols [${j0}, ${j1})${withBias ? ' + bias' : ''}`).toEqual(rowMajor);
            if (m > 2) {
              expect(bits(run(pan, 0, j0, j1, withBias, staged)), `cols [${j0}, ${j1}), x staged`).toEqual(rowMajor);
              expect(bits(run(wp, k, j0, j1, withBias, staged)), `row-major cols [${j0}, ${j1}), x staged`).toEqual(rowMajor);
            }
          }
        const wv = new Float32Array(Uint32Array.from(h, (v) => v << 16).buffer);
        const { ref, mag } = linearReference(x, wv, m, n, k, bias);
        expectClose(run(pan, 0, 0, n, true), ref, (i) => (k / 4 + 4) * EPS32 * mag[i] + 1e-30, `bf16 k=${k} m=${m}`);
        const scalar = (w0: number, ldw: number) => {
          rt.exports.peft_f32xbf16_linear__scalar(m, n, k, xp, w0, ldw, y, ep, scratch);
          return get(y, m * n);
        };
        expect(bits(scalar(pan, 0)), 'scalar twin').toEqual(bits(scalar(wp, k)));
        for (const p of [wp, pan, back, xp, bp, ep, scratch, y, staged]) rt.free(p);
      });
});
