import { describe, expect, test, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { GOLDEN, prng, randomTensor, readSafetensors, linearModule, specOf } from './helpers.js';

/**
 * Explicit lifetimes and a loader without wasm.
 * - 1,000 apply → forward → unload cycles (LoRA, DoRA, and a stack of both on one layer) return the wasm heap's
 *   malloc'd bytes (dlmalloc's count, `runtime.heapBytesInUse`) to the baseline, with no GC involved; `dispose()` on
 *   a layer and on a model frees their weights the same way.
 * - A bf16 PEFT adapter loads and runs on the js backend with WebAssembly removed from the runtime (never
 *   initialised), and gives the golden outputs (the fixture's float64 expectations from PEFT).
 */

describe('explicit lifetimes (wasm heap)', () => {
  test('1,000 apply/unload cycles return malloc\'d bytes to the baseline; dispose() frees layers and models', async () => {
    const { WasmBackend } = await import('../../src/backends/wasm.js');
    const { LoRAContainer } = await import('../../src/adapter/container.js');
    const { modelFromWeights } = await import('../../src/nn/model-from-weights.js');
    const { disposeModule } = await import('../../src/nn/module.js');
    const { LoRALinear } = await import('../../src/lora/lora-linear.js');
    const { Linear } = await import('../../src/nn/linear.js');
    const backend = await WasmBackend.create();
    const rt = backend.runtime;
    const rand = prng(1);
    const weights = {
      'model.layers.0.self_attn.q_proj.weight': randomTensor(rand, [8, 6]),
      'model.layers.0.self_attn.q_proj.bias': randomTensor(rand, [8]),
      'model.layers.0.self_attn.v_proj.weight': randomTensor(rand, [4, 6]),
    };
    // Size the reusable scratch block once, beyond anything below needs, so it never grows inside the measurements.
    backend.linear(randomTensor(rand, [16, 64]), randomTensor(rand, [64, 64]), undefined, [{ a: randomTensor(rand, [64, 16]), b: randomTensor(rand, [16, 64]), scale: 1 }]).dispose();
    const modelBaseline = rt.heapBytesInUse;
    const model = modelFromWeights(weights, { backend });
    const lora = new LoRAContainer(specOf([linearModule('model.layers.0.self_attn.q_proj', randomTensor(rand, [6, 2]), randomTensor(rand, [2, 8]), 2)]), { name: 'l' });
    const dora = new LoRAContainer(
      specOf([
        { ...linearModule('model.layers.0.self_attn.q_proj', randomTensor(rand, [6, 3]), randomTensor(rand, [3, 8]), 1), kind: 'dora', magnitude: randomTensor(rand, [8], 3) },
        linearModule('model.layers.0.self_attn.v_proj', randomTensor(rand, [6, 2]), randomTensor(rand, [2, 4]), 1),
      ]),
      { name: 'd' },
    );
    const x = backend.upload(randomTensor(rand, [3, 6]));
    const q = () => model.get('model.layers.0.self_attn.q_proj') as unknown as { forward(x: unknown, o?: unknown): { dispose(): void } };
    const cycle = () => {
      lora.apply(model);
      dora.apply(model);
      q().forward(x).dispose();
      q().forward(x, { adapters: ['l', 'd', null] }).dispose();
      dora.unload();
      lora.unload();
    };
    cycle(); // grows the scratch block once
    const baseline = rt.heapBytesInUse;
    for (let i = 0; i < 1000; i++) cycle();
    expect(rt.heapBytesInUse).toBe(baseline);

    // A layer's dispose frees its adapters' copies and its base; a model's frees every layer.
    const before = rt.heapBytesInUse;
    const layer = LoRALinear.fromBase(new Linear(randomTensor(rand, [5, 6]), undefined, { backend }), { name: 'a', a: randomTensor(rand, [6, 2]), b: randomTensor(rand, [2, 5]), scale: 1 });
    expect(rt.heapBytesInUse).toBeGreaterThan(before);
    layer[Symbol.dispose]();
    expect(rt.heapBytesInUse).toBe(before);
    x.dispose();
    lora.apply(model);
    dora.apply(model);
    disposeModule(model);
    lora.dispose();
    dora.dispose();
    expect(rt.heapBytesInUse).toBe(modelBaseline);
  });
});

describe('loading without wasm', () => {
  test('a bf16 PEFT adapter loads and runs on the js backend with WebAssembly absent (init never called)', async () => {
    vi.resetModules();
    vi.stubGlobal('WebAssembly', undefined);
    try {
      const { LoRAContainer } = await import('../../src/adapter/container.js');
      const { JsBackend } = await import('../../src/backends/js.js');
      const { modelFromWeights } = await import('../../src/nn/model-from-weights.js');
      const { wasmReady } = await import('../../src/runtime/wasm.js');
      const { toF64 } = await import('../../src/nn/float.js');
      const dir = `${GOLDEN}dtype-bf16/`;
      const c = JSON.parse(readFileSync(`${dir}case.json`, 'utf8')) as { modules: { path: string }[] };
      const backend = new JsBackend();
      const model = modelFromWeights(readSafetensors(`${dir}base.safetensors`), { backend });
      const adapter = await LoRAContainer.fromPEFT(`${dir}adapter`);
      adapter.apply(model);
      const io = readSafetensors(`${dir}io.safetensors`);
      for (const { path } of c.modules) {
        const y = (model.get(path) as unknown as { forward(x: unknown): { data: Float32Array } }).forward(io.get(`${path}.x`)!);
        const exp = toF64(io.get(`${path}.y_on`)!);
        y.data.forEach((v, i) => expect(Math.abs(v - exp[i]), `${path}[${i}]`).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(exp[i]))));
      }
      expect(wasmReady()).toBe(false);
    } finally {
      vi.unstubAllGlobals();
      vi.resetModules();
    }
  });
});
