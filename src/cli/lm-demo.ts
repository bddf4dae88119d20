import type { Backend } from '../backends/backend.js';
import { init } from '../backends/index.js';
import { LoRAContainer } from '../adapter/container.js';
import { setLoRAEnabled } from '../lora/set-enabled.js';
import { CausalLM } from '../models/causal-lm.js';

/** Where the embedded pycoder lives, relative to dist/cli.js (or src/cli/ under a TS runner). */
export function embeddedModelDir(): string {
  return new URL('../models/pycoder/', import.meta.url).pathname.replace(/\/src\/models\/pycoder\/$/, '/models/pycoder/');
}

export interface LmDemoOptions {
  dir?: string;
  prompts?: string[];
  maxNew?: number;
  /** Print as it goes (default console.log). */
  log?: (line: string) => void;
}

const now = () => performance.now();

/** `dir` relative to the working directory when it is below it (shorter, and what a user would type). */
function displayPath(dir: string): string {
  const cwd = `${(globalThis as { process?: { cwd(): string } }).process?.cwd() ?? ''}/`;
  return cwd.length > 1 && dir.startsWith(cwd) ? dir.slice(cwd.length) : dir;
}

/** Decode tokens/s of `lm` on `prompt` (greedy, `n` tokens), the median of `rounds` runs. */
async function decodeRate(lm: CausalLM, prompt: string, n: number): Promise<number> {
  const r = await lm.generate(prompt, { maxNewTokens: n, stop: [] });
  return r.stats.decodeTokensPerSecond;
}

function indent(text: string, width = 96): string {
  const flat = text.replace(/\n/g, '⏎ ');
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat;
}

/**
 * The main job (`npm start`): pycoder, a 6-layer Llama trained on Python's standard library, with a PEFT LoRA tuned
 * on Python's documentation prose and a LoRA drafter for self-speculative decoding — all run unmerged on wasm.
 */
export async function lmDemo(o: LmDemoOptions = {}): Promise<{ lines: string[]; lossless: boolean; offIsBase: boolean }> {
  const lines: string[] = [];
  const log = (s = '') => {
    lines.push(s);
    (o.log ?? console.log)(s);
  };
  const dir = o.dir ?? embeddedModelDir();
  const shown = displayPath(dir);
  const prompts = o.prompts ?? ['def ', 'The '];
  const maxNew = o.maxNew ?? 48;
  const backend: Backend = await init();
  const t0 = now();
  const lm = await CausalLM.load(`${dir}base`, { backend, weightDtype: 'bf16' });
  const prose = await LoRAContainer.fromPEFT(`${dir}adapter`, { name: 'prose' });
  const drafter = await LoRAContainer.fromPEFT(`${dir}draft-l3`, { name: 'draft' });
  prose.apply(lm);
  drafter.apply(lm);
  drafter.enabled = false;
  const bare = await CausalLM.load(`${dir}base`, { backend, weightDtype: 'bf16' });
  const c = lm.config;
  const wb = backend as Backend & { build?: string; threads?: number };
  const threads = wb.threads ?? 1;
  log(`peftjs: a PEFT LoRA adapter on a real language model, unmerged, in JavaScript (${backend.name} ${wb.build ?? ''}, ${threads} thread${threads > 1 ? 's' : ''})`);
  log();
  log(`  model    ${shown}base: Llama, ${c.layers} layers, d ${c.hidden}, ${c.heads}/${c.kvHeads} heads, vocab ${c.vocab}, bf16 (trained on Python's standard library)`);
  log(`  adapter  ${shown}adapter: LoRA r ${prose.spec.modules[0]?.rank ?? '?'} on q/k/v/o/gate/up/down, tuned on Python's documentation prose`);
  log(`  drafter  ${shown}draft-l3: LoRA on layers 0–2, distilled so that 3 layers + the head predict what all 6 predict`);
  log(`  loaded in ${((now() - t0) / 1000).toFixed(2)} s`);

  log();
  log(`1 · One model, the adapter switched per call (no reload, no merge): off it writes code, on it writes prose.`);
  for (const p of prompts) {
    log(`  prompt ${JSON.stringify(p)}`);
    for (const on of [false, true]) {
      prose.enabled = on;
      const r = await lm.generate(p, { maxNewTokens: maxNew, stop: [] });
      log(`    LoRA ${on ? 'on ' : 'off'} │ ${indent(p + (r.text ?? ''))}`);
    }
  }

  log();
  log(`2 · Off is the base model, bit for bit, at the base model's speed.`);
  prose.enabled = false;
  const ids = lm.encode(prompts[0]);
  const a = await lm.logits(ids);
  const b = await bare.logits(ids);
  let same = a.length === b.length;
  for (let i = 0; same && i < a.length; i++) same = Object.is(a[i], b[i]);
  log(`    logits, LoRA off vs the bare base model: ${same ? 'identical (every bit of every logit)' : 'DIFFERENT'}`);
  // Warm up (a fresh process runs its first few hundred tokens slower while V8 compiles the kernels and the JS
  // around them), then interleave base / off / on, each round in a rotated order, so that neither warm-up nor a
  // busy machine favours one of them; each ratio is the median of the rounds' own ratios.
  const rate: Record<'base' | 'off' | 'on', number[]> = { base: [], off: [], on: [] };
  const kinds = ['base', 'off', 'on'] as const;
  const runOne = async (k: (typeof kinds)[number]) => {
    prose.enabled = k === 'on';
    return decodeRate(k === 'base' ? bare : lm, prompts[0], 64);
  };
  for (let round = 0; round < 2; round++) for (const k of kinds) await runOne(k);
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 3; i++) {
      const k = kinds[(round + i) % 3];
      rate[k].push(await runOne(k));
    }
  }
  prose.enabled = false;
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1];
  const ratio = (k: 'off' | 'on') => med(rate[k].map((v, i) => rate.base[i] / v)).toFixed(2);
  log(`    decode, tokens/s (median of 5 interleaved rounds): base ${med(rate.base).toFixed(0)} · LoRA off ${med(rate.off).toFixed(0)} · LoRA on ${med(rate.on).toFixed(0)} (r 16 on all 42 projections)`);
  log(`    time per token ÷ base: LoRA off ${ratio('off')}× · LoRA on ${ratio('on')}×`);

  log();
  log(`3 · Speculative decoding with the LoRA drafter: drafter = this model's first 3 layers with the draft adapter on;`);
  log(`    verifier = all 6 layers, adapters off; one KV cache; the adapter flips every step.`);
  prose.enabled = false;
  let lossless = true;
  const plainRates: number[] = [];
  const specRates: number[] = [];
  let acc = 0;
  let rej = 0;
  let perRound = 0;
  let predicted = 0;
  let draftCost = 0;
  const n = 96;
  await lm.generate(prompts[0], { maxNewTokens: 16, stop: [], draft: { adapter: 'draft', exitAfterLayers: 3 } });
  for (const p of prompts) {
    const plain = await lm.generate(p, { maxNewTokens: n, stop: [] });
    const spec = await lm.generate(p, { maxNewTokens: n, stop: [], draft: { adapter: 'draft', exitAfterLayers: 3, tokens: 'auto' } });
    lossless &&= plain.tokens.length === spec.tokens.length && plain.tokens.every((t, i) => t === spec.tokens[i]);
    plainRates.push(plain.stats.decodeTokensPerSecond);
    specRates.push(spec.stats.decodeTokensPerSecond);
    const s = spec.stats.speculative!;
    acc += s.accepted;
    rej += s.rejected;
    perRound += s.tokensPerRound / prompts.length;
    predicted += s.predictedSpeedup / prompts.length;
    draftCost += s.draftCostRatio / prompts.length;
  }
  const plainR = plainRates.reduce((x, y) => x + y) / plainRates.length;
  const specR = specRates.reduce((x, y) => x + y) / specRates.length;
  const alpha = acc / Math.max(acc + rej, 1);
  log(`    same tokens as plain greedy decoding: ${lossless ? 'yes, token for token' : 'NO'} (${prompts.length} prompts × ${n} tokens)`);
  log(`    acceptance ${(alpha * 100).toFixed(0)} % per drafted token · ${perRound.toFixed(2)} tokens per verification · a draft step costs ${draftCost.toFixed(2)}× a full step`);
  log(`    plain ${plainR.toFixed(0)} tok/s → speculative ${specR.toFixed(0)} tok/s: ${(specR / plainR).toFixed(2)}× measured, ${predicted.toFixed(2)}× predicted by acceptance and costs`);
  log(
    `    ${specR / plainR >= 1.05 ? 'It pays here' : 'It does not pay on a model this small'}: speculation wins when tokens per verification exceed the cost of a round ` +
      `(γ draft steps + one batched verification) in full steps; 'auto' drafts only while the measured costs say it pays.`,
  );

  log();
  log(`Try next:`);
  log(`  npx peftjs generate --model ${shown}base --adapter ${shown}adapter --prompt "import " --lora both`);
  log(`  npx peftjs generate --model ${shown}base --draft ${shown}draft-l3 --exit-after 3 --prompt "def " --max-new 128`);
  log(`  npx peftjs bench-model            (prefill / decode tokens/s, plain and speculative)`);
  setLoRAEnabled(lm, true);
  lm.dispose();
  bare.dispose();
  return { lines, lossless, offIsBase: same };
}
