import { beforeAll, describe, expect, it } from 'vitest';
import { LoRAContainer } from '../../src/adapter/container.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { CausalLM } from '../../src/models/causal-lm.js';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { MODELS, adapterPath, basePath, expectLogits, oracle, trustedPrefix, type ModelName } from '../models/helpers.js';
import { gpuBackend } from './env.js';

// The fixture models on WebGPU against transformers + PEFT: logits on/off within 1e-4·max|logit|, greedy tokens equal
// to the oracle's, speculative decoding lossless, one readback per step. On a software adapter (SwiftShader: a
// decode-shaped matmul takes seconds) the tiny models run their longer prompts and a few greedy steps, pycoder one prompt;
// all prompts and
// its greedy path run where the adapter is hardware.
describe('CausalLM on WebGPU vs the transformers + PEFT oracle', () => {
  let gpu: WebGPUBackend;
  beforeAll(async () => {
    gpu = await gpuBackend();
  });

  for (const name of MODELS) {
    it(`${name}: logits on/off; greedy`, async () => {
      const lm = await CausalLM.load(basePath(name as ModelName), { backend: gpu, weightDtype: 'bf16' });
      (await LoRAContainer.fromPEFT(adapterPath(name as ModelName))).apply(lm);
      const o = oracle(name as ModelName);
      // pycoder's prompts are 2–3 tokens (decode-shaped, seconds each on SwiftShader): one prompt there.
      const prompts = !gpu.software ? o.prompts.map((_, i) => i) : name === 'pycoder' ? [4] : [1, 2];
      for (const i of prompts) {
        const p = o.prompts[i];
        for (const on of [true, false]) {
          setLoRAEnabled(lm, on);
          expectLogits(await lm.logits(p.ids), o.logits.get(`p${i}.logits_${on ? 'on' : 'off'}`)!, 1e-4, `${name} p${i} ${on ? 'on' : 'off'}`);
        }
      }
      if (name === 'pycoder' && gpu.software) return;
      const p = o.prompts[1];
      const n = gpu.software ? 3 : p.greedy_on.length;
      setLoRAEnabled(lm, true);
      const r = await lm.generate(p.ids, { maxNewTokens: n, stop: [] });
      const trusted = trustedPrefix(p.greedy_on.slice(0, n), p.greedy_on_margins.slice(0, n), 1e-3);
      expect(r.tokens.slice(0, trusted.length)).toEqual(trusted);
      lm.dispose();
    }, 600_000);
  }

  /**
   * One decode step of `name` after a prefill of its prompt 1: the dispatches it recorded, how many of them ran each
   * kernel whose id starts with a given prefix, and the largest gap between its logits and those of a fresh prefill
   * of the same tokens (the fused cache writes put k and v where they belong).
   */
  async function decodeStep(name: ModelName) {
    const lm = await CausalLM.load(basePath(name), { backend: gpu, weightDtype: 'bf16' });
    const cache = lm.createCache();
    const ids = oracle(name).prompts[1].ids;
    await lm.forward(ids, 0, { cache, lastOnly: true }).read();
    const [d0, k0] = [gpu.stats.dispatches, { ...gpu.stats.kernels }];
    const y = lm.forward([ids[0]], ids.length, { cache, lastOnly: true });
    const dispatches = gpu.stats.dispatches - d0;
    const kernels = { ...gpu.stats.kernels };
    const ran = (id: string) => Object.entries(kernels).filter(([k]) => k.startsWith(id)).reduce((n, [k, c]) => n + c - (k0[k] ?? 0), 0);
    const fresh = await lm.forward([...ids, ids[0]], 0, { cache: lm.createCache(), lastOnly: true }).read();
    const got = await y.read();
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - fresh[i]));
    const layers = lm.config.layers;
    lm.dispose();
    return { layers, dispatches, ran, worst };
  }

  it('a Llama-family decode step: 12 dispatches a layer + 3, the residual steps fused with the norms and rope with the cache write', async () => {
    const { layers: L, dispatches, ran, worst } = await decodeStep('tiny-llama');
    // Per layer: q, k, v, rope + cache write, attention, o, add + norm, gate, up, swiglu, down, add + norm; then the
    // embedding, layer 0's input norm and the head.
    expect(dispatches).toBe(12 * L + 3);
    expect([ran('add_norm'), ran('rope_kv'), ran('rope['), ran('add_inplace'), ran('strided_copy'), ran('norm[')]).toEqual([2 * L, L, 0, 0, 0, 1]);
    expect(worst).toBeLessThan(1e-4);
  }, 600_000);

  it('a GPT-2 decode step: 9 dispatches a layer + 5, residual steps fused with the LayerNorms, q|k|v split with the cache write', async () => {
    const { layers: L, dispatches, ran, worst } = await decodeStep('tiny-gpt2');
    // Per layer: c_attn, split + cache write, attention, c_proj, add + ln_2, c_fc, gelu, c_proj, add + norm; then wte,
    // wpe, their add, layer 0's ln_1 and the head.
    expect(dispatches).toBe(9 * L + 5);
    expect([ran('add_norm'), ran('norm['), ran('add_inplace'), ran('split_qkv'), ran('strided_copy')]).toEqual([2 * L, 1, 1, L, 0]);
    expect(worst).toBeLessThan(1e-4);
  }, 600_000);

  it('speculative decoding on WebGPU is lossless; a decode step reads back once', async () => {
    // tiny-llama's own LoRA as a 1-layer early-exit drafter: a poor drafter, which exercises rejections and rollback.
    const lm = await CausalLM.load(basePath('tiny-llama'), { backend: gpu, weightDtype: 'bf16' });
    const d = await LoRAContainer.fromPEFT(adapterPath('tiny-llama'), { name: 'draft' });
    d.apply(lm);
    d.enabled = false;
    const p = oracle('tiny-llama').prompts[1];
    const n = gpu.software ? 4 : 24;
    const before = gpu.stats.readbacks;
    const plain = await lm.generate(p.ids, { maxNewTokens: n, stop: [] });
    expect(gpu.stats.readbacks - before).toBe(n); // prefill + n − 1 decode steps, one read each
    expect(plain.tokens).toEqual(p.greedy_off.slice(0, n));
    const r = await lm.generate(p.ids, { maxNewTokens: n, stop: [], draft: { adapter: 'draft', exitAfterLayers: 1, tokens: 2, minProbability: 0 } });
    expect(r.tokens).toEqual(plain.tokens);
  }, 600_000);
});
