import type { Backend } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { Embedding } from '../nn/embedding.js';
import { Linear, type LayerOptions } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { RMSNorm } from '../nn/norm.js';
import type { Tensor } from '../tensor.js';
import { type Architecture, type Decoder, type DecoderForwardOptions, addAndNorm, child, finalLogits, ropedAttention } from './architecture.js';
import { checkHeads, type ConfigReader, type DecoderConfig } from './config.js';
import type { KVCache } from './kv-cache.js';
import { RopeTable } from './rope-table.js';
import { readRope, type RopeSpec } from './rope.js';
import type { ExpectedTensor, WeightBag } from './weights.js';

/** A Llama-family config: the decoder shape plus RoPE and which projections carry a bias. */
export interface LlamaConfig extends DecoderConfig {
  readonly rope: RopeSpec;
  /** q/k/v carry a bias (Qwen2 always; Llama with `attention_bias`). */
  readonly qkvBias: boolean;
  /** o_proj carries a bias (Llama `attention_bias`). */
  readonly oBias: boolean;
  /** gate/up/down carry a bias (Llama `mlp_bias`). */
  readonly mlpBias: boolean;
}

/** What differs between Llama, Qwen2 and Mistral; each has its own file that registers one of these. */
export interface LlamaVariant {
  readonly modelTypes: readonly string[];
  /** Biases from the config (Qwen2: q/k/v always). */
  biases(r: ConfigReader): { qkv: boolean; o: boolean; mlp: boolean };
}

/** Reads a Llama-family config.json (`hidden_size`, `num_attention_heads`, `rope_parameters` …). */
export function parseLlamaConfig(r: ConfigReader, variant: LlamaVariant): LlamaConfig {
  const hidden = r.int('hidden_size');
  const heads = r.int('num_attention_heads');
  const act = r.str('hidden_act', 'silu');
  if (act !== 'silu') r.oneOf('hidden_act', ['silu']);
  let maxPositions = r.int('max_position_embeddings', 2048);
  // Sliding-window attention equals full attention while the sequence fits the window: cap the context there.
  const window = r.raw.sliding_window;
  if (typeof window === 'number' && window > 0 && r.raw.use_sliding_window !== false) maxPositions = Math.min(maxPositions, window);
  const b = variant.biases(r);
  const c: LlamaConfig = {
    modelType: r.str('model_type'),
    vocab: r.int('vocab_size'),
    hidden,
    layers: r.int('num_hidden_layers'),
    heads,
    kvHeads: r.int('num_key_value_heads', heads),
    headDim: r.int('head_dim', hidden / heads),
    ffn: r.int('intermediate_size'),
    eps: r.num('rms_norm_eps', 1e-6),
    maxPositions,
    tied: r.bool('tie_word_embeddings', false),
    eos: r.ids('eos_token_id'),
    bos: r.ids('bos_token_id')[0],
    rope: readRope(r, maxPositions),
    qkvBias: b.qkv,
    oBias: b.o,
    mlpBias: b.mlp,
  };
  checkHeads(c, r);
  return c;
}

/** Every tensor a Llama-family checkpoint must hold, with its shape. */
export function llamaTensors(c: LlamaConfig): ExpectedTensor[] {
  const { hidden: d, heads, kvHeads, headDim: hd, ffn, vocab } = c;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, d] }, { name: 'model.norm.weight', shape: [d] }];
  if (!c.tied) out.push({ name: 'lm_head.weight', shape: [vocab, d] });
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const proj = (name: string, n: number, k: number, bias: boolean) => {
      out.push({ name: `${p}.${name}.weight`, shape: [n, k] });
      if (bias) out.push({ name: `${p}.${name}.bias`, shape: [n] });
    };
    proj('self_attn.q_proj', heads * hd, d, c.qkvBias);
    proj('self_attn.k_proj', kvHeads * hd, d, c.qkvBias);
    proj('self_attn.v_proj', kvHeads * hd, d, c.qkvBias);
    proj('self_attn.o_proj', d, heads * hd, c.oBias);
    proj('mlp.gate_proj', ffn, d, c.mlpBias);
    proj('mlp.up_proj', ffn, d, c.mlpBias);
    proj('mlp.down_proj', d, ffn, c.mlpBias);
    out.push({ name: `${p}.input_layernorm.weight`, shape: [d] }, { name: `${p}.post_attention_layernorm.weight`, shape: [d] });
  }
  return out;
}

type Forwardable = Module & { forward(x: Tensor): Tensor };

/**
 * The Llama decoder (also Qwen2 and Mistral): per layer
 *   h = x + o_proj(attn(rope(q_proj(n₁)), rope(k_proj(n₁)), v_proj(n₁))),  n₁ = RMSNorm(x)
 *   x' = h + down_proj(silu(gate_proj(n₂)) ⊙ up_proj(n₂)),                 n₂ = RMSNorm(h)
 * then logits = lm_head(RMSNorm(x)). Causal GQA attention over the KV cache, scale 1/√hd.
 */
export class LlamaDecoder implements Decoder {
  readonly backend: Backend;
  private readonly model: Module;
  private readonly blocks: { attn: Module; mlp: Module; block: Module }[] = [];
  private readonly rope: RopeTable;

  constructor(
    private readonly root: Module,
    readonly config: LlamaConfig,
    w: WeightBag,
    opts: LayerOptions,
  ) {
    const c = config;
    const backend = (this.backend = opts.backend ?? defaultBackend());
    const lin = (name: string, bias: boolean) => new Linear(w.get(`${name}.weight`), bias ? w.get(`${name}.bias`) : undefined, { ...opts, backend });
    const model = (this.model = new Module());
    const embed = new Embedding(w.get('model.embed_tokens.weight'), { ...opts, backend });
    model.set('embed_tokens', embed);
    const layers = new Module();
    model.set('layers', layers);
    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}`;
      const attn = new Module()
        .set('q_proj', lin(`${p}.self_attn.q_proj`, c.qkvBias))
        .set('k_proj', lin(`${p}.self_attn.k_proj`, c.qkvBias))
        .set('v_proj', lin(`${p}.self_attn.v_proj`, c.qkvBias))
        .set('o_proj', lin(`${p}.self_attn.o_proj`, c.oBias));
      const mlp = new Module()
        .set('gate_proj', lin(`${p}.mlp.gate_proj`, c.mlpBias))
        .set('up_proj', lin(`${p}.mlp.up_proj`, c.mlpBias))
        .set('down_proj', lin(`${p}.mlp.down_proj`, c.mlpBias));
      const block = new Module()
        .set('self_attn', attn)
        .set('mlp', mlp)
        .set('input_layernorm', new RMSNorm(w.get(`${p}.input_layernorm.weight`), c.eps, { backend }))
        .set('post_attention_layernorm', new RMSNorm(w.get(`${p}.post_attention_layernorm.weight`), c.eps, { backend }));
      layers.set(String(l), block);
      this.blocks.push({ attn, mlp, block });
    }
    model.set('norm', new RMSNorm(w.get('model.norm.weight'), c.eps, { backend }));
    root.set('model', model);
    // Tied: the head reads the embedding's resident table (no second copy).
    root.set('lm_head', c.tied ? new Linear(embed.weight, undefined, { ...opts, backend }) : lin('lm_head', false));
    this.rope = new RopeTable(backend, c.rope, c.headDim, c.maxPositions);
  }

  forward(ids: Tensor, start: number, cache: KVCache, opts: DecoderForwardOptions = {}): Tensor {
    const { backend: b, config: c } = this;
    const m = ids.size;
    const layers = Math.min(opts.layers ?? c.layers, c.layers);
    cache.reserve(start, m);
    const { cos, sin } = this.rope.upTo(start + m);
    const shape = { heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim };
    const scale = 1 / Math.sqrt(c.headDim);
    const x = child<Forwardable>(this.model, 'embed_tokens').forward(ids);
    // Each residual step is fused with the norm after it (the next layer's input norm, the final norm): one op
    // where the backend has addRmsNorm. n₁ of layer 0 is the only norm on its own.
    let h = layers > 0 ? child<Forwardable>(this.blocks[0].block, 'input_layernorm').forward(x) : undefined;
    let down: Tensor | undefined;
    for (let l = 0; l < layers; l++) {
      const { attn, mlp, block } = this.blocks[l];
      const q = child<Forwardable>(attn, 'q_proj').forward(h!);
      const k = child<Forwardable>(attn, 'k_proj').forward(h!);
      const v = child<Forwardable>(attn, 'v_proj').forward(h!);
      h!.dispose();
      const a = ropedAttention(b, cache, l, q, k, v, { cos, sin }, start, shape, scale);
      const o = child<Forwardable>(attn, 'o_proj').forward(a);
      a.dispose();
      const h2 = addAndNorm(b, x, o, child(block, 'post_attention_layernorm'));
      const g = child<Forwardable>(mlp, 'gate_proj').forward(h2);
      const u = child<Forwardable>(mlp, 'up_proj').forward(h2);
      h2.dispose();
      const s = b.swiglu(g, u);
      g.dispose();
      u.dispose();
      down = child<Forwardable>(mlp, 'down_proj').forward(s);
      s.dispose();
      if (l + 1 < layers) {
        h = addAndNorm(b, x, down, child(this.blocks[l + 1].block, 'input_layernorm'));
        down = undefined;
      }
    }
    cache.commit(start + m);
    return finalLogits(b, child(this.model, 'norm'), child(this.root, 'lm_head'), x, opts.lastOnly, down);
  }
}

/** Builds the Architecture of one Llama variant (llama.ts, qwen2.ts, mistral.ts each register one). */
export function llamaArchitecture(variant: LlamaVariant): Architecture<LlamaConfig> {
  return {
    modelTypes: variant.modelTypes,
    parseConfig: (r) => parseLlamaConfig(r, variant),
    tensors: llamaTensors,
    create: (root, c, w, opts) => new LlamaDecoder(root, c, w, opts),
  };
}

/** Llama: biases only with `attention_bias` (q/k/v/o) and `mlp_bias`. */
export const llama = llamaArchitecture({
  modelTypes: ['llama'],
  biases: (r) => {
    const attn = r.bool('attention_bias', false);
    return { qkv: attn, o: attn, mlp: r.bool('mlp_bias', false) };
  },
});
