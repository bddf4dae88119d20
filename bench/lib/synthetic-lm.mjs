// A synthetic checkpoint with Qwen2.5-0.5B's shapes, made in memory at bench time: config.json + model.safetensors
// (random bf16 weights, written with the library's writeSafetensors), ready for `CausalLM.load(files)`.
// The values are random (the model writes noise); what matters is the bytes a decode step streams.

/** Qwen2.5-0.5B's decoder shape (config.json of Qwen/Qwen2.5-0.5B). */
export const QWEN25_05B = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_size: 896,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  head_dim: 64,
  intermediate_size: 4864,
  vocab_size: 151936,
  tie_word_embeddings: true,
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  max_position_embeddings: 32768,
  bos_token_id: 151643,
  eos_token_id: 151643,
  torch_dtype: 'bfloat16',
};

/**
 * 256 bf16 bit patterns of N(0, σ²) at evenly spaced quantiles (so a byte of xorshift picks a normal-ish value);
 * bf16 = the top 16 bits of the f32, rounded to nearest even.
 */
function normalTable(sigma) {
  const f = new Float32Array(256);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < 256; i++) {
    const p = (i + 0.5) / 256;
    f[i] = sigma * Math.SQRT2 * erfinv(2 * p - 1);
  }
  return Uint16Array.from(u, (x) => ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff);
}

/** erf⁻¹ by Giles' single-precision approximation (2010): ample for a table of random weights. */
export function erfinv(y) {
  let w = -Math.log((1 - y) * (1 + y));
  let p;
  if (w < 5) {
    w -= 2.5;
    p = 2.81022636e-8;
    for (const c of [3.43273939e-7, -3.5233877e-6, -4.39150654e-6, 0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]) p = c + p * w;
  } else {
    w = Math.sqrt(w) - 3;
    p = -0.000200214257;
    for (const c of [0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682]) p = c + p * w;
  }
  return p * y;
}

/** `n` random bf16 values (bit patterns) from the table, xorshift32 seeded. */
function randomBf16(n, seed, table) {
  const out = new Uint16Array(n);
  let s = seed >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = table[s & 255];
    out[i + 1] = table[(s >>> 8) & 255];
    out[i + 2] = table[(s >>> 16) & 255];
    out[i + 3] = table[s >>> 24];
  }
  for (; i < n; i++) out[i] = table[(s = (s * 1664525 + 1013904223) >>> 0) >>> 24];
  return out;
}

const ONE_BF16 = 0x3f80;

/**
 * The checkpoint's tensors (HF names, bf16), and how many bytes of them one decode step reads: every projection,
 * every norm and bias, and the whole embedding table once (the tied head multiplies by all of it; the embedding
 * lookup itself reads one row, counted too).
 */
export function syntheticTensors(cfg = QWEN25_05B, { sigma = 0.02 } = {}) {
  const { hidden_size: d, num_hidden_layers: L, num_attention_heads: H, num_key_value_heads: KV, head_dim: hd, intermediate_size: ffn, vocab_size: V } = cfg;
  const table = normalTable(sigma);
  const t = {};
  let seed = 1;
  const rand = (name, shape) => (t[name] = { dtype: 'BF16', shape, data: randomBf16(shape.reduce((a, b) => a * b, 1), seed++ * 2654435761, table) });
  const ones = (name, n) => (t[name] = { dtype: 'BF16', shape: [n], data: new Uint16Array(n).fill(ONE_BF16) });
  const zeros = (name, n) => (t[name] = { dtype: 'BF16', shape: [n], data: new Uint16Array(n) });
  rand('model.embed_tokens.weight', [V, d]);
  ones('model.norm.weight', d);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    ones(`${p}.input_layernorm.weight`, d);
    ones(`${p}.post_attention_layernorm.weight`, d);
    rand(`${p}.self_attn.q_proj.weight`, [H * hd, d]);
    rand(`${p}.self_attn.k_proj.weight`, [KV * hd, d]);
    rand(`${p}.self_attn.v_proj.weight`, [KV * hd, d]);
    zeros(`${p}.self_attn.q_proj.bias`, H * hd);
    zeros(`${p}.self_attn.k_proj.bias`, KV * hd);
    zeros(`${p}.self_attn.v_proj.bias`, KV * hd);
    rand(`${p}.self_attn.o_proj.weight`, [d, H * hd]);
    rand(`${p}.mlp.gate_proj.weight`, [ffn, d]);
    rand(`${p}.mlp.up_proj.weight`, [ffn, d]);
    rand(`${p}.mlp.down_proj.weight`, [d, ffn]);
  }
  let params = 0;
  for (const x of Object.values(t)) params += x.data.length;
  return { tensors: t, params };
}

/**
 * In-memory files for `CausalLM.load`: { 'config.json', 'model.safetensors' }, plus the parameter count and the
 * bf16 weight bytes (2 per parameter; the tied embedding counted once).
 */
export function syntheticCheckpoint(writeSafetensors, cfg = QWEN25_05B) {
  const { tensors, params } = syntheticTensors(cfg);
  const files = {
    'config.json': new TextEncoder().encode(JSON.stringify(cfg)),
    'model.safetensors': writeSafetensors(tensors, { format: 'pt' }),
  };
  return { files, params, weightBytes: params * 2 };
}
