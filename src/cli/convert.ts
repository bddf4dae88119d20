import { init } from '../backends/index.js';
import { ApplyError } from '../errors.js';
import type { AdapterSource } from '../io/fileset.js';
import { LoRAContainer } from '../adapter/container.js';
import type { ProgressFactory } from './progress.js';

/**
 * `peftjs convert <adapter> --to peft|mlx --out DIR`: rewrites an adapter in the other format (either format in,
 * detected). The factors keep their dtypes; PEFT's per-module ranks and scales become `rank_pattern`/`alpha_pattern`
 * entries, while MLX holds one rank and one scale for all modules, no lora_B biases and no replacements: an adapter
 * outside that fails with one AdapterError listing every reason, and nothing is written.
 */
export const CONVERT_TARGETS = ['peft', 'mlx'] as const;
export type ConvertTarget = (typeof CONVERT_TARGETS)[number];

export async function convertAdapter(source: AdapterSource, to: string, out: string, opts: { progress?: ProgressFactory } = {}): Promise<{ format: ConvertTarget; files: string[]; modules: number }> {
  if (!(CONVERT_TARGETS as readonly string[]).includes(to)) {
    throw new ApplyError('bad_option', 'unknown target format', { expected: CONVERT_TARGETS.join(' or '), got: to, where: '--to' });
  }
  await init();
  const container = await LoRAContainer.load(source, { onProgress: opts.progress?.('adapter') });
  const files = to === 'mlx' ? container.saveMLX() : container.savePEFT();
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  await fs.mkdir(out, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await fs.writeFile(join(out, name), bytes);
  return { format: to as ConvertTarget, files: Object.keys(files), modules: container.spec.modules.length };
}
