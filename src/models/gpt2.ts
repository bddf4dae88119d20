import type { Backend } from '../backends/backend.js';
import { defaultBackend } from '../backends/index.js';
import { Conv1D } from '../nn/conv1d.js';
import { Embedding } from '../nn/embedding.js';
import { Linear, type LayerOptions } from '../nn/linear.js';
import { Module } from '../nn/module.js';
import { LayerNorm } from '../nn/norm.js';
import { Tensor } from '../tensor.js';
import { type Architecture, type Decoder, type DecoderForwardOptions, addAndNorm, child, finalLogits, fusedQkvAttention } from './architecture.js';
import { type ConfigReader, type DecoderConfig } from './config.js';
import type { KVCache } from './kv-cache.js';
import type { ExpectedTensor, WeightBag } from './weights.js';

/** GPT-2's config: learned positions, LayerNorm, GELU (tanh), and its attention-scaling switches. */
export interface Gpt2Config extends DecoderConfig {
  /** `scale_attn_weights`: scores ÷ √hd. */
  readonly scaleByHeadDim: boolean;
  /** `scale_attn_by_inverse_layer_idx`: scores ÷ (layer + 1). */
  readonly scaleByLayer: boolean;
}

function parseGpt2Config(r: ConfigReader): Gpt2Config {
  const hidden = r.int('n_embd');
  const heads = r.int('n_head');
  r.oneOf('activation_function', ['gelu_new', 'gelu_pytorch_tanh'], 'gelu_new');
  return {
    modelType: r.str('model_type'),
    vocab: r.int('vocab_size'),
    hidden,
    layers: r.int('n_layer'),
    heads,
    kvHeads: heads,
    headDim: hidden / heads,
    ffn: r.has('n_inner') ? r.int('n_inner') : 4 * hidden,
    eps: r.num('layer_norm_epsilon', 1e-5),
    maxPositions: r.int('n_positions', 1024),
    tied: r.bool('tie_word_embeddings', true),
    eos: r.ids('eos_token_id'),
    bos: r.ids('bos_token_id')[0],
    scaleByHeadDim: r.bool('scale_attn_weights', true),
    scaleByLayer: r.bool('scale_attn_by_inverse_layer_idx', false),
  };
}

function gpt2Tensors(c: Gpt2Config): ExpectedTensor[] {
  const { hidden: d, ffn, vocab } = c;
  const out: ExpectedTensor[] = [
    { name: 'transformer.wte.weight', shape: [vocab, d] },
    { name: 'transformer.wpe.weight', shape: [c.maxPositions, d] },
    { name: 'transformer.ln_f.weight', shape: [d] },
    { name: 'transformer.ln_f.bias', shape: [d] },
  ];
  if (!c.tied) out.push({ name: 'lm_head.weight', shape: [vocab, d] });
  for (let l = 0; l < c.layers; l++) {
    const p = `transformer.h.${l}`;
    // Conv1D weights are [in, out].
    const conv = (name: string, k: number, n: number) => out.push({ name: `${p}.${name}.weight`, shape: [k, n] }, { name: `${p}.${name}.bias`, shape: [n] });
    conv('attn.c_attn', d, 3 * d);
    conv('attn.c_proj', d, d);
    conv('mlp.c_fc', d, ffn);
    conv('mlp.c_proj', ffn, d);
    for (const ln of ['ln_1', 'ln_2']) out.push({ name: `${p}.${ln}.weight`, shape: [d] }, { name: `${p}.${ln}.bias`, shape: [d] });
  }
  return out;
}

type Forwardable = Module & { forward(x: Tensor): Tensor };

/**
 * GPT-2: x = wte[ids] + wpe[positions]; per layer
 *   h = x + c_proj(attn(split(c_attn(LN₁(x)))));   x' = h + c_proj(gelu_tanh(c_fc(LN₂(h))))
 * then logits = lm_head(LN_f(x)) with the head tied to wte. Conv1D layers (W [in,out]) as PEFT's fan_in_fan_out expects.
 */
class Gpt2Decoder implements Decoder {
  readonly backend: Backend;
  private readonly tf: Module;
  private readonly blocks: { attn: Module; mlp: Module; block: Module }[] = [];

  constructor(
    private readonly root: Module,
    readonly config: Gpt2Config,
    w: WeightBag,
    opts: LayerOptions,
  ) {
    const c = config;
    const backend = (this.backend = opts.backend ?? defaultBackend());
    const conv = (name: string) => new Conv1D(w.get(`${name}.weight`), w.get(`${name}.bias`), { ...opts, backend });
    const ln = (name: string) => new LayerNorm(w.get(`${name}.weight`), w.get(`${name}.bias`), c.eps, { backend });
    const tf = (this.tf = new Module());
    const wte = new Embedding(w.get('transformer.wte.weight'), { ...opts, backend });
    tf.set('wte', wte).set('wpe', new Embedding(w.get('transformer.wpe.weight'), { ...opts, backend }));
    const h = new Module();
    tf.set('h', h);
    for (let l = 0; l < c.layers; l++) {
      const p = `transformer.h.${l}`;
      const attn = new Module().set('c_attn', conv(`${p}.attn.c_attn`)).set('c_proj', conv(`${p}.attn.c_proj`));
      const mlp = new Module().set('c_fc', conv(`${p}.mlp.c_fc`)).set('c_proj', conv(`${p}.mlp.c_proj`));
      const block = new Module().set('ln_1', ln(`${p}.ln_1`)).set('attn', attn).set('ln_2', ln(`${p}.ln_2`)).set('mlp', mlp);
      h.set(String(l), block);
      this.blocks.push({ attn, mlp, block });
    }
    tf.set('ln_f', ln('transformer.ln_f'));
    root.set('transformer', tf);
    root.set('lm_head', c.tied ? new Linear(wte.weight, undefined, { ...opts, backend }) : new Linear(w.get('lm_head.weight'), undefined, { ...opts, backend }));
  }

  forward(ids: Tensor, start: number, cache: KVCache, opts: DecoderForwardOptions = {}): Tensor {
    const { backend: b, config: c } = this;
    const m = ids.size;
    const layers = Math.min(opts.layers ?? c.layers, c.layers);
    cache.reserve(start, m);
    const shape = { heads: c.heads, kvHeads: c.heads, headDim: c.headDim };
    const x = child<Forwardable>(this.tf, 'wte').forward(ids);
    const positions = new Int32Array(m);
    for (let i = 0; i < m; i++) positions[i] = start + i;
    const pe = child<Forwardable>(this.tf, 'wpe').forward(Tensor.from(positions, [m], 'i32'));
    b.addInPlace(x, pe);
    pe.dispose();
    // Each residual step is fused with the LayerNorm after it (ln_2, the next layer's ln_1, ln_f): one op where the
    // backend has addLayerNorm. Layer 0's ln_1 is the only norm on its own.
    let h = layers > 0 ? child<Forwardable>(this.blocks[0].block, 'ln_1').forward(x) : undefined;
    let out: Tensor | undefined;
    for (let l = 0; l < layers; l++) {
      const { attn, mlp, block } = this.blocks[l];
      const scale = (c.scaleByHeadDim ? 1 / Math.sqrt(c.headDim) : 1) / (c.scaleByLayer ? l + 1 : 1);
      const qkv = child<Forwardable>(attn, 'c_attn').forward(h!);
      h!.dispose();
      const a = fusedQkvAttention(b, cache, l, qkv, start, shape, scale);
      const o = child<Forwardable>(attn, 'c_proj').forward(a);
      a.dispose();
      const h2 = addAndNorm(b, x, o, child(block, 'ln_2'));
      const f = child<Forwardable>(mlp, 'c_fc').forward(h2);
      h2.dispose();
      const g = b.geluTanh(f);
      f.dispose();
      out = child<Forwardable>(mlp, 'c_proj').forward(g);
      g.dispose();
      if (l + 1 < layers) {
        h = addAndNorm(b, x, out, child(this.blocks[l + 1].block, 'ln_1'));
        out = undefined;
      }
    }
    cache.commit(start + m);
    return finalLogits(b, child(this.tf, 'ln_f'), child(this.root, 'lm_head'), x, opts.lastOnly, out);
  }
}

export const gpt2: Architecture<Gpt2Config> = {
  modelTypes: ['gpt2'],
  parseConfig: parseGpt2Config,
  tensors: gpt2Tensors,
  create: (root, c, w, opts) => new Gpt2Decoder(root, c, w, opts),
};
