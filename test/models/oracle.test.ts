import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { createBackend } from '../../src/backends/index.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { CausalLM } from '../../src/models/causal-lm.js';
import { MODELS, adapterPath, basePath, expectLogits, oracle, trustedPrefix, type ModelName } from './helpers.js';

// Every fixture model against transformers + PEFT (f32, TF32 off): logits of every prompt position with the
// adapter on and off within 1e-4 · max|logit|, and greedy continuations (KV cache on) token for token.
const BACKENDS = ['wasm', 'js'] as const;

for (const backendName of BACKENDS) {
  describe(`CausalLM vs the transformers + PEFT oracle (${backendName})`, () => {
    let backend: Backend;
    beforeAll(async () => {
      backend = await createBackend(backendName);
    });

    for (const name of MODELS) {
      // The float64 js backend is slow: pycoder's greedy paths run on wasm (and on js for the tiny models).
      it(`${name}: logits on/off, greedy on/off`, async () => {
        const lm = await CausalLM.load(basePath(name as ModelName), { backend, weightDtype: 'bf16' });
        const adapter = await LoRAContainer.fromPEFT(adapterPath(name as ModelName));
        adapter.apply(lm);
        const o = oracle(name as ModelName);
        let worst = 0;
        for (const [i, p] of o.prompts.entries()) {
          for (const on of [true, false]) {
            setLoRAEnabled(lm, on);
            worst = Math.max(worst, expectLogits(await lm.logits(p.ids), o.logits.get(`p${i}.logits_${on ? 'on' : 'off'}`)!, 1e-4, `${name} p${i} ${on ? 'on' : 'off'}`));
            if (backendName === 'js' && name === 'pycoder') continue;
            const want = on ? p.greedy_on : p.greedy_off;
            const margins = on ? p.greedy_on_margins : p.greedy_off_margins;
            const r = await lm.generate(p.ids, { maxNewTokens: want.length, stop: [] });
            const trusted = name === 'pycoder' ? want : trustedPrefix(want, margins, 1e-3);
            expect(r.tokens.slice(0, trusted.length), `${name} p${i} greedy ${on ? 'on' : 'off'}`).toEqual(trusted);
            if (name === 'pycoder') expect(r.text).toBe(on ? p.greedy_on_text : p.greedy_off_text);
          }
        }
        expect(worst).toBeLessThan(1e-4);
        lm.dispose();
      });
    }
  });
}
