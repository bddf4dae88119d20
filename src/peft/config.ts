import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { IssueList } from '../adapter/issues.js';
import { PeftMatcher } from './scaling.js';

/**
 * `adapter_config.json` of a PEFT LoRA adapter (peft `LoraConfig` + `PeftConfigMixin`), validated with zod.
 * Missing booleans mean false, `lora_alpha` may be a float, unknown keys are kept and reported as warnings.
 * What we cannot run with PEFT's exact semantics is rejected with a ConfigError naming the reason.
 * Source: huggingface/peft `src/peft/tuners/lora/config.py`.
 */

/** `init_lora_weights` values that rewrite the base weights: the adapter alone is not the whole model. */
export const BASE_REWRITING_INITS = ['pissa', 'olora', 'corda', 'loftq'] as const;

const flag = z.boolean().nullish().transform((v) => v ?? false);
const strings = z.array(z.string());
const targetList = z.union([strings, z.string()]).nullish().transform((v) => v ?? null);

/** The schema. Field order follows peft's LoraConfig; defaults are peft's. */
export const PeftConfigSchema = z.object({
  peft_type: z.string(),
  task_type: z.string().nullish(),
  base_model_name_or_path: z.string().nullish(),
  revision: z.string().nullish(),
  peft_version: z.string().nullish(),
  inference_mode: flag,
  auto_mapping: z.unknown().optional(),
  // LoraConfig's dataclass default: a config without "r" gets rank 8.
  r: z.number().int().optional().transform((v) => v ?? 8),
  lora_alpha: z.number().finite().nullish().transform((v) => v ?? 8),
  lora_dropout: z.number().nullish().transform((v) => v ?? 0),
  use_rslora: flag,
  target_modules: targetList,
  exclude_modules: targetList,
  layers_to_transform: z.union([z.number().int(), z.array(z.number().int())]).nullish().transform((v) => v ?? null),
  layers_pattern: z.union([z.string(), strings]).nullish().transform((v) => v ?? null),
  rank_pattern: z.record(z.string(), z.number().int()).nullish().transform((v) => v ?? {}),
  alpha_pattern: z.record(z.string(), z.number().finite()).nullish().transform((v) => v ?? {}),
  fan_in_fan_out: flag,
  bias: z.enum(['none', 'all', 'lora_only']).nullish().transform((v) => v ?? 'none'),
  lora_bias: flag,
  modules_to_save: strings.nullish().transform((v) => v ?? null),
  use_dora: flag,
  init_lora_weights: z.union([z.boolean(), z.string()]).nullish().transform((v) => v ?? true),
  target_parameters: strings.nullish().transform((v) => v ?? null),
  trainable_token_indices: z.union([z.array(z.number().int()), z.record(z.string(), z.array(z.number().int()))]).nullish().transform((v) => v ?? null),
  layer_replication: z.array(z.array(z.number().int())).nullish().transform((v) => v ?? null),
  // Fields that change the forward pass in ways we do not implement; checked in `parsePeftConfig`.
  use_qalora: flag,
  alora_invocation_tokens: z.array(z.number().int()).nullish().transform((v) => v ?? null),
  arrow_config: z.unknown().optional(),
  // PEFT 0.2-era MergedLinear (`enable_lora`) and its `merge_weights` switch.
  enable_lora: z.array(z.boolean()).nullish().transform((v) => v ?? null),
  merge_weights: flag,
});

export type PeftConfig = z.output<typeof PeftConfigSchema> & Record<string, unknown>;

/** Keys peft writes that carry nothing for inference here: known, so not reported as unknown. */
const KNOWN_EXTRA_KEYS = new Set([
  'megatron_config',
  'megatron_core',
  'loftq_config',
  'eva_config',
  'corda_config',
  'qalora_group_size',
  'runtime_config',
  'ensure_weight_tying',
  'lora_ga_config',
]);

/** peft's `TaskType` values (`utils/peft_types.py`); `PeftConfigMixin.__post_init__` refuses others. */
export const TASK_TYPES = ['SEQ_CLS', 'SEQ_2_SEQ_LM', 'CAUSAL_LM', 'TOKEN_CLS', 'QUESTION_ANS', 'FEATURE_EXTRACTION'] as const;

/** Python truthiness of a config value (`if self.layers_pattern and not self.layers_to_transform`). */
const truthy = (v: unknown) => !(v === null || v === undefined || v === false || v === 0 || v === '' || (Array.isArray(v) && v.length === 0));

/** Schema keys not filled in with their default when the file lacks them. */
const ONLY_IF_PRESENT = new Set(['enable_lora', 'merge_weights', 'use_qalora', 'alora_invocation_tokens', 'arrow_config', 'target_parameters', 'trainable_token_indices', 'layer_replication', 'auto_mapping']);

export interface ParsedPeftConfig {
  config: PeftConfig;
  warnings: string[];
}

/**
 * Validates a parsed `adapter_config.json`. Collects every problem, then throws one ConfigError
 * (`issues[]` lists them all); returns the config with defaults filled in and unknown keys kept.
 */
export function parsePeftConfig(raw: unknown, file = 'adapter_config.json'): ParsedPeftConfig {
  const issues = new IssueList(`invalid ${file}`);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('config_invalid', 'adapter config must be a JSON object', { file, expected: 'object', got: Array.isArray(raw) ? 'array' : raw === null ? 'null' : typeof raw });
  }
  const obj = raw as Record<string, unknown>;

  // Wrong adapter family first: an IA3 or prompt-tuning config fails the LoRA schema for reasons that do not matter.
  if (typeof obj.peft_type === 'string' && obj.peft_type !== 'LORA') {
    throw new ConfigError('unsupported_peft_type', 'only LoRA adapters are supported', { file, key: 'peft_type', expected: 'LORA', got: obj.peft_type });
  }

  const parsed = PeftConfigSchema.safeParse(obj);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const key = i.path.map(String).join('.');
      issues.add('config_invalid', i.message, { file, key: key || undefined, got: i.path.length ? pick(obj, i.path) : undefined });
    }
    issues.throwIfAny('config');
  }
  const c = parsed.data!;

  if (c.r <= 0) issues.add('bad_rank', 'LoRA rank must be positive', { file, key: 'r', expected: 'r ≥ 1', got: c.r });
  for (const [k, v] of Object.entries(c.rank_pattern)) {
    if (v <= 0) issues.add('bad_rank', 'LoRA rank must be positive', { file, key: `rank_pattern.${k}`, expected: 'r ≥ 1', got: v });
  }
  const init = c.init_lora_weights;
  if (typeof init === 'string' && BASE_REWRITING_INITS.some((p) => init.toLowerCase().startsWith(p))) {
    issues.add('unsupported_init', 'this initialisation rewrites the base weights, so the adapter cannot be applied unmerged to the original model', {
      file,
      key: 'init_lora_weights',
      expected: 'true, false, "gaussian", "eva" or "orthogonal" (convert PiSSA/OLoRA/CorDA/LoftQ adapters with path_initial_model_for_weight_conversion)',
      got: init,
    });
  }
  if (c.layer_replication && c.layer_replication.length) {
    issues.add('unsupported_layer_replication', 'layer_replication duplicates base layers, which is not supported', { file, key: 'layer_replication', expected: null, got: c.layer_replication });
  }
  if (c.enable_lora) {
    issues.add('unsupported_merged_linear', 'PEFT 0.2-era MergedLinear (enable_lora) is not supported', { file, key: 'enable_lora', expected: null, got: c.enable_lora });
  }
  if (c.target_parameters && c.target_parameters.length) {
    issues.add('unsupported_feature', 'LoRA on nn.Parameter (target_parameters) is not supported', { file, key: 'target_parameters', expected: null, got: c.target_parameters });
  }
  if (c.use_qalora) issues.add('unsupported_feature', 'QALoRA (use_qalora) is not supported', { file, key: 'use_qalora', expected: false, got: true });
  if (c.alora_invocation_tokens) {
    issues.add('unsupported_feature', 'activated LoRA (alora_invocation_tokens) is not supported', { file, key: 'alora_invocation_tokens', expected: null, got: c.alora_invocation_tokens });
  }
  if (c.arrow_config != null) issues.add('unsupported_feature', 'Arrow routing (arrow_config) is not supported', { file, key: 'arrow_config', expected: null, got: 'an object' });

  // Combinations PEFT refuses (PeftConfigMixin.__post_init__ and LoraConfig.__post_init__, peft/tuners/lora/config.py).
  if (c.task_type != null && !(TASK_TYPES as readonly string[]).includes(c.task_type)) {
    issues.add('config_invalid', 'invalid task type', { file, key: 'task_type', expected: TASK_TYPES.join(' | '), got: c.task_type });
  }
  if (typeof c.target_modules === 'string' && c.layers_to_transform !== null) {
    issues.add('config_invalid', '`layers_to_transform` cannot be used when `target_modules` is a str', { file, key: 'layers_to_transform', expected: 'null with a regex target_modules', got: c.layers_to_transform });
  }
  if (typeof c.target_modules === 'string' && c.layers_pattern !== null) {
    issues.add('config_invalid', '`layers_pattern` cannot be used when `target_modules` is a str', { file, key: 'layers_pattern', expected: 'null with a regex target_modules', got: c.layers_pattern });
  }
  if (truthy(c.layers_pattern) && !truthy(c.layers_to_transform)) {
    issues.add('config_invalid', 'when `layers_pattern` is specified, `layers_to_transform` must also be specified', { file, key: 'layers_to_transform', expected: 'a layer index or a non-empty list', got: c.layers_to_transform });
  }
  if (c.lora_bias && c.init_lora_weights !== true && c.init_lora_weights !== false) {
    issues.add('config_invalid', 'lora_bias=True is only supported with init_lora_weights=True or False', { file, key: 'init_lora_weights', expected: 'true or false', got: c.init_lora_weights });
  }
  if (c.lora_bias && c.use_dora) {
    issues.add('config_invalid', 'lora_bias=True is not supported for DoRA', { file, key: 'lora_bias', expected: 'false with use_dora', got: true });
  }
  issues.throwIfAny('config');

  // Every pattern compiles as Python would compile it (or the construct is named), within the documented limits.
  for (const p of new PeftMatcher(c).problems) issues.add(p.code, p.problem, { file, key: p.key, got: p.got, detail: p.detail });
  issues.throwIfAny('config');

  // zod strips unknown keys: put them back (in the file's order), and say which ones we did not expect.
  const known = new Set(Object.keys(PeftConfigSchema.shape));
  const warnings: string[] = [];
  const config: Record<string, unknown> = {};
  for (const k of Object.keys(obj)) {
    config[k] = k in c ? (c as Record<string, unknown>)[k] : obj[k];
    if (!known.has(k) && !KNOWN_EXTRA_KEYS.has(k)) warnings.push(`unknown key in ${file} kept as is: ${k}`);
  }
  // Defaults fill in the rest, except switches of old or rare features: a saved config should not grow keys
  // that older peft versions would refuse.
  for (const [k, v] of Object.entries(c)) if (!(k in config) && v !== undefined && !ONLY_IF_PRESENT.has(k)) config[k] = v;
  return { config: config as PeftConfig, warnings };
}

function pick(obj: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = obj;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}
