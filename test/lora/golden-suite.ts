import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { isLoRALayer, type LoRAModule } from '../../src/lora/layer.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { toF64 } from '../../src/nn/float.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import type { Module } from '../../src/nn/module.js';
import { QuantizedLinear } from '../../src/nn/quantized-linear.js';
import type { Tensor } from '../../src/tensor.js';
import { expectClose, expectSnapshotEqual, GOLDEN, readSafetensors, snapshot, values, type BackendCase } from './helpers.js';

interface CaseModule {
  path: string;
  kind: string;
  conv1d?: boolean;
}
interface Case {
  name: string;
  modules: CaseModule[];
  runtime_scales?: Record<string, number>;
  quantization?: { bits: 4 | 8; group_size: number };
}

const cases = readdirSync(GOLDEN).map((dir) => JSON.parse(readFileSync(`${GOLDEN}${dir}/case.json`, 'utf8')) as Case);
const forward = (m: Module, x: Tensor): Tensor => (m as unknown as { forward(t: Tensor): Tensor }).forward(x);

async function load(c: Case): Promise<LoRAContainer[]> {
  const dir = `${GOLDEN}${c.name}/`;
  if (c.name === 'stacked')
    return [await LoRAContainer.fromPEFT(`${dir}adapter-a`, { name: 'adapter-a' }), await LoRAContainer.fromPEFT(`${dir}adapter-b`, { name: 'adapter-b' })];
  if (c.name === 'mlx-format') return [await LoRAContainer.fromMLX(`${dir}adapter`)];
  return [await LoRAContainer.fromPEFT(`${dir}adapter`)];
}

/**
 * Every golden case through the layers on the given backends: on ≈ y_on, off bit-identical to the base layer's own
 * output and ≈ y_off, fuse ≈ y_on and ≈ merged.weight, unfuse gives the original bytes, unload the original objects.
 * Run on js and wasm by test/lora/golden.test.ts, on WebGPU by test/gpu/layers.test.ts.
 */
export function goldenSuite(backendCases: readonly BackendCase[]): void {
describe.each(backendCases)('golden on $name', ({ make }) => {
  let backend: Backend;
  test.each(cases)('$name', async (c) => {
    backend ??= await make();
    const dir = `${GOLDEN}${c.name}/`;
    const io = readSafetensors(`${dir}io.safetensors`);
    const model = modelFromWeights(readSafetensors(`${dir}base.safetensors`), {
      backend,
      modelType: c.modules.some((m) => m.conv1d) ? 'gpt2' : undefined,
    });
    const paths = [...new Set(c.modules.map((m) => m.path))];
    const input = (p: string) => io.get(`${p}.x`) ?? io.get(`${p}.ids`)!;
    const run = async (p: string) => values(forward(model.get(p)!, input(p)));
    const check = async (p: string, key: string, what: string) => {
      const exp = io.get(`${p}.${key}`)!;
      expectClose(await run(p), toF64(exp), exp.shape, 1e-4, `${c.name} ${p} ${what}`);
    };

    // The base layers' own outputs, before anything is applied.
    const before = snapshot(model);
    const yBase = new Map<string, Float32Array>();
    for (const p of paths) yBase.set(p, await run(p));

    const adapters = await load(c);
    for (const a of adapters) a.apply(model);
    for (const p of paths) {
      const kind = c.modules.find((m) => m.path === p)!.kind;
      await check(p, kind === 'untouched' ? 'y_off' : 'y_on', 'on');
      if (kind !== 'untouched') expect(isLoRALayer(model.get(p))).toBe(true);
    }

    // Off: bit-identical to the base layer's own output, and ≈ y_off.
    setLoRAEnabled(model, false);
    for (const p of paths) {
      expect(Buffer.from((await run(p)).buffer).equals(Buffer.from(yBase.get(p)!.buffer)), `${p} off is bit-identical`).toBe(true);
      await check(p, 'y_off', 'off');
    }
    setLoRAEnabled(model, true);

    if (c.name === 'stacked') {
      const [a, b] = adapters;
      b.enabled = false;
      for (const p of paths) await check(p, 'y_a', 'a only');
      [a.enabled, b.enabled] = [false, true];
      for (const p of paths) await check(p, 'y_b', 'b only');
      a.enabled = true;
      a.scale = c.runtime_scales!['adapter-a'];
      b.scale = c.runtime_scales!['adapter-b'];
      for (const p of paths) await check(p, 'y_scaled', 'runtime scales');
      a.scale = b.scale = 1;
      for (const p of paths) await check(p, 'y_on', 'scales back to 1');
    } else {
      // Fuse: forward ≈ y_on with the merged weights; weights ≈ merged.weight in the base's own layout.
      const quantized = !!c.quantization;
      for (const dequantize of quantized ? [true, false] : [false]) {
        adapters[0].fuse({ dequantize });
        for (const p of paths) {
          const layer = model.get(p);
          if (!isLoRALayer(layer)) continue;
          const base = (layer as LoRAModule).base as unknown as { weight?: Tensor; bias?: Tensor };
          const mw = io.get(`${p}.merged.weight`);
          if (base instanceof QuantizedLinear) {
            // Re-quantised: each weight within one quantisation step of the exact merge (half a step of rounding;
            // MLX's grid puts the larger edge exactly on a level, which may clip the far edge by up to half a step),
            // so each output is within Σ_j |x_j|·step_ij of y_on.
            const got = base.denseF64();
            const scales = toF64(base.q.scales);
            const exp = toF64(mw!);
            const [n, k] = mw!.shape;
            const step = (i: number, j: number) => Math.abs(scales[i * (k / base.groupSize) + Math.floor(j / base.groupSize)]);
            for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) expect(Math.abs(got[i * k + j] - exp[i * k + j])).toBeLessThanOrEqual(step(i, j) + 1e-6);
            const x = toF64(input(p));
            const y = await run(p);
            const yOn = toF64(io.get(`${p}.y_on`)!);
            const m = x.length / k;
            for (let r = 0; r < m; r++)
              for (let i = 0; i < n; i++) {
                let bound = 1e-4 * Math.max(1, Math.abs(yOn[r * n + i]));
                for (let j = 0; j < k; j++) bound += Math.abs(x[r * k + j]) * step(i, j);
                expect(Math.abs(y[r * n + i] - yOn[r * n + i])).toBeLessThanOrEqual(bound);
              }
            continue;
          }
          if (mw) expectClose(toF64(base.weight!), toF64(mw), mw.shape, 1e-5, `${p} merged.weight`);
          const mb = io.get(`${p}.merged.bias`);
          if (mb) expectClose(toF64(base.bias!), toF64(mb), mb.shape, 1e-5, `${p} merged.bias`);
          if (!quantized || dequantize) await check(p, c.modules.find((m) => m.path === p)!.kind === 'untouched' ? 'y_off' : 'y_on', 'fused');
        }
        adapters[0].unfuse();
      }
      for (const p of paths) {
        const layer = model.get(p);
        // Unfused: the base is again a kept object (the original, or a replacement), never a recomputed one.
        if (isLoRALayer(layer)) expect([layer.original, ...layer.adapters.map((a) => a.replacement)]).toContain(layer.base);
      }
      for (const p of paths) await check(p, c.modules.find((m) => m.path === p)!.kind === 'untouched' ? 'y_off' : 'y_on', 'unfused');
    }

    // Unload: the very same module objects and bytes as before apply, and bit-identical outputs.
    for (const a of adapters.reverse()) a.unload(model);
    expectSnapshotEqual(before, snapshot(model));
    for (const p of paths) expect(sameBytesF32(await run(p), yBase.get(p)!), `${p} after unload`).toBe(true);
  });
});
}

function sameBytesF32(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
