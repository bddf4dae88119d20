// Question: what does per-row routing cost on wasm (one thread)? A batch of 16 rows at k = n = 4096, r = 16:
//   one adapter for all rows | 16 rows → 16 different adapters | 8 base rows + 8 adapter rows | the 8 adapter rows
//   alone | all 16 rows base (adapter off). Issue 9's targets: 16 adapters ≤ 1.25× one adapter; mixing base rows
//   in costs no more than the same batch with every row adapted.
// Before timing, every row of every routed batch is checked bit for bit against that row computed alone.
// Usage: node routes.mjs [--quick]   (uses ../dist: run `npm run build` first)
import { args, fmt, randomF32, table, timeInterleaved } from './lib/common.mjs';
import { libVersion, loadLib } from './lib/ours.mjs';

export async function runRoutes({ quick = false, log = console.error } = {}) {
  const { lib, error } = await loadLib();
  if (!lib) return { error };
  const { Linear, LoRALinear, Tensor } = lib;
  const backend = await lib.createBackend('wasm', { threads: 1 });
  const [k, n, r, m] = quick ? [1024, 1024, 16, 16] : [4096, 4096, 16, 16];
  const f32 = (a, shape) => Tensor.from(a, shape, 'f32');
  const layer = LoRALinear.fromBase(new Linear(f32(randomF32(n * k, 1, 0.03), [n, k]), f32(randomF32(n, 2, 0.1), [n]), { backend }));
  for (let i = 0; i < 16; i++) layer.addAdapter({ name: `a${i}`, a: f32(randomF32(k * r, 10 + i, 0.03), [k, r]), b: f32(randomF32(r * n, 40 + i, 0.25), [r, n]), scale: 2 });
  const xs = randomF32(m * k, 99, 1);
  const x = backend.upload(f32(xs, [m, k]));
  const x8 = backend.upload(f32(xs.slice(0, 8 * k), [8, k]));
  const routes = {
    'one adapter, 16 rows': [x, Array(16).fill('a0')],
    '16 adapters, 16 rows': [x, Array.from({ length: 16 }, (_, i) => `a${i}`)],
    '8 base + 8 adapter rows': [x, Array.from({ length: 16 }, (_, i) => (i % 2 ? `a${i}` : null))],
    '8 adapter rows alone': [x8, Array.from({ length: 8 }, (_, i) => `a${2 * i + 1}`)],
    '16 base rows (adapter off)': [x, Array(16).fill(null)],
  };
  // Every row of every batch = that row alone with its route, bit for bit (batch invariance).
  let checked = 0;
  for (const [name, [xt, route]] of Object.entries(routes)) {
    const y = layer.forward(xt, { adapters: route });
    const got = new Uint32Array(Float32Array.from(y.data).buffer);
    y.dispose();
    route.forEach((a, i) => {
      const yi = layer.forward(f32(xs.slice(i * k, (i + 1) * k), [1, k]), { adapters: [a] });
      const alone = new Uint32Array(Float32Array.from(yi.data).buffer);
      yi.dispose();
      for (let j = 0; j < n; j++) if (got[i * n + j] !== alone[j]) throw new Error(`routes: "${name}" row ${i} col ${j} differs from the row alone`);
      checked++;
    });
  }
  const fns = Object.fromEntries(Object.entries(routes).map(([name, [xt, route]]) => [name, () => layer.forward(xt, { adapters: route }).dispose()]));
  const t = await timeInterleaved(fns, { budgetMs: quick ? 500 : 4000, minIters: 9 });
  for (const name of Object.keys(fns)) log(`routes ${name}: ${fmt.ms(t[name])} ms`);
  layer.dispose?.();
  return { label: `peftjs ${libVersion(lib)} (${backend.name} ${backend.build ?? ''}, 1 thread)`, t, k, n, r, m, checked };
}

export function routesTables({ error, label, t, k, n, r, checked }) {
  if (error) return `#### Per-row adapters\n\npeftjs not measured: ${error}`;
  const one = t['one adapter, 16 rows'];
  const rows = Object.entries(t).map(([name, ms]) => [name, fmt.ms(ms), fmt.ratio(ms / one)]);
  return (
    `#### Per-row adapters (routes): one LoRA layer, k = n = ${k}, r = ${r}, ${label}\n\n` +
    'Median time per forward, the batches called in turn; × = over one adapter on all 16 rows. Every row of every batch was first ' +
    `checked bit for bit against the same row computed alone (${checked} rows).\n\n` +
    table(['batch', 'ms', '× one adapter'], rows)
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  console.log(routesTables(await runRoutes({ quick: a.quick })));
}
