// Question: what does the relaxed-SIMD build (f32x4.relaxed_madd: one fused multiply-add where the engine has it)
// gain over the SIMD128 build, same kernels, same thread count (one)? Needs an engine with relaxed SIMD: Deno 2,
// Node ≥ 22, Chromium ≥ 114 (Node 20 has none: the script says so and stops).
// linear at k = n = 4096, f32 and bf16 W, m ∈ {1, 8, 64, 256}: the two builds called in turn, medians; every output
// of the relaxed build checked against the SIMD128 one within the bound of cpp/madd.h ((k/4 + 4)·2⁻²³·Σ|x·w|).
// Usage: deno run -A bench/relaxed.mjs [--quick]   (or bun / node ≥ 22; uses ../dist: run `npm run build` first)
const lib = await import('../dist/index.js');
const quick = (globalThis.Deno?.args ?? globalThis.process?.argv ?? []).includes('--quick');
const engine = globalThis.Deno ? `Deno ${Deno.version.deno}` : globalThis.Bun ? `Bun ${Bun.version}` : `Node ${process.versions.node}`;
let relaxed;
try {
  relaxed = await lib.createBackend('wasm', { threads: 1, build: 'relaxed-simd' });
} catch (e) {
  console.log(`${engine}: no relaxed-SIMD build here (${String(e.message ?? e).split('\n')[0]})`);
  globalThis.Deno?.exit(0) ?? globalThis.process?.exit(0);
}
const simd = await lib.createBackend('wasm', { threads: 1, build: 'simd128' });
const [k, n] = quick ? [1024, 1024] : [4096, 4096];
const ms = quick ? [1, 64] : [1, 2, 4, 8, 64, 256];
let s = 7;
const rand = (len, amp) => Float32Array.from({ length: len }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * amp);
const toBf16 = (f) => Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16); // truncation: exact for the bench's W below
const w = Float32Array.from(rand(n * k, 0.03), (v) => new Float32Array(new Uint32Array([new Uint32Array(Float32Array.of(v).buffer)[0] & 0xffff0000]).buffer)[0]);
const rows = [];
for (const dtype of ['f32', 'bf16']) {
  const up = (be) => (dtype === 'f32' ? be.upload(lib.Tensor.from(w, [n, k], 'f32'), { linearWeight: true }) : be.upload(lib.Tensor.from(toBf16(w), [n, k], 'bf16'), { keepBf16: true, linearWeight: true }));
  const W = { simd: up(simd), relaxed: up(relaxed) };
  for (const m of ms) {
    const x = rand(m * k, 2);
    const run = (be, Wt) => {
      const y = be.linear(lib.Tensor.from(x, [m, k], 'f32'), Wt, undefined, []);
      const out = new Float32Array(y.data);
      y.dispose();
      return out;
    };
    const a = run(simd, W.simd);
    const b = run(relaxed, W.relaxed);
    let worst = 0;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let mag = 0;
        for (let p = 0; p < k; p += 1) mag += Math.abs(x[i * k + p] * w[j * k + p]);
        worst = Math.max(worst, Math.abs(a[i * n + j] - b[i * n + j]) / (((k / 4 + 4) * 2 ** -23) * mag));
        if (m * n > 4096 && j > 64) break; // the bound on a sample of columns per row at large sizes (float64 sums are slow)
      }
    if (!(worst <= 1)) throw new Error(`relaxed vs simd128: ${dtype} m=${m} exceeds the bound (${worst.toFixed(2)}× it)`);
    // Warm-up by time: V8 runs a wasm function in its baseline compiler (Liftoff) until TurboFan's code is ready,
    // compiled in the background; on a busy machine that takes a while, and every instance tiers up on its own.
    for (const t0 = performance.now(); performance.now() - t0 < (quick ? 300 : 600); ) run(simd, W.simd), run(relaxed, W.relaxed);
    const t = { simd: [], relaxed: [] };
    const reps = quick ? 5 : m >= 64 ? 9 : 25;
    for (let r = 0; r < reps; r++)
      for (const id of r % 2 ? ['simd', 'relaxed'] : ['relaxed', 'simd']) {
        const t0 = performance.now();
        run(id === 'simd' ? simd : relaxed, W[id]);
        t[id].push(performance.now() - t0);
      }
    const med = (v) => v.sort((p, q) => p - q)[v.length >> 1];
    const g = (id) => (2 * m * k * n) / med(t[id]) / 1e6;
    rows.push([dtype, m, g('simd').toFixed(1), g('relaxed').toFixed(1), `${(g('relaxed') / g('simd')).toFixed(2)}×`, `${worst.toFixed(2)}`]);
  }
}
console.log(`relaxed SIMD vs SIMD128 — ${engine}, linear k = n = ${k}, one thread, GFLOP/s (medians, the builds in turn)\n`);
console.log('| W | m | SIMD128 | relaxed SIMD | gain | max |Δ| ÷ bound |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
globalThis.Deno?.exit(0);
