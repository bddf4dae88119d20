// Builds prefill.onnx and decode.onnx for the pycoder Llama (standard ONNX ops, opset 17, f32 initializers; BF16
// weights widened exactly to f32): the graph onnxruntime-web runs, for timing it side by side with CausalLM on the
// same weights (bench/model.mjs). Copied from the project's shared bench-model kit (../shared/bench-model/
// build-onnx.mjs, 2026-12-01) so the repo stands alone; changes: the default model is the embedded models/pycoder,
// the default output a git-ignored scratch folder (bench/.scratch/onnx), and `buildGraphs` is what bench/model.mjs calls.
//   node lib/build-onnx.mjs [--model DIR] [--out DIR]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as X from './onnxw.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_MODEL = path.resolve(here, '../../models/pycoder');
export const DEFAULT_OUT = path.resolve(here, '../.scratch/onnx');

export function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const raw = buf.subarray(base + a, base + b);
    let data;
    if (t.dtype === 'BF16') {
      const u16 = new Uint16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const u32 = new Uint32Array(u16.length);
      for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16; // exact widening
      data = new Float32Array(u32.buffer);
    } else if (t.dtype === 'F32') {
      data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    } else throw new Error(`dtype ${t.dtype}`);
    out[name] = { shape: t.shape, data };
  }
  return out;
}

function transpose2(w, rows, cols) { // [rows, cols] -> [cols, rows]
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

// HF default RoPE, computed in f32 like transformers: inv_freq = 1/θ^(arange(0,d,2)/d); emb = cat(f, f).
function ropeTables(maxPos, headDim, theta) {
  const F = Math.fround, half = headDim / 2;
  const inv = new Float32Array(half);
  for (let j = 0; j < half; j++) inv[j] = F(1 / F(Math.pow(theta, F(F(2 * j) / headDim))));
  const cos = new Float32Array(maxPos * headDim), sin = new Float32Array(maxPos * headDim);
  for (let p = 0; p < maxPos; p++) for (let j = 0; j < half; j++) {
    const f = F(F(p) * inv[j]);
    const c = F(Math.cos(f)), s = F(Math.sin(f));
    cos[p * headDim + j] = cos[p * headDim + j + half] = c;
    sin[p * headDim + j] = sin[p * headDim + j + half] = s;
  }
  return { cos, sin };
}

export function buildGraphs(modelDir = DEFAULT_MODEL, { maxPos } = {}) {
  const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, 'base/config.json'), 'utf8'));
  const W = readSafetensors(path.join(modelDir, 'base/model.safetensors'));
  const H = cfg.hidden_size, NH = cfg.num_attention_heads, KV = cfg.num_key_value_heads;
  const D = cfg.head_dim ?? H / NH, I = cfg.intermediate_size, V = cfg.vocab_size, L = cfg.num_hidden_layers;
  const eps = cfg.rms_norm_eps, theta = cfg.rope_parameters?.rope_theta ?? cfg.rope_theta ?? 10000;
  if ((cfg.rope_parameters?.rope_type ?? 'default') !== 'default') throw new Error('only default RoPE');
  if (!cfg.tie_word_embeddings) throw new Error('expects tied embeddings');
  maxPos ??= cfg.max_position_embeddings;
  const REP = NH / KV;
  const { cos, sin } = ropeTables(maxPos, D, theta);

  // Shared weight initializers (both graphs): name -> TensorProto bytes
  const init = [];
  const w = (name) => W[name].data;
  const addT = (name, dims, arr) => { init.push([name, X.tensor(name, dims, arr)]); return name; };
  addT('embed', [V, H], w('model.embed_tokens.weight'));
  addT('lm_head_t', [H, V], transpose2(w('model.embed_tokens.weight'), V, H));
  addT('final_norm_w', [H], w('model.norm.weight'));
  addT('rope_cos', [maxPos, D], cos);
  addT('rope_sin', [maxPos, D], sin);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    addT(`l${l}_ln1`, [H], w(p + 'input_layernorm.weight'));
    addT(`l${l}_ln2`, [H], w(p + 'post_attention_layernorm.weight'));
    addT(`l${l}_q_t`, [H, NH * D], transpose2(w(p + 'self_attn.q_proj.weight'), NH * D, H));
    addT(`l${l}_k_t`, [H, KV * D], transpose2(w(p + 'self_attn.k_proj.weight'), KV * D, H));
    addT(`l${l}_v_t`, [H, KV * D], transpose2(w(p + 'self_attn.v_proj.weight'), KV * D, H));
    addT(`l${l}_o_t`, [NH * D, H], transpose2(w(p + 'self_attn.o_proj.weight'), H, NH * D));
    addT(`l${l}_gate_t`, [H, I], transpose2(w(p + 'mlp.gate_proj.weight'), I, H));
    addT(`l${l}_up_t`, [H, I], transpose2(w(p + 'mlp.up_proj.weight'), I, H));
    addT(`l${l}_down_t`, [I, H], transpose2(w(p + 'mlp.down_proj.weight'), H, I));
  }
  // small constants
  const small = (t) => init.push([t.name, t.bytes]);
  for (const [name, vals, dims, ty] of [
    ['c_eps', [eps], [], 'f'], ['c_zero', [0], [], 'f'], ['c_two', [2], [], 'f'],
    ['c_scale', [1 / Math.sqrt(D)], [], 'f'], ['c_neg', [-3.4028234663852886e38], [], 'f'],
    ['shp_q', [1, -1, NH, D]], ['shp_kv', [1, -1, KV, D]], ['shp_h', [1, -1, NH * D]],
    ['shp_rep', [1, KV, REP, 1, D]], ['shp_gqa', [1, NH, -1, D]],
    ['ax0', [0]], ['ax1', [1]], ['ax2', [2]], ['zero1', [0]], ['one1', [1]],
    ['half_lo', [0]], ['half_mid', [D / 2]], ['half_hi', [D]], ['axm1', [-1]],
  ]) small({ name, bytes: ty === 'f' ? X.f32(name, vals, dims) : X.i64(name, vals, dims ?? [vals.length]) });

  const nodeCount = {};
  function build(kind) {
    const nodes = [];
    let uid = 0;
    const used = new Set();
    const op = (type, ins, attrs = [], nOut = 1) => {
      ins.forEach((n) => used.add(n));
      const outs = Array.from({ length: nOut }, (_, i) => `${type}_${uid}${nOut > 1 ? '_' + i : ''}`);
      nodes.push(X.node(type, ins, outs, `n${uid++}`, attrs));
      return nOut === 1 ? outs[0] : outs;
    };
    const named = (type, ins, out, attrs = []) => { ins.forEach((n) => used.add(n)); nodes.push(X.node(type, ins, [out], `n${uid++}`, attrs)); return out; };
    const rms = (x, wName) => {
      const ms = op('ReduceMean', [op('Pow', [x, 'c_two'])], [X.attrInts('axes', [-1]), X.attrInt('keepdims', 1)]);
      const r = op('Sqrt', [op('Add', [ms, 'c_eps'])]);
      return op('Mul', [wName, op('Div', [x, r])]);
    };
    const rope = (x, cosT, sinT) => { // x [1, h, S, D]; cos/sin [S, D]
      const x1 = op('Slice', [x, 'half_lo', 'half_mid', 'axm1']);
      const x2 = op('Slice', [x, 'half_mid', 'half_hi', 'axm1']);
      const rot = op('Concat', [op('Neg', [x2]), x1], [X.attrInt('axis', -1)]);
      return op('Add', [op('Mul', [x, cosT]), op('Mul', [rot, sinT])]);
    };
    const inputs = [X.valueInfo('input_ids', [1, kind === 'prefill' ? 'S' : 1], X.DT.int64)];
    const outputs = [];
    let cosT, sinT, mask = null;
    if (kind === 'prefill') {
      // positions 0..S-1: slice the tables; causal mask from Range/Less (upper triangle -> -max)
      const S1 = op('Slice', [op('Shape', ['input_ids']), 'one1', op('Add', ['one1', 'one1']), 'zero1']); // [S]
      cosT = op('Slice', ['rope_cos', 'zero1', S1, 'zero1']);
      sinT = op('Slice', ['rope_sin', 'zero1', S1, 'zero1']);
      const S = op('Squeeze', [S1, 'zero1']);
      const r = op('Range', [op('Squeeze', ['zero1', 'zero1']), S, op('Squeeze', ['one1', 'zero1'])]); // int64 [S]
      const rowI = op('Unsqueeze', [r, 'ax1']); // [S,1]
      const colJ = op('Unsqueeze', [r, 'ax0']); // [1,S]
      const future = op('Greater', [colJ, rowI]); // [S,S] j > i
      mask = op('Where', [future, 'c_neg', 'c_zero']); // [S,S] additive causal mask
    } else {
      inputs.push(X.valueInfo('position', [1], X.DT.int64));
      cosT = op('Gather', ['rope_cos', 'position'], [X.attrInt('axis', 0)]); // [1, D]
      sinT = op('Gather', ['rope_sin', 'position'], [X.attrInt('axis', 0)]);
    }
    let x = op('Gather', ['embed', 'input_ids'], [X.attrInt('axis', 0)]); // [1,S,H]
    for (let l = 0; l < L; l++) {
      const h = rms(x, `l${l}_ln1`);
      const heads = (wt, shp, nh) => op('Transpose', [op('Reshape', [op('MatMul', [h, wt]), shp])], [X.attrInts('perm', [0, 2, 1, 3])]);
      const q = rope(heads(`l${l}_q_t`, 'shp_q'), cosT, sinT); // [1,NH,S,D]
      const kNew = rope(heads(`l${l}_k_t`, 'shp_kv'), cosT, sinT); // [1,KV,S,D]
      const vNew = heads(`l${l}_v_t`, 'shp_kv');
      let k, v;
      if (kind === 'prefill') {
        k = named('Identity', [kNew], `present.${l}.key`);
        v = named('Identity', [vNew], `present.${l}.value`);
      } else {
        inputs.push(X.valueInfo(`past.${l}.key`, [1, KV, 'P', D]), X.valueInfo(`past.${l}.value`, [1, KV, 'P', D]));
        k = named('Concat', [`past.${l}.key`, kNew], `present.${l}.key`, [X.attrInt('axis', 2)]);
        v = named('Concat', [`past.${l}.value`, vNew], `present.${l}.value`, [X.attrInt('axis', 2)]);
      }
      outputs.push(X.valueInfo(`present.${l}.key`, [1, KV, kind === 'prefill' ? 'S' : 'P_plus_1', D]),
        X.valueInfo(`present.${l}.value`, [1, KV, kind === 'prefill' ? 'S' : 'P_plus_1', D]));
      // GQA (repeat_kv): [1,KV,T,D] -> [1,KV,1,T,D] -> Expand [1,KV,REP,T,D] -> [1,NH,T,D]
      const rep = (t) => op('Reshape', [op('Expand', [op('Unsqueeze', [t, 'ax2']), 'shp_rep']), 'shp_gqa']);
      const kT = op('Transpose', [rep(k)], [X.attrInts('perm', [0, 1, 3, 2])]); // [1,NH,D,T]
      let sc = op('Mul', [op('MatMul', [q, kT]), 'c_scale']); // [1,NH,S,T]
      if (mask) sc = op('Add', [sc, mask]);
      const pr = op('Softmax', [sc], [X.attrInt('axis', -1)]);
      const ctx = op('MatMul', [pr, rep(v)]); // [1,NH,S,D]
      const merged = op('Reshape', [op('Transpose', [ctx], [X.attrInts('perm', [0, 2, 1, 3])]), 'shp_h']);
      x = op('Add', [x, op('MatMul', [merged, `l${l}_o_t`])]);
      const h2 = rms(x, `l${l}_ln2`);
      const g = op('MatMul', [h2, `l${l}_gate_t`]);
      const u = op('MatMul', [h2, `l${l}_up_t`]);
      const act = op('Mul', [op('Mul', [g, op('Sigmoid', [g])]), u]);
      x = op('Add', [x, op('MatMul', [act, `l${l}_down_t`])]);
    }
    named('MatMul', [rms(x, 'final_norm_w'), 'lm_head_t'], 'logits');
    outputs.unshift(X.valueInfo('logits', [1, kind === 'prefill' ? 'S' : 1, V]));
    nodeCount[kind] = nodes.length;
    return new Uint8Array(X.model(X.graph(`pycoder_${kind}`, nodes, init.filter(([n]) => used.has(n)).map(([, b]) => b), inputs, outputs)));
  }
  return { cfg, prefill: build('prefill'), decode: build('decode'), nodeCount };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const args = process.argv.slice(2);
  const get = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
  const modelDir = get('--model', DEFAULT_MODEL), outDir = get('--out', DEFAULT_OUT);
  fs.mkdirSync(outDir, { recursive: true });
  const t0 = performance.now();
  const { prefill, decode, nodeCount } = buildGraphs(modelDir);
  fs.writeFileSync(path.join(outDir, 'prefill.onnx'), prefill);
  fs.writeFileSync(path.join(outDir, 'decode.onnx'), decode);
  console.log(`wrote ${outDir}/prefill.onnx (${(prefill.length / 1e6).toFixed(1)} MB), decode.onnx (${(decode.length / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1e3).toFixed(1)} s; nodes ${JSON.stringify(nodeCount)}`);
}
