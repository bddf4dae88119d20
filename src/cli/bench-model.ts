import type { Backend } from '../backends/backend.js';
import { init } from '../backends/index.js';
import { LoRAContainer } from '../adapter/container.js';
import { CausalLM } from '../models/causal-lm.js';
import { embeddedModelDir } from './lm-demo.js';

export interface BenchModelOptions {
  model?: string;
  draft?: string;
  exitAfter?: number;
  tokens?: number;
}

const now = () => performance.now();

/**
 * `peftjs bench-model`: prefill tokens/s at S 16 / 64 / 256 and decode tokens/s (greedy, KV cache) for a model,
 * then plain vs speculative decoding when a drafter is given (default: the embedded pycoder and its draft-l3).
 * Medians of 3 runs after a warm-up. For side-by-side numbers against onnxruntime-web see bench/model.mjs.
 */
export async function benchModel(o: BenchModelOptions = {}, log: (s: string) => void = console.log): Promise<void> {
  const dir = embeddedModelDir();
  const model = o.model ?? `${dir}base`;
  const draft = o.draft ?? (o.model ? undefined : `${dir}draft-l3`);
  const exitAfter = o.exitAfter ?? (o.model ? undefined : 3);
  const backend: Backend = await init();
  const lm = await CausalLM.load(model, { backend, weightDtype: 'bf16' });
  const wb = backend as Backend & { build?: string; threads?: number };
  log(`${lm} · weights bf16 · ${wb.build ?? backend.name}, ${wb.threads ?? 1} thread(s)`);
  const med = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
  const V = lm.config.vocab;
  for (const S of [16, 64, 256].filter((s) => s < lm.maxLength)) {
    const ids = Array.from({ length: S }, (_, i) => (i * 7919 + 13) % V);
    await lm.logits(ids);
    const runs: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t = now();
      await lm.logits(ids);
      runs.push((S * 1000) / (now() - t));
    }
    log(`  prefill S ${String(S).padStart(3)}: ${med(runs).toFixed(0).padStart(6)} tokens/s`);
  }
  const n = Math.min(o.tokens ?? 128, lm.maxLength - 8);
  const prompt = [1, 2];
  await lm.generate(prompt, { maxNewTokens: 16, stop: [] });
  const plain: number[] = [];
  for (let r = 0; r < 3; r++) plain.push((await lm.generate(prompt, { maxNewTokens: n, stop: [] })).stats.decodeTokensPerSecond);
  log(`  decode (${n} tokens, greedy): ${med(plain).toFixed(0)} tokens/s`);
  if (draft) {
    const d = await LoRAContainer.load(draft, { name: 'draft' });
    d.apply(lm);
    d.enabled = false;
    for (const tokens of [2, 4, 'auto'] as const) {
      const spec: number[] = [];
      let last;
      for (let r = 0; r < 3; r++) {
        last = await lm.generate(prompt, { maxNewTokens: n, stop: [], draft: { adapter: 'draft', exitAfterLayers: exitAfter, tokens } });
        spec.push(last.stats.decodeTokensPerSecond);
      }
      const s = last!.stats.speculative!;
      log(
        `  speculative γ ${String(tokens).padEnd(4)}: ${med(spec).toFixed(0)} tokens/s (${(med(spec) / med(plain)).toFixed(2)}×; predicted ${s.predictedSpeedup.toFixed(2)}×) · ` +
          `acceptance ${(s.acceptanceRate * 100).toFixed(0)} % · ${s.tokensPerRound.toFixed(2)} tokens/verification · draft step ${s.draftCostRatio.toFixed(2)}× a full step`,
      );
    }
  }
  lm.dispose();
}
