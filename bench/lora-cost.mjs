// Question: what does an adapter cost at model scale, switched on? The layer table (gemm.mjs) times r = 16 on one
// k = n = 4096 layer; a model's layers are smaller and its adapter's A and B are f32 as PEFT writes them, so at decode
// (W streamed, bf16) every LoRA layer also streams r·(k + n)·4 bytes against k·n·2. Decode with the adapter on ÷ off,
// one thread, bf16 weights, interleaved per round (on/off order alternating), the median of per-round ratios:
//   - pycoder (6 layers, its prose LoRA: r = 16 on all 7 projections of every layer);
//   - a model with Qwen2.5-0.5B's shapes (lib/synthetic-lm.mjs) and a random r = 16 LoRA on all 7 projections.
// "Adapter bytes" = the adapter's A and B ÷ the weight bytes one decode step streams: the floor a memory-bound step
// cannot go below.
// Usage: node lora-cost.mjs [--quick]   (uses ../dist: run `npm run build` first)
import { QWEN25_05B, syntheticCheckpoint } from './lib/synthetic-lm.mjs';
import { loadLib } from './lib/ours.mjs';

const quick = process.argv.includes('--quick');
const { lib, error } = await loadLib();
if (!lib) throw new Error(error);
const { CausalLM, LoRAContainer, createBackend, memoryFileSet, writeSafetensors } = lib;
const median = (v) => v.slice().sort((a, b) => a - b)[v.length >> 1];

/** Decode tokens/s off and on, and the median over rounds of (time per token on) ÷ (off). */
async function onOff(lm, container, prompt, maxNewTokens, rounds) {
  const rate = async (on) => {
    container.enabled = on;
    return (await lm.generate(prompt, { maxNewTokens, stop: [] })).stats.decodeTokensPerSecond;
  };
  await rate(true); // warm-up: both paths tiered up
  await rate(false);
  const on = [], off = [], ratio = [];
  for (let r = 0; r < rounds; r++) {
    const first = r % 2 === 0;
    const a = first ? await rate(true) : undefined;
    const b = await rate(false);
    const c = a ?? (await rate(true));
    on.push(c);
    off.push(b);
    ratio.push(b / c);
  }
  container.enabled = false;
  return { off: median(off), on: median(on), cost: median(ratio) - 1 };
}

/** f32 bytes of an adapter's A and B: Σ r·(k + n)·4 over its layers. */
const adapterBytes = (specs) => specs.reduce((s, [k, n, r]) => s + 4 * r * (k + n), 0);

const rows = [];

{
  // pycoder with its prose adapter.
  const be = await createBackend('wasm', { threads: 1 });
  const root = new URL('../models/pycoder/', import.meta.url).pathname;
  const lm = await CausalLM.load(`${root}base`, { backend: be, weightDtype: 'bf16' });
  const c = await LoRAContainer.fromPEFT(`${root}adapter`);
  c.apply(lm);
  const { hidden: d, headDim: hd, heads, kvHeads, ffn: f, layers, vocab } = lm.config;
  const q = heads * hd, kv = kvHeads * hd;
  const perLayer = [[d, q], [d, kv], [d, kv], [q, d], [d, f], [d, f], [f, d]].reduce((s, [k, n]) => s + k * n, 0);
  const weightBytes = 2 * (layers * perLayer + vocab * d); // bf16; the tied head reads the whole table
  const lora = adapterBytes(c.spec.modules.map((m) => [m.in, m.out, m.rank]));
  const res = await onOff(lm, c, lm.tokenizer.encode('def fibonacci(n):\n    '), 96, quick ? 4 : 16);
  rows.push(['pycoder, its prose LoRA (r = 16, 7 projections × 6 layers)', res, lora / weightBytes]);
  lm.dispose();
}

{
  // Qwen2.5-0.5B's shapes with a random r = 16 LoRA on all 7 projections (f32 A and B, as PEFT writes them).
  const be = await createBackend('wasm', { threads: 1 });
  const ck = syntheticCheckpoint(writeSafetensors);
  const lm = await CausalLM.load(ck.files, { backend: be, weightDtype: 'bf16', maxLength: 256 });
  const c = QWEN25_05B, d = c.hidden_size, hd = c.head_dim, r = 16;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd, f = c.intermediate_size;
  const shapes = { 'self_attn.q_proj': [d, q], 'self_attn.k_proj': [d, kv], 'self_attn.v_proj': [d, kv], 'self_attn.o_proj': [q, d], 'mlp.gate_proj': [d, f], 'mlp.up_proj': [d, f], 'mlp.down_proj': [f, d] };
  let seed = 9;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.02;
  const tensors = {};
  const specs = [];
  for (let l = 0; l < c.num_hidden_layers; l++)
    for (const [name, [k, n]] of Object.entries(shapes)) {
      const p = `base_model.model.model.layers.${l}.${name}`;
      tensors[`${p}.lora_A.weight`] = { dtype: 'F32', shape: [r, k], data: Float32Array.from({ length: r * k }, rnd) };
      tensors[`${p}.lora_B.weight`] = { dtype: 'F32', shape: [n, r], data: Float32Array.from({ length: r * n }, rnd) };
      specs.push([k, n, r]);
    }
  const config = { peft_type: 'LORA', r, lora_alpha: 32, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], bias: 'none', fan_in_fan_out: false };
  const container = await LoRAContainer.fromPEFT(
    memoryFileSet({ 'adapter_config.json': new TextEncoder().encode(JSON.stringify(config)), 'adapter_model.safetensors': writeSafetensors(tensors, { format: 'pt' }) }),
  );
  container.apply(lm);
  const ids = Array.from({ length: 16 }, (_, i) => (i * 7919 + 13) % c.vocab_size);
  const res = await onOff(lm, container, ids, quick ? 5 : 17, quick ? 2 : 6);
  rows.push(["Qwen2.5-0.5B's shapes, a random LoRA (r = 16, 7 projections × 24 layers)", res, adapterBytes(specs) / ck.weightBytes]);
  lm.dispose();
}

console.log('| model (bf16 weights, one thread) | decode off, tokens/s | on | on ÷ off, time per token | adapter bytes ÷ weight bytes per step |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const [name, res, bytes] of rows)
  console.log(`| ${name} | ${res.off.toFixed(res.off < 100 ? 2 : 0)} | ${res.on.toFixed(res.on < 100 ? 2 : 0)} | **+${(100 * res.cost).toFixed(1)} %** | ${(100 * bytes).toFixed(1)} % |`);
console.log(
  `\nPer round the adapter on and off (order alternating), ${quick ? 'quick' : 'pycoder 16 rounds of 96 tokens, the Qwen shapes 6 of 16'}; the median of per-round ratios. ` +
    'A and B are f32 (as PEFT writes them), the base weights bf16: at decode every LoRA layer streams r·(k + n)·4 bytes next to its k·n·2, ' +
    'so a memory-bound step costs at least the last column more; the rest is the shrink and the epilogue as separate passes and, on small layers, the call overhead.',
);
process.exit(0);
