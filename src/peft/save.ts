import { AdapterError } from '../errors.js';
import { writeSafetensors, type SafeDType, type TensorToWrite } from '../formats/safetensors.js';
import type { AdapterModule, AdapterReplacement, AdapterSpec } from '../adapter/spec.js';
import type { Tensor } from '../tensor.js';
import { fromF32, isFloatDType, tensorToF32, transpose } from '../adapter/convert-f32.js';
import { PEFT_PREFIX } from './keys.js';
import { PEFT_FILES, tokenIndicesFor } from './load.js';
import { alphaFor, rankFor, scaleOf } from './scaling.js';

/**
 * Writes a spec as peft's `save_pretrained` would: `adapter_config.json` + `adapter_model.safetensors` with
 * `base_model.model.` keys and peft's layouts (lora_A [r,in] = aᵀ, lora_B [out,r] = bᵀ), each factor in its
 * on-disk dtype (f16/bf16 narrow back bit-exactly, via the wasm kernels). The config keeps what the spec's
 * config says and adds `rank_pattern`/`alpha_pattern` entries only where a module would otherwise load with
 * another rank or scale, so load → save → load gives the same spec.
 */

/** peft's LoraConfig defaults, for specs that did not come from a PEFT config (MLX). */
const PEFT_DEFAULTS = {
  peft_type: 'LORA',
  task_type: null,
  base_model_name_or_path: null,
  revision: null,
  inference_mode: true,
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  use_rslora: false,
  target_modules: null as string[] | null,
  exclude_modules: null,
  layers_to_transform: null,
  layers_pattern: null,
  rank_pattern: {} as Record<string, number>,
  alpha_pattern: {} as Record<string, number>,
  fan_in_fan_out: false,
  bias: 'none',
  lora_bias: false,
  modules_to_save: null as string[] | null,
  use_dora: false,
  init_lora_weights: true,
  trainable_token_indices: null as unknown,
};

export function savePEFT(spec: AdapterSpec): Record<string, Uint8Array> {
  const config = peftConfigFor(spec);
  const tensors: Record<string, TensorToWrite> = {};
  for (const m of spec.modules) writeModule(tensors, m);
  for (const r of spec.replacements) writeReplacement(tensors, r);
  return {
    [PEFT_FILES.config]: new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n'),
    [PEFT_FILES.safetensors]: writeSafetensors(tensors, { format: 'pt' }),
  };
}

const mostCommon = (xs: readonly number[], fallback: number): number => {
  const n = new Map<number, number>();
  for (const x of xs) n.set(x, (n.get(x) ?? 0) + 1);
  let best = fallback;
  let count = 0;
  for (const [x, c] of n) if (c > count) [best, count] = [x, c];
  return best;
};

/** The adapter_config.json object for `spec`. */
export function peftConfigFor(spec: AdapterSpec): Record<string, unknown> {
  const fromPeft = spec.format === 'peft';
  const c: Record<string, unknown> = fromPeft ? structuredClone({ ...spec.config }) : { ...structuredClone(PEFT_DEFAULTS) };
  const mods = spec.modules;
  if (!fromPeft) {
    c.r = mostCommon(mods.map((m) => m.rank), 8);
    c.lora_alpha = mostCommon(mods.map((m) => m.alpha), 8);
    c.target_modules = [...new Set(mods.map((m) => m.path.split('.').pop()!))];
    c.fan_in_fan_out = mods.some((m) => m.fanInFanOut);
    if (typeof spec.config.model === 'string') c.base_model_name_or_path = spec.config.model;
  }
  const dora = mods.filter((m) => m.kind === 'dora');
  const linear = mods.filter((m) => m.kind === 'linear');
  if (dora.length && linear.length) {
    throw new AdapterError('invalid_adapter', 'a PEFT config cannot mix DoRA and plain LoRA linear modules (use_dora is global)', {
      module: linear[0]!.path,
      expected: 'all DoRA or none',
      got: `${dora.length} DoRA, ${linear.length} plain`,
    });
  }
  c.use_dora = dora.length > 0 || (fromPeft && c.use_dora === true && !linear.length);
  if (mods.some((m) => m.bias)) c.lora_bias = true;

  // Per-module rank and alpha: add exact-path pattern entries (first, so they win) only where needed.
  const rslora = c.use_rslora === true;
  const cfg = { r: c.r as number, lora_alpha: c.lora_alpha as number, rank_pattern: { ...(c.rank_pattern as Record<string, number>) }, alpha_pattern: { ...(c.alpha_pattern as Record<string, number>) } };
  const rankAdd: Record<string, number> = {};
  const alphaAdd: Record<string, number> = {};
  for (const m of mods) {
    if (rankFor(cfg, m.path) !== m.rank) rankAdd[m.path] = m.rank;
    // The alpha that gives this module's scale: α = s·r (s·√r with rsLoRA); m.alpha when it agrees.
    const alpha = scaleOf(m.alpha, m.rank, rslora) === m.scale ? m.alpha : rslora ? m.scale * Math.sqrt(m.rank) : m.scale * m.rank;
    if (alphaFor(cfg, m.path) !== alpha) alphaAdd[m.path] = alpha;
  }
  c.rank_pattern = { ...rankAdd, ...cfg.rank_pattern };
  c.alpha_pattern = { ...alphaAdd, ...cfg.alpha_pattern };

  // Replacements: the config must name them so the loader (and peft) can tell what they are.
  const mts = [...((c.modules_to_save as string[] | null) ?? [])];
  const tti: Record<string, number[]> = {};
  for (const r of spec.replacements) {
    if (r.kind === 'modules_to_save' && !mts.some((e) => r.path.endsWith(e))) mts.push(r.path);
    if (r.kind === 'bias' && (c.bias === 'none' || c.bias == null)) c.bias = 'all';
    if (r.kind === 'trainable_tokens') tti[r.path] = [...(r.tensors.indices!.data as Int32Array)];
  }
  if (mts.length) c.modules_to_save = mts;
  const current = { trainable_token_indices: (c.trainable_token_indices ?? null) as never };
  if (Object.entries(tti).some(([p, idx]) => !sameList(tokenIndicesFor(current, p), idx))) c.trainable_token_indices = tti;
  return c;
}

function sameList(a: readonly number[] | undefined, b: readonly number[]): boolean {
  return !!a && a.length === b.length && a.every((x, i) => x === b[i]);
}

const diskDType = (d: string): SafeDType => (isFloatDType(d) ? d : 'F32');

function floatTensor(t: Tensor, dtype: SafeDType, shape: readonly number[], where: string, transposeFrom?: [number, number]): TensorToWrite {
  let data = tensorToF32(t, where);
  if (transposeFrom) data = transpose(data, transposeFrom[0], transposeFrom[1]);
  return { dtype, shape, data: fromF32(dtype, data, where) };
}

function writeModule(out: Record<string, TensorToWrite>, m: AdapterModule): void {
  const key = `${PEFT_PREFIX}${m.path}`;
  const d = diskDType(m.dtype);
  const [aName, bName] = m.kind === 'embedding' ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_A.weight', 'lora_B.weight'];
  // a [in,r] → lora_A [r,in]; b [r,out] → lora_B [out,r].
  out[`${key}.${aName}`] = floatTensor(m.a, d, [m.rank, m.in], m.path, [m.in, m.rank]);
  out[`${key}.${bName}`] = floatTensor(m.b, d, [m.out, m.rank], m.path, [m.rank, m.out]);
  if (m.bias) out[`${key}.lora_B.bias`] = floatTensor(m.bias, d, [m.out], m.path);
  if (m.magnitude) out[`${key}.lora_magnitude_vector`] = floatTensor(m.magnitude, d, [m.out], m.path);
}

function writeReplacement(out: Record<string, TensorToWrite>, r: AdapterReplacement): void {
  const key = `${PEFT_PREFIX}${r.path}`;
  const d = diskDType(r.dtype);
  const put = (name: string, t: Tensor) => {
    out[name] = t.dtype === 'f32' ? floatTensor(t, d, t.shape, r.path) : { dtype: 'I32', shape: t.shape, data: t.data as Int32Array };
  };
  if (r.kind === 'trainable_tokens') put(`${key}.token_adapter.trainable_tokens_delta`, r.tensors.delta!);
  else for (const [param, t] of Object.entries(r.tensors)) put(`${key}.${param}`, t);
}
