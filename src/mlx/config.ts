import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { IssueList } from '../adapter/issues.js';

/**
 * `adapter_config.json` as mlx-lm (`mlx_lm/tuner`, `lora.py`) and mlx-swift-lm write it: the training
 * arguments, of which an adapter needs `fine_tune_type` ('lora' | 'dora'; 'full' holds whole weights and is
 * rejected), `num_layers` (the last N transformer blocks; -1 = all; older files say `lora_layers`) and
 * `lora_parameters` {rank, scale, dropout, keys}. Training keys (model, data, iters, …) are kept as they are.
 */

/** mlx-lm's defaults (`mlx_lm/lora.py` CONFIG_DEFAULTS). */
export const MLX_DEFAULTS = {
  fine_tune_type: 'lora',
  num_layers: 16,
  lora_parameters: { rank: 8, scale: 20.0, dropout: 0.0 },
} as const;

export const MlxLoraParametersSchema = z
  .object({
    rank: z.number().int().nullish().transform((v) => v ?? MLX_DEFAULTS.lora_parameters.rank),
    scale: z.number().finite().nullish().transform((v) => v ?? MLX_DEFAULTS.lora_parameters.scale),
    dropout: z.number().nullish().transform((v) => v ?? MLX_DEFAULTS.lora_parameters.dropout),
    keys: z.array(z.string()).nullish().transform((v) => v ?? undefined),
  })
  .loose();

export const MlxConfigSchema = z
  .object({
    fine_tune_type: z.string().nullish(),
    use_dora: z.boolean().nullish(),
    num_layers: z.number().int().nullish(),
    lora_layers: z.number().int().nullish(),
    lora_parameters: MlxLoraParametersSchema.nullish().transform((v) => v ?? MlxLoraParametersSchema.parse({})),
  })
  .loose();

export interface MlxConfig extends Record<string, unknown> {
  fine_tune_type: 'lora' | 'dora';
  num_layers: number;
  lora_parameters: { rank: number; scale: number; dropout: number; keys?: string[] } & Record<string, unknown>;
}

/** Validates an MLX adapter config; every problem is reported at once (ConfigError). */
export function parseMlxConfig(raw: unknown, file = 'adapter_config.json'): MlxConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('config_invalid', 'adapter config must be a JSON object', { file, expected: 'object', got: Array.isArray(raw) ? 'array' : raw === null ? 'null' : typeof raw });
  }
  const issues = new IssueList(`invalid ${file}`);
  const parsed = MlxConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) issues.add('config_invalid', i.message, { file, key: i.path.map(String).join('.') || undefined });
    issues.throwIfAny('config');
  }
  const c = parsed.data!;
  // Older mlx-lm wrote `use_dora: true` instead of fine_tune_type.
  const type = c.fine_tune_type ?? (c.use_dora ? 'dora' : MLX_DEFAULTS.fine_tune_type);
  if (type === 'full') {
    issues.add('unsupported_fine_tune', 'a full fine-tune holds whole weights, not an adapter', { file, key: 'fine_tune_type', expected: 'lora or dora', got: type });
  } else if (type !== 'lora' && type !== 'dora') {
    issues.add('config_invalid', 'unknown fine_tune_type', { file, key: 'fine_tune_type', expected: 'lora or dora', got: type });
  }
  if (c.lora_parameters.rank <= 0) issues.add('bad_rank', 'LoRA rank must be positive', { file, key: 'lora_parameters.rank', expected: 'rank ≥ 1', got: c.lora_parameters.rank });
  issues.throwIfAny('config');
  const { lora_layers, use_dora, ...rest } = c;
  void use_dora;
  return {
    ...rest,
    fine_tune_type: type as 'lora' | 'dora',
    num_layers: c.num_layers ?? lora_layers ?? MLX_DEFAULTS.num_layers,
    lora_parameters: c.lora_parameters,
  } as MlxConfig;
}

/** Whether a parsed adapter_config.json looks like MLX's (and not PEFT's). */
export function looksLikeMlx(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null) return false;
  const o = raw as Record<string, unknown>;
  return !('peft_type' in o) && ('lora_parameters' in o || 'fine_tune_type' in o || 'num_layers' in o || 'lora_layers' in o);
}
