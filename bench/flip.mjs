// Question: what does flipping an adapter cost at model scale? pycoder (6 layers) with its LoRA on every linear
// (42 LoRA layers): `setLoRAEnabled(lm, on)` and `container.enabled = on`, 200,000 flips each, µs per flip, next to
// one greedy decode step (what speculative decoding flips around).
// Usage: node flip.mjs   (uses ../dist: run `npm run build` first)
import { loadLib } from './lib/ours.mjs';

const { lib, error } = await loadLib();
if (!lib) throw new Error(error);
const { CausalLM, LoRAContainer, setLoRAEnabled, loraLayersOf, createBackend } = lib;
const backend = await createBackend('wasm', { threads: 1 });
const root = new URL('../models/pycoder/', import.meta.url).pathname;
const lm = await CausalLM.load(`${root}base`, { backend, weightDtype: 'bf16' });
const c = await LoRAContainer.fromPEFT(`${root}adapter`);
c.apply(lm);
const layers = loraLayersOf(lm).length;
const time = (fn, n) => {
  for (let i = 0; i < 10_000; i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return ((performance.now() - t0) / n) * 1000;
};
const set = time((i) => setLoRAEnabled(lm, (i & 1) === 0), 200_000);
const prop = time((i) => (c.enabled = (i & 1) === 0), 200_000);
const ids = lm.tokenizer.encode('def fibonacci(n):');
await lm.generate(ids, { maxNewTokens: 64 }); // warm-up (V8 tiers the kernels up in the background)
const step = (await lm.generate(ids, { maxNewTokens: 128 })).stats;
const stepUs = 1e6 / step.decodeTokensPerSecond;
console.log(`| flip | µs per flip | ÷ one decode step (${stepUs.toFixed(0)} µs) |`);
console.log('| --- | ---: | ---: |');
console.log(`| \`setLoRAEnabled(lm, on)\`, ${layers} LoRA layers | ${set.toFixed(2)} | ${((100 * set) / stepUs).toFixed(2)} % |`);
console.log(`| \`container.enabled = on\` | ${prop.toFixed(2)} | ${((100 * prop) / stepUs).toFixed(2)} % |`);
