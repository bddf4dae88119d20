// Question: what does per-row routing cost on wasm? A batch of 16 rows at k = n = 4096, r = 16:
//   one adapter for all rows | 16 rows → 16 different adapters | 8 base rows + 8 adapter rows | the 8 adapter rows alone.
// Usage: node routes.mjs [reps]   (uses ../dist: run `npm run build` first)
import { init, Linear, LoRALinear, Tensor } from '../dist/index.js';

const reps = +(process.argv[2] ?? 7);
const [k, n, r, m] = [4096, 4096, 16, 16];
let s = 1;
const rand = (len, amp) => { const a = new Float32Array(len); for (let i = 0; i < len; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = (s / 2 ** 32 - 0.5) * amp; } return a; };
const backend = await init();
const layer = LoRALinear.fromBase(new Linear(Tensor.from(rand(n * k, 0.03), [n, k], 'f32'), Tensor.from(rand(n, 0.1), [n], 'f32'), { backend }));
for (let i = 0; i < 16; i++) layer.addAdapter({ name: `a${i}`, a: Tensor.from(rand(k * r, 0.03), [k, r], 'f32'), b: Tensor.from(rand(r * n, 0.25), [r, n], 'f32'), scale: 2 });
const x = backend.upload(Tensor.from(rand(m * k, 1), [m, k], 'f32'));
const x8 = backend.upload(Tensor.from(rand(8 * k, 1), [8, k], 'f32'));
const cases = {
  'one adapter (16 rows)': () => layer.forward(x, { adapters: Array(16).fill('a0') }),
  '16 adapters (16 rows)': () => layer.forward(x, { adapters: Array.from({ length: 16 }, (_, i) => `a${i}`) }),
  '8 base + 8 adapter rows': () => layer.forward(x, { adapters: Array.from({ length: 16 }, (_, i) => (i % 2 ? `a${i}` : null)) }),
  '8 adapter rows alone': () => layer.forward(x8, { adapters: Array.from({ length: 8 }, (_, i) => `a${2 * i + 1}`) }),
};
const best = {};
for (let rep = 0; rep < reps; rep++)
  for (const [name, f] of Object.entries(cases)) {
    const t0 = performance.now(); f().dispose(); const t = performance.now() - t0;
    best[name] = Math.min(best[name] ?? Infinity, t);
  }
const ref = best['one adapter (16 rows)'];
for (const [name, t] of Object.entries(best)) console.log(`| ${name} | ${t.toFixed(1)} ms | ${(t / ref).toFixed(2)}× |`);
