// Question: what do the compact weight storages cost or buy on one CPU thread? One peftjs layer at k = n = 4096,
// W as f32 (`Linear`), bf16 (`weightDtype: 'bf16'`), and MLX affine 8- and 4-bit (`QuantizedLinear`, group 64),
// all with the same LoRA r = 16 on top (`LoRALinear` / `QLoRALinear`), called in turn. No peer runs MLX's affine
// layout on wasm, so this table is peftjs against itself: bytes of W, and GFLOP/s counted as 2·m·k·n.
// Usage: node quant.mjs [--quick]
import { args, fmt, machine, randomF32, table, timeInterleaved } from './lib/common.mjs';
import { libVersion, loadLib } from './lib/ours.mjs';

export async function runQuant({ quick = false, log = console.error } = {}) {
  const { lib, error } = await loadLib();
  if (!lib) return { error };
  const be = await lib.createBackend('wasm', { threads: 1 });  // the table says one thread (init() takes every core)
  const size = 4096;
  const [k, n, r] = [size, size, 16];
  const ms = quick ? [1] : [1, 4, 64];
  const f32 = (a, shape) => lib.Tensor.from(a, shape, 'f32');
  const w = randomF32(n * k, 1, 1 / Math.sqrt(k));
  const bias = randomF32(n, 2, 0.1);
  const lora = () => ({ name: 'default', a: f32(randomF32(k * r, 3, 1 / Math.sqrt(k)), [k, r]), b: f32(randomF32(r * n, 4, 0.25), [r, n]), scale: 2 });
  const base32 = new lib.Linear(f32(w, [n, k]), f32(bias, [n]), { backend: be });
  const layers = {
    'f32 W': lib.LoRALinear.fromBase(base32, lora()),
    'bf16 W': lib.LoRALinear.fromBase(new lib.Linear(f32(w, [n, k]), f32(bias, [n]), { backend: be, weightDtype: 'bf16' }), lora()),
    '8-bit W': lib.QLoRALinear.fromBase(base32.toQuantized({ bits: 8, groupSize: 64 }), lora()),
    '4-bit W': lib.QLoRALinear.fromBase(base32.toQuantized({ bits: 4, groupSize: 64 }), lora()),
  };
  const bytes = { 'f32 W': n * k * 4, 'bf16 W': n * k * 2, '8-bit W': n * k + (n * k / 64) * 8, '4-bit W': n * k / 2 + (n * k / 64) * 8 };
  const res = {};
  for (const m of ms) {
    const x = f32(randomF32(m * k, 100 + m, 1), [m, k]);
    const fns = Object.fromEntries(
      Object.entries(layers).map(([id, layer]) => [
        id,
        () => {
          const y = layer.forward(x);
          const v = y.data[0];
          y.dispose();
          return v;
        },
      ]),
    );
    const t = await timeInterleaved(fns, { budgetMs: quick ? 500 : 3000, minIters: 7 });
    for (const id of Object.keys(layers)) {
      (res[id] ??= {})[m] = { ms: t[id], gflops: (2 * m * k * n) / t[id] / 1e6 };
      log(`quant ${id} m=${m}: ${fmt.ms(t[id])} ms, ${fmt.gflops(res[id][m].gflops)} GFLOP/s`);
    }
  }
  return { label: `peftjs ${libVersion(lib)} (${be.name})`, res, ms, bytes, size, r };
}

export function quantTables({ error, label, res, ms, bytes, size, r }) {
  if (error) return `#### Weight storage\n\npeftjs not measured: ${error}`;
  const rows = Object.keys(res).map((id) => [
    id === 'f32 W' ? id : `**${id}**`,
    `${(bytes[id] / 2 ** 20).toFixed(0)} MiB`,
    ...ms.map((m) => `${fmt.gflops(res[id][m].gflops)}${id === 'f32 W' ? '' : ` (${fmt.ratio(res[id][m].gflops / res['f32 W'][m].gflops)})`}`),
  ]);
  return (
    `#### Weight storage: one LoRA layer, k = n = ${size}, r = ${r}, ${label}, one thread\n\n` +
    'GFLOP/s counted as 2·m·k·n (higher is better), the layers called in turn, medians; (N×) = time of the f32 W over ' +
    'this one. bf16 is `weightDtype: \'bf16\'`; 8-/4-bit are MLX affine with group 64 (`QLoRALinear`; bytes include ' +
    'f32 scales and biases). No peer runs this layout on wasm.\n\n' +
    table(['W', 'bytes', ...ms.map((m) => `m=${m}`)], rows)
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  console.log(`Machine: ${machine()}\n\n${quantTables(await runQuant({ quick: a.quick }))}`);
}
