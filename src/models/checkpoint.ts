import type { DType } from '../dtype.js';
import { IoError, ModelError } from '../errors.js';
import { SafetensorsReader } from '../formats/safetensors.js';
import { toFileSet, type AdapterSource, type FileSet } from '../io/fileset.js';
import { throwIfAborted } from '../io/source.js';
import { parseStrictJson } from '../formats/json.js';
import type { LoadLimits } from '../limits.js';
import { Tensor } from '../tensor.js';

/** Progress of a model load: bytes of tensor data read so far out of the checkpoint's total. */
export interface LoadProgress {
  readonly loaded: number;
  readonly total: number;
  /** The file being read. */
  readonly file: string;
}

export interface CheckpointOptions {
  signal?: AbortSignal;
  onProgress?: (p: LoadProgress) => void;
  /** Caps of this load (docs/limits.md); a model load raises `maxJsonBytes` to 64 MiB by default for big tokenizer.json files. */
  limits?: Partial<LoadLimits>;
  /** fetch for URL sources (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/** JSON files read with the strict, depth-capped parser (configs); the tokenizer files are large and flat: JSON.parse. */
const STRICT = new Set(['config.json', 'model.safetensors.index.json', 'generation_config.json', 'tokenizer_config.json']);

/** A checkpoint folder as read: its config.json, its tensors (on-disk dtype, host memory) and the other JSON files. */
export interface Checkpoint {
  readonly files: FileSet;
  readonly config: Record<string, unknown> | undefined;
  readonly tensors: Map<string, Tensor>;
  /** `tokenizer.json` and `tokenizer_config.json`, when present. */
  readonly tokenizer?: { json: Record<string, unknown>; config: Record<string, unknown> };
  readonly generationConfig?: Record<string, unknown>;
}

/** safetensors dtypes a layer can hold, and ours for each; others (I64 buffers, BOOL masks) are skipped. */
const LOADABLE: Partial<Record<string, DType>> = { F64: 'f64', F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U32: 'u32', I8: 'i8', U8: 'u8' };

/** Parses a JSON file of the set, or undefined when absent (a typed error naming the file when it is not JSON). */
export async function readJson(files: FileSet, name: string, signal?: AbortSignal, optional = false): Promise<Record<string, unknown> | undefined> {
  let bytes: Uint8Array | undefined;
  try {
    bytes = await files.readAll(name, { signal });
  } catch (e) {
    // An optional file behind a single-page-app fallback is simply absent.
    if (optional && e instanceof IoError && e.code === 'html_response') return undefined;
    throw e;
  }
  if (!bytes) return undefined;
  let v: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    // Configs are validated by the strict parser first (depth cap, no repeated keys, no lone surrogates), then read as plain numbers.
    if (STRICT.has(name)) parseStrictJson(text, { maxDepth: files.limits?.maxJsonDepth ?? 127 });
    v = JSON.parse(text);
  } catch (e) {
    throw new ModelError('config_invalid', 'not valid JSON', { file: `${files.name.replace(/\/$/, "")}/${name}`, expected: 'a JSON object', got: bytes.byteLength > 0 ? `${bytes.byteLength} bytes of non-JSON` : 'an empty file', cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ModelError('config_invalid', 'not a JSON object', { file: `${files.name.replace(/\/$/, "")}/${name}`, expected: 'a JSON object', got: Array.isArray(v) ? 'an array' : typeof v });
  return v as Record<string, unknown>;
}

/**
 * Reads a HF checkpoint folder from any source fromPEFT takes (directory, URL, in-memory files, a
 * FileSystemDirectoryHandle): `config.json`, `model.safetensors` or the shards of `model.safetensors.index.json`,
 * the tokenizer files when present. Headers of every shard are read first, so progress knows the total.
 */
export async function readCheckpoint(source: AdapterSource, opts: CheckpointOptions = {}): Promise<Checkpoint> {
  const { signal, onProgress } = opts;
  const files = await toFileSet(source, { fetch: opts.fetch, limits: { maxJsonBytes: 64 * 2 ** 20, ...opts.limits } });
  const [config, index, tokJson, tokConfig, generationConfig] = await Promise.all([
    readJson(files, 'config.json', signal),
    readJson(files, 'model.safetensors.index.json', signal, true),
    readJson(files, 'tokenizer.json', signal, true),
    readJson(files, 'tokenizer_config.json', signal, true),
    readJson(files, 'generation_config.json', signal, true),
  ]);
  let shards = ['model.safetensors'];
  if (index) {
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || !Object.values(map).every((v) => typeof v === 'string' && !v.includes('/') && !v.includes('..'))) {
      throw new ModelError('config_invalid', 'model.safetensors.index.json has no usable weight_map', { file: 'model.safetensors.index.json', key: 'weight_map', expected: '{ tensor: shard file name }', got: typeof map });
    }
    shards = [...new Set(Object.values(map as Record<string, string>))];
  }
  const readers: SafetensorsReader[] = [];
  for (const shard of shards) {
    const src = await files.open(shard, { signal });
    if (!src) throw new IoError('not_found', 'model weights missing', { file: shard, where: files.name, expected: shards });
    readers.push(await SafetensorsReader.open(src, { file: shard, signal }));
  }
  let total = 0;
  for (const r of readers) for (const info of r.tensors.values()) total += info.end - info.begin;
  let loaded = 0;
  const tensors = new Map<string, Tensor>();
  for (const r of readers) {
    for (const [name, info] of r.tensors) {
      throwIfAborted(signal, r.file);
      const dtype = LOADABLE[info.dtype];
      if (dtype) tensors.set(name, Tensor.from((await r.typed(name, signal)) as never, info.shape, dtype));
      loaded += info.end - info.begin;
      onProgress?.({ loaded, total, file: r.file });
    }
  }
  return { files, config, tensors, tokenizer: tokJson ? { json: tokJson, config: tokConfig ?? {} } : undefined, generationConfig };
}
