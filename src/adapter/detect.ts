import { ConfigError } from '../errors.js';
import { toFileSet, type AdapterSource } from '../io/fileset.js';
import type { AdapterSpec } from './spec.js';
import { looksLikeMlx } from '../mlx/config.js';
import { loadMLXFrom } from '../mlx/load.js';
import { loadPEFTFrom, readConfigJson, type LoadOptions } from '../peft/load.js';

/**
 * Loads an adapter folder in either format, told apart by `adapter_config.json`: PEFT's carries `peft_type`,
 * MLX's carries `lora_parameters` / `fine_tune_type` / `num_layers`. Anything else is ConfigError 'unknown_format'.
 */
export async function loadAdapter(source: AdapterSource, opts: LoadOptions = {}): Promise<AdapterSpec> {
  const files = await toFileSet(source, { fetch: opts.fetch });
  const raw = await readConfigJson(files, 'adapter_config.json', opts);
  const format = detectFormat(raw);
  if (format === 'peft') return loadPEFTFrom(files, raw, opts);
  if (format === 'mlx') return loadMLXFrom(files, raw, opts);
  throw new ConfigError('unknown_format', 'adapter_config.json is neither a PEFT nor an MLX adapter config', {
    file: 'adapter_config.json',
    expected: 'peft_type (PEFT) or lora_parameters (MLX)',
    got: raw && typeof raw === 'object' ? Object.keys(raw).slice(0, 8) : typeof raw,
  });
}

/** Which format a parsed adapter_config.json belongs to. */
export function detectFormat(raw: unknown): 'peft' | 'mlx' | undefined {
  if (raw && typeof raw === 'object' && 'peft_type' in raw) return 'peft';
  return looksLikeMlx(raw) ? 'mlx' : undefined;
}
