import { beforeAll, describe, expect, it } from 'vitest';
import { createBackend } from '../../src/backends/index.js';
import type { Backend } from '../../src/backends/backend.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { CausalLM } from '../../src/models/causal-lm.js';
import { argmax } from '../../src/generate/sampling.js';
import { PYCODER, drafterOracle, expectLogits, oracle } from './helpers.js';

// Greedy speculative decoding with pycoder's LoRA drafters (early exit after K layers, adapter on; the verifier
// runs all 6 layers with it off, over one shared KV cache) must reproduce transformers' greedy_off exactly.
describe('speculative decoding (wasm)', () => {
  let backend: Backend;
  let lm: CausalLM;
  const o = oracle('pycoder');
  beforeAll(async () => {
    backend = await createBackend('wasm');
    lm = await CausalLM.load(`${PYCODER}base`, { backend, weightDtype: 'bf16' });
    // Both drafters on one model, each off until a generation drafts with it.
    for (const k of [2, 3]) {
      (await LoRAContainer.fromPEFT(`${PYCODER}draft-l${k}`, { name: `draft-l${k}` })).apply(lm);
      setLoRAEnabled(lm, false, { adapter: `draft-l${k}` });
    }
  });

  for (const k of [2, 3] as const) {
    it(`draft-l${k}: early-exit logits with the adapter on match the oracle's draft_logits`, async () => {
      const d = drafterOracle(k);
      expect(d.exit_after_layers).toBe(k);
      for (const [i, p] of o.prompts.entries()) {
        setLoRAEnabled(lm, true, { adapter: `draft-l${k}` });
        const got = await lm.logits(p.ids, { layers: k });
        setLoRAEnabled(lm, false, { adapter: `draft-l${k}` });
        expectLogits(got, d.logits.get(`p${i}.draft_logits`)!, 1e-4, `draft-l${k} p${i}`);
      }
    });

    for (const shared of [true, false]) {
      for (const tokens of [4, 'auto'] as const) {
        it(`draft-l${k}, ${shared ? 'shared' : 'separate'} cache, γ ${tokens}: output equals greedy_off token for token`, async () => {
          let rejected = 0;
          let accepted = 0;
          for (const p of o.prompts) {
            const r = await lm.generate(p.ids, { maxNewTokens: p.greedy_off.length, stop: [], draft: { adapter: `draft-l${k}`, exitAfterLayers: k, tokens, minProbability: 0, sharedCache: shared } });
            expect(r.tokens).toEqual(p.greedy_off);
            expect(r.text).toBe(p.greedy_off_text);
            const s = r.stats.speculative!;
            rejected += s.rejected;
            accepted += s.accepted;
            expect(s.acceptanceRate).toBeCloseTo(s.accepted / (s.accepted + s.rejected), 12);
          }
          const rate = accepted / (accepted + rejected);
          if (tokens === 4 && !shared) {
            // With its own cache the drafter sees exactly what a full-sequence early-exit forward sees, so the loop's
            // per-token acceptance must equal the drafter's top-1 agreement with these greedy paths, computed
            // independently from full-sequence logits (and lie near the held-out top1_agreement of the fixture).
            expect(Math.abs(rate - (await agreement(k))), `acceptance ${rate}`).toBeLessThan(0.03);
            expect(Math.abs(rate - drafterOracle(k).top1_agreement.draft_lora)).toBeLessThan(0.15);
          }
          // Shared cache: the drafter reads the verifier's (adapter-off) keys for past tokens, which costs some
          // acceptance, but it must stay well above the no-LoRA early exit (20 % / 28 % held out).
          if (tokens === 4 && shared) expect(rate, `acceptance ${rate}`).toBeGreaterThan(0.3);
        });
      }
    }
  }

  /** Top-1 agreement of the early-exit drafter (own keys) with the oracle's greedy_off paths, from full-sequence logits. */
  async function agreement(k: number): Promise<number> {
    let agree = 0;
    let n = 0;
    setLoRAEnabled(lm, true, { adapter: `draft-l${k}` });
    for (const p of o.prompts) {
      const seq = [...p.ids, ...p.greedy_off];
      const lg = await lm.logits(seq, { layers: k });
      for (let i = p.ids.length - 1; i < seq.length - 1; i++, n++) if (argmax(lg, 2048, i) === seq[i + 1]) agree++;
    }
    setLoRAEnabled(lm, false, { adapter: `draft-l${k}` });
    return agree / n;
  }

  it('a separate drafter model (its own KV cache) is lossless too', async () => {
    const small = await CausalLM.load(`${PYCODER}base`, { backend, weightDtype: 'bf16' });
    for (const p of o.prompts.slice(0, 2)) {
      const r = await lm.generate(p.ids, { maxNewTokens: 32, stop: [], draft: { model: small, exitAfterLayers: 2, tokens: 3 } });
      expect(r.tokens).toEqual(p.greedy_off.slice(0, 32));
    }
  });

  it('rejects sampling with a drafter, unknown adapters and bad exits with typed errors', async () => {
    const p = o.prompts[0].ids;
    await expect(lm.generate(p, { temperature: 0.7, draft: { adapter: 'draft-l2', exitAfterLayers: 2 } })).rejects.toMatchObject({ code: 'bad_option' });
    await expect(lm.generate(p, { draft: { adapter: 'nope', exitAfterLayers: 2 } })).rejects.toMatchObject({ code: 'bad_option', key: 'draft.adapter' });
    await expect(lm.generate(p, { draft: { adapter: 'draft-l2', exitAfterLayers: 7 } })).rejects.toMatchObject({ code: 'bad_option' });
  });
});
