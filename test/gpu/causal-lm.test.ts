import { beforeAll, describe, expect, it } from 'vitest';
import { LoRAContainer } from '../../src/lora/container.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { CausalLM } from '../../src/models/causal-lm.js';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { MODELS, PYCODER, adapterPath, basePath, drafterOracle, expectLogits, oracle, trustedPrefix, type ModelName } from '../models/helpers.js';
import { gpuBackend } from './env.js';

// The five fixture models on WebGPU (SwiftShader here: correctness only): logits on/off within 1e-4·max|logit| of
// transformers + PEFT, greedy paths equal to the oracle's, tensors on the GPU from embedding to logits.
describe('CausalLM on WebGPU vs the transformers + PEFT oracle', () => {
  let gpu: WebGPUBackend;
  beforeAll(async () => {
    gpu = await gpuBackend();
  });

  for (const name of MODELS) {
    it(`${name}: logits on/off; greedy on/off (first prompts)`, async () => {
      const lm = await CausalLM.load(basePath(name as ModelName), { backend: gpu, weightDtype: 'bf16' });
      (await LoRAContainer.fromPEFT(adapterPath(name as ModelName))).apply(lm);
      const o = oracle(name as ModelName);
      for (const [i, p] of o.prompts.entries()) {
        for (const on of [true, false]) {
          setLoRAEnabled(lm, on);
          expectLogits(await lm.logits(p.ids), o.logits.get(`p${i}.logits_${on ? 'on' : 'off'}`)!, 1e-4, `${name} p${i} ${on ? 'on' : 'off'}`);
          if (i > 1) continue;
          const want = on ? p.greedy_on : p.greedy_off;
          const n = name === 'pycoder' ? 24 : want.length;
          const r = await lm.generate(p.ids, { maxNewTokens: n, stop: [] });
          const trusted = trustedPrefix(want.slice(0, n), (on ? p.greedy_on_margins : p.greedy_off_margins).slice(0, n), 1e-3);
          expect(r.tokens.slice(0, trusted.length), `${name} p${i} greedy ${on ? 'on' : 'off'}`).toEqual(trusted);
        }
      }
      lm.dispose();
    });
  }

  it('a decode step reads back once (the logits)', async () => {
    const lm = await CausalLM.load(`${PYCODER}base`, { backend: gpu, weightDtype: 'bf16' });
    await lm.generate([454, 221], { maxNewTokens: 2, stop: [] });
    const before = gpu.stats.readbacks;
    await lm.generate([454, 221], { maxNewTokens: 5, stop: [] });
    expect(gpu.stats.readbacks - before).toBe(5); // prefill + 4 decode steps, one read each
  });

  it('speculative decoding with draft-l3 is lossless on WebGPU', async () => {
    const lm = await CausalLM.load(`${PYCODER}base`, { backend: gpu, weightDtype: 'bf16' });
    const d = await LoRAContainer.fromPEFT(`${PYCODER}draft-l3`, { name: 'draft' });
    d.apply(lm);
    d.enabled = false;
    expect(drafterOracle(3).exit_after_layers).toBe(3);
    const p = oracle('pycoder').prompts[0];
    const r = await lm.generate(p.ids, { maxNewTokens: 24, stop: [], draft: { adapter: 'draft', exitAfterLayers: 3, tokens: 4 } });
    expect(r.tokens).toEqual(p.greedy_off.slice(0, 24));
  });
});
