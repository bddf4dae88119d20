import type { Backend } from '../backends/backend.js';
import { createBackend, init } from '../backends/index.js';
import { LoRALinear } from '../lora/lora-linear.js';
import { Linear } from '../nn/linear.js';
import { Tensor } from '../tensor.js';

/** The demo's embedded default: one projection the size of a small LLM's, and a rank-16 adapter. */
export const DEMO_DEFAULTS = { m: 8, k: 1024, n: 1024, r: 16, alpha: 32, seed: 1 } as const;
export type DemoOptions = { -readonly [K in keyof typeof DEMO_DEFAULTS]: number };

/** Deterministic values in [-a, a): a 32-bit LCG, so every run prints the same numbers. */
function values(count: number, seed: number, amplitude: number): Float32Array<ArrayBuffer> {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * amplitude;
  }
  return out;
}

/** Times `fn`: the best of 5 rounds of ~`ms` milliseconds each, so a busy machine does not skew one column. */
function timePerCall(fn: () => void, ms = 80): number {
  fn();
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    let calls = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < ms) {
      fn();
      calls++;
      t = performance.now();
    }
    best = Math.min(best, (t - t0) / calls);
  }
  return best;
}

interface Row {
  backend: string;
  onMs: number;
  offMs: number;
  baseMs: number;
  maxDiff: number;
  offIdentical: boolean;
}

function runOn(backend: Backend, o: DemoOptions): Row {
  const { m, k, n, r } = o;
  const w = Tensor.from(values(n * k, o.seed, 1 / Math.sqrt(k)), [n, k], 'f32');
  const bias = Tensor.from(values(n, o.seed + 1, 0.1), [n], 'f32');
  const a = Tensor.from(values(k * r, o.seed + 2, 1 / Math.sqrt(k)), [k, r], 'f32');
  const b = Tensor.from(values(r * n, o.seed + 3, 0.05), [r, n], 'f32');
  const x = Tensor.from(values(m * k, o.seed + 4, 1), [m, k], 'f32');

  const base = new Linear(w, bias, { backend });
  const lora = LoRALinear.fromBase(new Linear(w, bias, { backend }), { name: 'demo', a, b, scale: o.alpha / r });

  const yBase = base.forward(x).toCpu().data;
  const yOn = lora.forward(x).toCpu().data;
  lora.loraEnabled = false;
  const yOff = lora.forward(x).toCpu().data;
  let maxDiff = 0;
  let offIdentical = true;
  for (let i = 0; i < yOn.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(yOn[i]! - yOff[i]!));
    if (!Object.is(yOff[i], yBase[i])) offIdentical = false;
  }
  const once = (layer: { forward(x: Tensor): Tensor }) => () => layer.forward(x).dispose();
  const offMs = timePerCall(once(lora));
  lora.loraEnabled = true;
  const onMs = timePerCall(once(lora));
  const baseMs = timePerCall(once(base));
  return { backend: backend.name, onMs, offMs, baseMs, maxDiff, offIdentical };
}

/** `npm start`: a LoRALinear on and off, the max difference, and the time per forward on wasm and on js. */
export async function demo(o: DemoOptions = { ...DEMO_DEFAULTS }): Promise<string> {
  const wasm = await init();
  const js = await createBackend('js');
  const rows = [runOn(wasm, o), runOn(js, o)];
  const fmt = (ms: number) => `${ms < 1 ? ms.toFixed(3) : ms.toFixed(1)} ms`;
  const gflops = (ms: number) => ((2 * o.m * o.k * o.n) / (ms * 1e6)).toFixed(1);
  const lines = [
    `peftjs demo: LoRALinear x [${o.m},${o.k}] · W [${o.n},${o.k}]ᵀ + b + (α/r)·(x·A)·B, r=${o.r}, α=${o.alpha} (scale ${o.alpha / o.r})`,
    '',
    '| backend | base forward | LoRA on | LoRA off | base GFLOP/s | max abs(y_on − y_off) | off ≡ base (bitwise) |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.backend} | ${fmt(r.baseMs)} | ${fmt(r.onMs)} | ${fmt(r.offMs)} | ${gflops(r.baseMs)} | ${r.maxDiff.toExponential(3)} | ${r.offIdentical ? 'yes' : 'NO'} |`,
    ),
    '',
    `wasm is ${(rows[1]!.onMs / rows[0]!.onMs).toFixed(1)}× faster than the float64 js reference with LoRA on.`,
  ];
  if (rows.some((r) => !r.offIdentical)) throw new Error(`LoRA off differs from the base layer:\n${lines.join('\n')}`);
  return lines.join('\n');
}
