// Deno's built-in WebGPU (wgpu) runs the WebGPU backend: every golden case on both kernel routes, the toggle
// checks, the f16 storage kernels when the adapter has shader-f16, and the transformer ops. Run:
//   npx deno test -A --unstable-webgpu test/deno/webgpu.deno.ts
// Deno 2.9: navigator.gpu is stable, so --unstable-webgpu is accepted but not needed; with package.json present
// Deno resolves the sources' `.js` specifiers to `.ts` (older Deno: add --sloppy-imports). Driver: wgpu takes
// Mesa lavapipe when installed (it has shader-f16, so the f16 kernels run); with
// VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json it takes SwiftShader (f32 only).
import { createWebGPUBackend, type WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { Tensor } from '../../src/tensor.js';
import { compare, dequantize, GOLDEN_CASES, loadGolden, refLinear, runVariant, toF64 } from '../gpu/golden.js';
import { bits, close, f64, rand, refAttention, refGelu, refNorm, refRope, refSilu, ropeTables } from '../gpu/transformer-ref.js';

declare const Deno: {
  test(name: string, fn: () => Promise<void> | void): void;
  readFile(path: string): Promise<Uint8Array>;
  env: { get(k: string): string | undefined };
};

const ROOT = new URL('../fixtures/golden', import.meta.url).pathname;
const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

async function backends(): Promise<[string, WebGPUBackend][]> {
  return [
    ['gemv', await createWebGPUBackend({ gpu })],
    ['gemm', await createWebGPUBackend({ gpu, gemvMaxM: 0 })],
  ];
}

Deno.test('deno webgpu: every golden case matches the float64 expectation on both kernel routes', async () => {
  assert(gpu, 'navigator.gpu is missing');
  const bes = await backends();
  let checked = 0;
  for (const name of GOLDEN_CASES) {
    for (const c of await loadGolden(name, (p) => Deno.readFile(p), ROOT)) {
      for (const v of c.variants) {
        for (const [route, be] of bes) {
          const y = runVariant(be, c, v);
          const bad = compare(await y.read(), v.expect, c.tol(v.expect), y.shape);
          assert(!bad, `${route} ${c.title} › ${v.name}: ${bad}`);
          y.dispose();
          checked++;
        }
      }
    }
  }
  assert(checked >= 200, `only ${checked} checks ran`);
  console.log(`deno webgpu: ${checked} golden checks passed on ${bes[0][1]}`);
  bes.forEach(([, be]) => be.dispose());
});

Deno.test('deno webgpu: off is bit-identical to the base kernel; 1,000 flips allocate and compile nothing', async () => {
  assert(gpu, 'navigator.gpu is missing');
  for (const [route, be] of await backends()) {
    const [m, k, n] = route === 'gemv' ? [1, 37, 29] : [17, 37, 29];
    const rnd = (shape: number[], s: number) => Tensor.f32(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(s * 1000 + i)), shape);
    const x = rnd([m, k], 1), w = rnd([n, k], 2);
    const W = be.upload(w), d = { a: be.upload(rnd([k, 8], 3)), b: be.upload(rnd([8, n], 4)), scale: 1 };
    const base = new Uint32Array((await be.linear(x, W, undefined, []).read()).buffer);
    // Warm up both variants twice: a disposed output returns to the pool at the next submit.
    for (let i = 0; i < 4; i++) be.linear(x, W, undefined, i % 2 ? [] : [d]).dispose();
    const before = [be.pool.bytesAllocated, be.pool.buffersCreated, be.pipelines.compiled];
    for (let i = 0; i < 1000; i++) be.linear(x, W, undefined, i % 2 ? [] : [{ ...d, scale: i / 100 }]).dispose();
    const after = [be.pool.bytesAllocated, be.pool.buffersCreated, be.pipelines.compiled];
    assert(after.join() === before.join(), `${route}: flips allocated/compiled: ${before} → ${after}`);
    const off = new Uint32Array((await be.linear(x, W, undefined, []).read()).buffer);
    assert(off.every((b, i) => b === base[i]), `${route}: off after flips is not bit-identical`);
    const y = be.linear(x, W, undefined, [{ ...d, scale: 2.5 }]);
    const ref = refLinear(x, w, undefined, [{ a: rnd([k, 8], 3), b: rnd([8, n], 4), scale: 2.5 }]);
    const bad = compare(await y.read(), ref, 1e-3, y.shape);
    assert(!bad, `${route} on: ${bad}`);
    be.dispose();
  }
});

Deno.test('deno webgpu: f16 storage (shader-f16) — W, A, B, lora bias, bias, row scale, table, scales — with f32 accumulation', async () => {
  assert(gpu, 'navigator.gpu is missing');
  const bes = await backends();
  if (!bes[0][1].f16) {
    // CI runs this file a second time on lavapipe with PEFTJS_REQUIRE_F16=1, where a missing shader-f16 fails.
    if (Deno.env.get('PEFTJS_REQUIRE_F16') === '1') throw new Error(`${bes[0][1]} has no shader-f16, but PEFTJS_REQUIRE_F16=1`);
    console.log(`skipped: ${bes[0][1]} has no shader-f16 (Mesa lavapipe has it: run without VK_ICD_FILENAMES)`);
    bes.forEach(([, be]) => be.dispose());
    return;
  }
  let seed = 7;
  const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  // Random f16 bit patterns with magnitudes in [1/8, 2): exact in f16, decoded exactly by the reference.
  const half = (shape: number[]) =>
    Tensor.from(Uint16Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (next() & 0x8000) | ((12 + (next() % 4)) << 10) | (next() & 0x3ff)), shape, 'f16');
  const f32 = (shape: number[]) => Tensor.f32(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => next() / 2 ** 32 - 0.5), shape);
  for (const [route, be] of bes) {
    for (const m of [1, 3, 17]) {
      const k = 37, n = 29;
      const x = f32([m, k]), w = half([n, k]), bias = half([n]), rs = half([n]);
      const ds = [4, 2].map((r) => ({ a: half([k, r]), b: half([r, n]), bias: half([n]), scale: 0.5 }));
      const up = (t: Tensor) => be.upload(t);
      const y = be.linear(x, up(w), up(bias), ds.map((d) => ({ ...d, a: up(d.a), b: up(d.b), bias: up(d.bias) })), up(rs));
      const ref = refLinear(x, w, bias, ds, rs);
      const bad = compare(await y.read(), ref, 1e-4 * Math.max(1, ...Array.from(ref, Math.abs)), y.shape);
      assert(!bad, `f16 linear ${route} m=${m}: ${bad}`);
    }
    // Embedding with an f16 table and f16 factors.
    const E = half([11, 9]), ea = half([11, 3]), eb = half([3, 9]);
    const ids = Tensor.from(Int32Array.from([0, 10, 4]), [3], 'i32');
    const ye = await be.embedding(ids, be.upload(E), [{ a: be.upload(ea), b: be.upload(eb), scale: 2 }]).read();
    const [Ef, Af, Bf] = [E, ea, eb].map(toF64);
    const refE = Float64Array.from({ length: 27 }, (_, p) => {
      const i = ids.data[Math.floor(p / 9)], c = p % 9;
      return Ef[i * 9 + c] + 2 * [0, 1, 2].reduce((s2, j) => s2 + Af[i * 3 + j] * Bf[j * 9 + c], 0);
    });
    assert(!compare(ye, refE, 1e-4 * 8, [3, 9]), `f16 embedding ${route}: ${compare(ye, refE, 1e-4 * 8, [3, 9])}`);
    // 4-bit quantised W with f16 scales and biases.
    const qk = 64, qn = 5;
    const qw = Tensor.from(Uint32Array.from({ length: (qn * qk) / 8 }, next), [qn, qk / 8], 'u32');
    const sc = half([qn, 2]), bi = half([qn, 2]), qx = f32([2, qk]);
    const yq = await be.quantizedLinear(qx, { w: be.upload(qw), scales: be.upload(sc), biases: be.upload(bi), bits: 4, groupSize: 32, k: qk, n: qn }, undefined, []).read();
    const refQ = refLinear(qx, dequantize(qw, sc, bi, 4, 32, qk, qn), undefined, []);
    const badQ = compare(yq, refQ, 1e-4 * Math.max(1, ...Array.from(refQ, Math.abs)) * 2, [2, qn]);
    assert(!badQ, `f16 quantized ${route}: ${badQ}`);
    be.dispose();
  }
});

Deno.test('deno webgpu: a bf16 W and embedding table kept as bf16 (two per u32, unpacked in the shader)', async () => {
  assert(gpu, 'navigator.gpu is missing');
  let seed = 11;
  const next = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0);
  const bf16 = (shape: number[]) => Tensor.from(Uint16Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (next() & 0x8000) | (0x3e00 + (next() % 0x200))), shape, 'bf16');
  const f32 = (shape: number[]) => Tensor.f32(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => next() / 2 ** 32 - 0.5), shape);
  for (const [route, be] of await backends()) {
    for (const m of [1, 3, 17]) {
      const k = 37, n = 29; // n·k odd: the last u32 holds one value
      const x = f32([m, k]), w = bf16([n, k]), bias = f32([n]);
      const W = be.upload(w, { keepBf16: true });
      assert(W.dtype === 'bf16' && W.storage.byteLength === n * k * 2, `kept as bf16: ${W}`);
      const d = { a: f32([k, 4]), b: f32([4, n]), scale: 0.5 };
      for (const deltas of [[], [d]]) {
        const y = be.linear(x, W, bias, deltas);
        const ref = refLinear(x, w, bias, deltas);
        const bad = compare(await y.read(), ref, 1e-4 * Math.max(1, ...Array.from(ref, Math.abs)), y.shape);
        assert(!bad, `bf16 linear ${route} m=${m} deltas=${deltas.length}: ${bad}`);
      }
    }
    const E = bf16([11, 9]);
    const ids = Tensor.from(Int32Array.from([0, 10, 4]), [3], 'i32');
    const ye = await be.embedding(ids, be.upload(E, { keepBf16: true }), []).read();
    const Ef = toF64(E);
    const refE = Float64Array.from({ length: 27 }, (_, p) => Ef[ids.data[Math.floor(p / 9)] * 9 + (p % 9)]);
    assert(ye.every((v, i) => v === refE[i]), `bf16 embedding ${route}: rows must widen exactly`);
    be.dispose();
  }
});

Deno.test('deno webgpu: transformer ops (norms, rope, activations, slices, kvWrite, GQA attention) = float64 reference', async () => {
  assert(gpu, 'navigator.gpu is missing');
  const be = await createWebGPUBackend({ gpu });
  const ok = (bad: string | undefined, what: string) => assert(!bad, `${what}: ${bad}`);
  const m = 3, d = 67, heads = 8, kvHeads = 2, hd = 32, start = 70, maxLen = 80, width = heads * hd;
  const x = rand([m, d], 1, 2, 0.5), w = rand([d], 2, 1, 1), b = rand([d], 3);
  ok(close(await be.rmsNorm(x, w, 1e-6).read(), refNorm(f64(x), f64(w), undefined, 1e-6), 1e-5), 'rmsNorm');
  ok(close(await be.layerNorm(x, w, b, 1e-5).read(), refNorm(f64(x), f64(w), f64(b), 1e-5), 1e-5), 'layerNorm');
  const g = rand([m, 37], 4, 6), u = rand([m, 37], 5, 2);
  ok(close(await be.swiglu(g, u).read(), f64(g).map((v, i) => refSilu(v) * u.data[i]), 1e-5), 'swiglu');
  ok(close(await be.geluTanh(g).read(), f64(g).map(refGelu), 1e-5), 'geluTanh');
  // q|k|v side by side as a fused projection would give them; sliceColumns splits, rope rotates q and k in place.
  const qkv = rand([m, width + 2 * kvHeads * hd], 6, 2);
  const q = be.sliceColumns(qkv, 0, width), k = be.sliceColumns(qkv, width, kvHeads * hd), v = be.sliceColumns(qkv, width + kvHeads * hd, kvHeads * hd);
  const { cos, sin } = ropeTables(maxLen, hd);
  be.rope(q, cos, sin, heads, hd, start);
  be.rope(k, cos, sin, kvHeads, hd, start);
  const cols = (from: number, n: number) => Float64Array.from({ length: m * n }, (_, p) => qkv.data[Math.floor(p / n) * (width + 2 * kvHeads * hd) + from + (p % n)]);
  const qRef = refRope(cols(0, width), f64(cos), f64(sin), heads, hd, start);
  const kRef = refRope(cols(width, kvHeads * hd), f64(cos), f64(sin), kvHeads, hd, start);
  ok(close(await q.read(), qRef, 2e-6), 'sliceColumns + rope');
  // Cache: random history below start, then kvWrite of the new rows.
  const kHist = rand([kvHeads, maxLen, hd], 7, 2), vHist = rand([kvHeads, maxLen, hd], 8, 2);
  const kc = be.zeros([kvHeads, maxLen, hd]), vc = be.zeros([kvHeads, maxLen, hd]);
  be.addInPlace(kc, kHist);
  be.addInPlace(vc, vHist);
  be.kvWrite(kc, k, start, kvHeads, hd);
  be.kvWrite(vc, v, start, kvHeads, hd);
  const [kAll, vAll] = [f64(kHist), f64(vHist)];
  const vNew = cols(width + kvHeads * hd, kvHeads * hd);
  for (let i = 0; i < m; i++) {
    for (let gi = 0; gi < kvHeads; gi++) {
      for (let t = 0; t < hd; t++) {
        kAll[(gi * maxLen + start + i) * hd + t] = kRef[i * kvHeads * hd + gi * hd + t];
        vAll[(gi * maxLen + start + i) * hd + t] = vNew[i * kvHeads * hd + gi * hd + t];
      }
    }
  }
  ok(close(await vc.read(), vAll, 0), 'kvWrite');
  const shape = { heads, kvHeads, headDim: hd };
  const y = await be.attention(q, kc, vc, start, shape, 1 / Math.sqrt(hd)).read();
  ok(close(y, refAttention(qRef, kAll, vAll, start, heads, kvHeads, hd, maxLen, 1 / Math.sqrt(hd)), 2e-5), 'attention');
  // Batch invariance: the last row alone, bit for bit.
  const last = be.sliceRows(q, m - 1, 1);
  const one = await be.attention(last, kc, vc, start + m - 1, shape, 1 / Math.sqrt(hd)).read();
  assert(bits(one).every((x, i) => x === bits(y)[(m - 1) * width + i]), 'attention: a row alone differs from the same row in the batch');
  console.log(`deno webgpu: transformer ops match on ${be}`);
  be.dispose();
});
