import { AdapterError } from '../errors.js';
import { writeSafetensors, type SafeDType, type TensorToWrite } from '../formats/safetensors.js';
import type { AdapterSpec } from '../adapter/spec.js';
import { fromF32, isFloatDType, tensorToF32 } from '../adapter/convert-f32.js';
import { IssueList } from '../adapter/issues.js';
import { MLX_DEFAULTS } from './config.js';
import { MLX_FILES } from './load.js';

/**
 * Writes a spec as mlx-lm's adapter folder: `adapter_config.json` + `adapters.safetensors` with
 * `<path>.lora_a [in,r]`, `<path>.lora_b [r,out]`, `<path>.m [out]`. MLX has one rank and one scale for all
 * modules and nothing but LoRA factors, so a spec with several ranks or scales, `lora_B` biases or
 * replacements cannot be written (AdapterError listing every reason).
 */
export function saveMLX(spec: AdapterSpec): Record<string, Uint8Array> {
  const issues = new IssueList('adapter cannot be written in the MLX format');
  const mods = spec.modules;
  const ranks = [...new Set(mods.map((m) => m.rank))];
  const scales = [...new Set(mods.map((m) => m.scale))];
  if (ranks.length > 1) issues.add('invalid_adapter', 'MLX adapters have one rank for every module', { expected: 'one rank', got: ranks });
  if (scales.length > 1) issues.add('invalid_adapter', 'MLX adapters have one scale for every module', { expected: 'one scale', got: scales });
  for (const m of mods) if (m.bias) issues.add('invalid_adapter', 'MLX LoRA layers have no lora_B bias', { module: m.path });
  for (const r of spec.replacements) issues.add('invalid_adapter', `MLX adapters cannot hold ${r.kind} replacements`, { module: r.path });
  if (!mods.length) issues.add('invalid_adapter', 'nothing to save', { expected: 'at least one LoRA module', got: 0 });
  const dora = mods.some((m) => m.kind === 'dora');
  if (dora && mods.some((m) => m.kind !== 'dora')) issues.add('invalid_adapter', 'MLX fine_tune_type is either lora or dora for all modules', { expected: 'all DoRA or none' });
  issues.throwIfAny('adapter');

  const base = spec.format === 'mlx' ? structuredClone({ ...spec.config }) : {};
  const lp = (base.lora_parameters as Record<string, unknown> | undefined) ?? {};
  const keys = spec.mlx?.keys ?? (lp.keys as string[] | undefined) ?? blockRelativeKeys(mods.map((m) => m.path));
  const config = {
    ...base,
    fine_tune_type: dora ? 'dora' : 'lora',
    num_layers: spec.mlx?.numLayers ?? (base.num_layers as number | undefined) ?? -1,
    lora_parameters: { ...lp, rank: ranks[0], scale: scales[0], dropout: (lp.dropout as number | undefined) ?? MLX_DEFAULTS.lora_parameters.dropout, keys },
  };

  const tensors: Record<string, TensorToWrite> = {};
  for (const m of mods) {
    const d: SafeDType = isFloatDType(m.dtype) ? m.dtype : 'F32';
    tensors[`${m.path}.lora_a`] = { dtype: d, shape: [m.in, m.rank], data: fromF32(d, tensorToF32(m.a, m.path), m.path) };
    tensors[`${m.path}.lora_b`] = { dtype: d, shape: [m.rank, m.out], data: fromF32(d, tensorToF32(m.b, m.path), m.path) };
    if (m.magnitude) tensors[`${m.path}.m`] = { dtype: d, shape: [m.out], data: fromF32(d, tensorToF32(m.magnitude, m.path), m.path) };
  }
  return {
    [MLX_FILES.config]: new TextEncoder().encode(JSON.stringify(config, null, 2) + '\n'),
    [MLX_FILES.weights]: writeSafetensors(tensors, { format: 'mlx' }),
  };
}

/** `model.layers.3.self_attn.q_proj` → `self_attn.q_proj` (mlx-lm's `lora_parameters.keys` are relative to a block). */
export function blockRelativeKeys(paths: readonly string[]): string[] {
  return [...new Set(paths.map((p) => p.replace(/^(?:.*\.)?(?:layers|h|block|blocks)\.\d+\./, '')))];
}
