// Explicit lifetimes on WebGPU (issue 9): 1,000 apply → forward → unload cycles (LoRA, DoRA, and both stacked on one
// layer) return the buffer pool's bytes in use to the baseline, with no GC involved: `unload` frees each adapter's
// uploaded factors and DoRA gains, and every forward's output is disposed. Shapes are tiny (SwiftShader). Routes give
// rows one adapter each, DoRA stacked with LoRA in one row (one more sgmv pass), and a batched LoRA route
// (its stacked adapter bank is freed with the adapter), and two LoRA adapters stacked on every row.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { modelFromWeights } from '../../src/nn/model-from-weights.js';
import { gpuBackend } from './env.js';
import { linearModule, prng, randomTensor, specOf } from '../lora/helpers.js';

let be: WebGPUBackend;
beforeAll(async () => {
  be = await gpuBackend();
});
afterAll(() => be.dispose());

test("1,000 apply/unload cycles return the GPU pool's bytes in use to the baseline", async () => {
  const rand = prng(7);
  const model = modelFromWeights(
    {
      'model.layers.0.self_attn.q_proj.weight': randomTensor(rand, [8, 6]),
      'model.layers.0.self_attn.q_proj.bias': randomTensor(rand, [8]),
      'model.layers.0.self_attn.v_proj.weight': randomTensor(rand, [4, 6]),
    },
    { backend: be },
  );
  const lora = new LoRAContainer(specOf([linearModule('model.layers.0.self_attn.q_proj', randomTensor(rand, [6, 2]), randomTensor(rand, [2, 8]), 2)]), { name: 'l' });
  const dora = new LoRAContainer(
    specOf([
      { ...linearModule('model.layers.0.self_attn.q_proj', randomTensor(rand, [6, 3]), randomTensor(rand, [3, 8]), 1), kind: 'dora', magnitude: randomTensor(rand, [8], 3) },
      linearModule('model.layers.0.self_attn.v_proj', randomTensor(rand, [6, 2]), randomTensor(rand, [2, 4]), 1),
    ]),
    { name: 'd' },
  );
  const lora2 = new LoRAContainer(specOf([linearModule('model.layers.0.self_attn.q_proj', randomTensor(rand, [6, 3]), randomTensor(rand, [3, 8]), 1)]), { name: 'l2' });
  const x = be.upload(randomTensor(rand, [3, 6]));
  const q = () => model.get('model.layers.0.self_attn.q_proj') as unknown as { forward(x: unknown, o?: unknown): { dispose(): void } };
  const cycle = () => {
    lora.apply(model);
    lora2.apply(model);
    q().forward(x).dispose(); // two LoRA adapters stacked on every row: their B's packed once, freed on unload
    lora2.unload();
    dora.apply(model);
    q().forward(x, { adapters: ['d', ['l', 'd'], 'l'] }).dispose();
    q().forward(x, { adapters: ['l', null, 'l'] }).dispose(); // batched (sgmv): a stacked adapter bank, freed on unload
    q().forward(x, { adapters: ['l', 'd', null] }).dispose();
    dora.unload();
    lora.unload();
  };
  cycle(); // first use sizes the pool's free lists
  const baseline = be.pool.bytesInUse;
  const applied = (() => {
    lora.apply(model);
    const n = be.pool.bytesInUse;
    lora.unload();
    return n;
  })();
  expect(applied).toBeGreaterThan(baseline); // the check can see an upload
  for (let i = 0; i < 1000; i++) cycle();
  expect(be.pool.bytesInUse).toBe(baseline);
});
