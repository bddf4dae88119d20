import { init } from '../backends/index.js';
import { ApplyError, IoError } from '../errors.js';
import { SafetensorsReader, writeSafetensors, type SafeDType, type TensorToWrite } from '../formats/safetensors.js';
import { toFileSet, type AdapterSource } from '../io/fileset.js';
import { LoRAContainer } from '../adapter/container.js';
import { Conv1D } from '../nn/conv1d.js';
import { Embedding } from '../nn/embedding.js';
import { fromF64, toF64 } from '../nn/float.js';
import { Linear } from '../nn/linear.js';
import { loadModel } from '../models/load-model.js';
import type { Tensor } from '../tensor.js';
import type { ProgressFactory } from './progress.js';

/**
 * `peftjs merge --model DIR --adapter DIR --out DIR`: what PEFT's `merge_and_unload()` + `save_pretrained()` or
 * llama.cpp's `export-lora` produce, a plain HF checkpoint with the adapter folded into its weights. Each adapted
 * layer's merged weight comes from `LoRAContainer.fuse`'s formula (float64, LoRA, DoRA, lora_B bias, replacements)
 * and is stored in the checkpoint's own dtype and layout (Linear [out, in], GPT-2 Conv1D [in, out], Embedding
 * [vocab, dim]); every other tensor is copied byte for byte. Shards when the total exceeds `maxShardBytes`
 * (`model-00001-of-0000N.safetensors` + `model.safetensors.index.json`, as transformers writes them), and
 * `config.json` and the tokenizer files are copied alongside.
 */
export interface MergeOptions {
  model: AdapterSource;
  adapter: AdapterSource;
  /** Output directory (created); existing files of the same names are replaced. */
  out: string;
  /** Largest shard, in bytes; default 5 GiB (transformers' `max_shard_size="5GB"`). */
  maxShardBytes?: number;
  /** Reporters for the model load, the adapter load and the writing (`progressReporter` in the CLI). */
  progress?: ProgressFactory;
}

export interface MergeResult {
  /** Paths of the layers whose weights changed. */
  merged: string[];
  /** Files written, relative to `out`. */
  files: string[];
  tensors: number;
  bytes: number;
}

/** Files besides the weights that make a checkpoint usable; copied when the model folder has them. */
export const CHECKPOINT_SIDE_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'chat_template.jinja',
] as const;

const DTYPE_OF: Partial<Record<SafeDType, Tensor['dtype']>> = { F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** `5GB`, `500MB`, `64KiB`, `1e9` → bytes (decimal units as transformers reads them; KiB/MiB/GiB binary). */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmg]i?b?|b)?\s*$/i.exec(s);
  const unit = (m?.[2] ?? 'b').toLowerCase().replace(/b$/, '');
  const mult: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 };
  const n = m ? Number(m[1]) * (mult[unit] ?? NaN) : NaN;
  if (!Number.isFinite(n) || n < 1) throw new ApplyError('bad_option', 'not a size', { expected: 'a size such as 5GB, 500MB or 1048576', got: s, where: '--max-shard-size' });
  return Math.floor(n);
}

export async function mergeCheckpoint(opts: MergeOptions): Promise<MergeResult> {
  const maxShard = opts.maxShardBytes ?? 5 * 1024 ** 3;
  const files = await toFileSet(opts.model);
  const readJson = async (name: string) => {
    const b = await files.readAll(name);
    return b && (JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>);
  };
  const index = await readJson('model.safetensors.index.json');
  const shardNames = index ? [...new Set(Object.values(index.weight_map as Record<string, string>))] : ['model.safetensors'];
  const readers: SafetensorsReader[] = [];
  for (const shard of shardNames) {
    const src = await files.open(shard);
    if (!src) throw new IoError('not_found', 'model file missing', { file: shard, where: files.name, expected: shardNames });
    readers.push(await SafetensorsReader.open(src, { file: shard }));
  }
  // A bf16 checkpoint is kept as bf16 in the layers, so the merged weight is rounded to bf16 once, from float64.
  const dtypes = new Set(readers.flatMap((r) => [...r.tensors.values()].map((t) => t.dtype)).filter((d) => DTYPE_OF[d]));
  await init();
  const model = await loadModel(opts.model, { ...(dtypes.size === 1 && dtypes.has('BF16') ? { weightDtype: 'bf16' } : {}), onProgress: opts.progress?.('model') });
  const container = await LoRAContainer.load(opts.adapter, { onProgress: opts.progress?.('adapter') });
  const applied = container.apply(model);

  // The merged tensors, by checkpoint name, in the checkpoint's dtype.
  const replaced = new Map<string, TensorToWrite>();
  const infoOf = (name: string) => readers.map((r) => r.tensors.get(name)).find((t) => t);
  const store = (name: string, t: Tensor | undefined) => {
    if (!t) return;
    const want: SafeDType = infoOf(name)?.dtype ?? 'F32';
    const dtype = DTYPE_OF[want] ?? 'f32';
    const out = fromF64(toF64(t), t.shape, dtype);
    const data = out.data as ArrayBufferView;
    replaced.set(name, { dtype: DTYPE_OF[want] ? want : 'F32', shape: [...t.shape], data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  };
  for (const { path, layer } of applied) {
    const merged = layer.fused();
    if (merged instanceof Linear || merged instanceof Conv1D) {
      store(`${path}.weight`, merged.weight);
      store(`${path}.bias`, merged.bias);
    } else if (merged instanceof Embedding) {
      store(`${path}.weight`, merged.weight);
    } else {
      throw new ApplyError('not_wrappable', 'merging into a quantized layer would change the checkpoint format', {
        module: path,
        expected: 'Linear, Conv1D or Embedding base layers',
        got: merged.constructor.name,
      });
    }
  }

  // Every tensor in checkpoint order, the merged ones in place of the originals; new ones (a bias the base
  // lacked) after their layer's weight.
  const names: string[] = [];
  for (const r of readers) for (const name of r.tensors.keys()) names.push(name);
  for (const name of replaced.keys()) {
    if (!infoOf(name)) names.splice(names.indexOf(name.replace(/\.bias$/, '.weight')) + 1, 0, name);
  }
  const shards: { names: string[]; bytes: number }[] = [];
  let total = 0;
  for (const name of names) {
    const info = infoOf(name);
    const bytes = replaced.get(name)?.data.byteLength ?? info!.end - info!.begin;
    const last = shards[shards.length - 1];
    if (!last || (last.bytes + bytes > maxShard && last.names.length)) shards.push({ names: [name], bytes });
    else {
      last.names.push(name);
      last.bytes += bytes;
    }
    total += bytes;
  }

  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  await fs.mkdir(opts.out, { recursive: true });
  const written: string[] = [];
  const fileName = (i: number) => (shards.length === 1 ? 'model.safetensors' : `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const weightMap: Record<string, string> = {};
  const onWrite = opts.progress?.('write');
  let done = 0;
  for (const [i, shard] of shards.entries()) {
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of shard.names) {
      const rep = replaced.get(name);
      if (rep) tensors[name] = rep;
      else {
        const r = readers.find((x) => x.tensors.has(name))!;
        const t = r.tensors.get(name)!;
        tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: await r.bytes(name) };
      }
      weightMap[name] = fileName(i);
      done += tensors[name].data.byteLength;
      onWrite?.({ loaded: done, total, file: fileName(i) });
    }
    await fs.writeFile(join(opts.out, fileName(i)), writeSafetensors(tensors, { format: 'pt' }));
    written.push(fileName(i));
  }
  if (shards.length > 1) {
    const idx = { metadata: { total_size: total }, weight_map: weightMap };
    await fs.writeFile(join(opts.out, 'model.safetensors.index.json'), JSON.stringify(idx, null, 2) + '\n');
    written.push('model.safetensors.index.json');
  }
  for (const side of CHECKPOINT_SIDE_FILES) {
    const bytes = await files.readAll(side);
    if (!bytes) continue;
    await fs.writeFile(join(opts.out, side), bytes);
    written.push(side);
  }
  return { merged: applied.map((a) => a.path), files: written, tensors: names.length, bytes: total };
}
