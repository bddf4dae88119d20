import { AdapterError, ConfigError } from '../errors.js';
import { parseStrictJson } from '../formats/json.js';
import { SafetensorsReader, type SafeDType } from '../formats/safetensors.js';
import type { RawTensor } from '../formats/torch-zip.js';
import type { FileSet, OpenOptions } from '../io/fileset.js';
import { DEFAULT_LIMITS, type LoadLimits } from '../limits.js';
import { Tensor } from '../tensor.js';
import { toF32, transpose } from './convert-f32.js';
import type { AdapterSpec, NonFinite, SpecFloat } from './spec.js';

/**
 * What the PEFT and MLX loaders share: their options, the config JSON read, checkpoint tensors before they become
 * an AdapterSpec (`RawTensor`: dtype, shape, little-endian bytes), and the tensors they build from them, kept in
 * their on-disk float dtype (each backend widens on upload), so loading needs no wasm and a bf16 adapter takes half
 * the host memory of its f32 form.
 */

export type { RawTensor };

/** Options of every adapter loader (`loadPEFT`, `loadMLX`, `loadAdapter`, the `LoRAContainer` loaders). */
export interface LoadOptions {
  signal?: AbortSignal;
  onProgress?: OpenOptions['onProgress'];
  /** Which adapter to take when the keys carry names (`lora_A.<name>.weight`); also the spec's name. */
  adapterName?: string;
  /** fetch used for http(s) sources. */
  fetch?: typeof fetch;
  /** Caps of this load (docs/limits.md); unset fields keep DEFAULT_LIMITS. */
  limits?: Partial<LoadLimits>;
  /**
   * NaN / ±Inf in the adapter's tensors. PEFT and torch load them as written, and so does peftjs by default
   * (`false`: no scan). `'warn'`: scan, load, and list each tensor holding them in `spec.nonFinite` and the warnings.
   * `true`: scan and refuse the adapter (AdapterError 'non_finite' naming the first tensor, index and value).
   */
  checkFinite?: boolean | 'warn';
}

/** The caps in force for a load: the caller's, else the FileSet's, else the defaults. */
export function loadLimits(files: FileSet | undefined, opts: Pick<LoadOptions, 'limits'>): Readonly<LoadLimits> {
  return { ...DEFAULT_LIMITS, ...files?.limits, ...opts.limits };
}

/**
 * Reads and parses a JSON config file (ConfigError 'config_missing' / 'config_not_json'). The strict parser
 * validates first (nesting ≤ maxJsonDepth, no repeated keys, no lone surrogates: what serde_json refuses), then the
 * values are read as plain JSON numbers and strings.
 */
export async function readConfigJson(files: FileSet, name: string, opts: LoadOptions = {}): Promise<unknown> {
  const bytes = await files.readAll(name, { signal: opts.signal });
  if (!bytes) throw new ConfigError('config_missing', 'adapter config not found', { file: `${files.name} › ${name}`, expected: name, got: 'no such file' });
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    parseStrictJson(text, { maxDepth: loadLimits(files, opts).maxJsonDepth });
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError('config_not_json', 'adapter config is not valid JSON', { file: name, detail: (e as Error).message, cause: e });
  }
}

/** All tensors of a safetensors file as RawTensors (zero-copy views), under the load's caps. */
export function safetensorsTensors(bytes: Uint8Array, file: string, limits?: Partial<LoadLimits>): Map<string, RawTensor> {
  const r = SafetensorsReader.fromBytes(bytes, { file, limits });
  const out = new Map<string, RawTensor>();
  for (const [name, t] of r.tensors) out.set(name, { dtype: t.dtype, shape: t.shape, data: r.bytesSync(name) });
  return out;
}


/** Row-major `[rows, cols]` 16-bit values → `[cols, rows]`. */
function transpose16(src: Uint16Array, rows: number, cols: number): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = src[row + j]!;
  }
  return out;
}

/** Little-endian bytes as a fresh Uint16Array (copied, so alignment of `bytes` does not matter). */
function u16(bytes: Uint8Array): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(bytes.byteLength >>> 1);
  new Uint8Array(out.buffer).set(bytes.subarray(0, out.byteLength));
  return out;
}

/**
 * A float tensor of `shape` in its on-disk dtype (F64 → f32), in fresh memory. With `transposeFrom: [rows, cols]`
 * the stored `[rows, cols]` is transposed to `[cols, rows]` (= `shape`): PEFT's lora_A [r,in] → a [in,r].
 */
export function diskFloatTensor(dtype: SafeDType, bytes: Uint8Array, shape: readonly number[], where: string, transposeFrom?: readonly [number, number]): Tensor<SpecFloat> {
  if (dtype === 'F16' || dtype === 'BF16') {
    const raw = u16(bytes);
    const data = transposeFrom ? transpose16(raw, transposeFrom[0], transposeFrom[1]) : raw;
    return Tensor.from(data, shape, dtype === 'F16' ? 'f16' : 'bf16');
  }
  const f = toF32(dtype, bytes, where);
  return Tensor.from(transposeFrom ? transpose(f, transposeFrom[0], transposeFrom[1]) : f, shape, 'f32');
}


/** NaN/±Inf in one float tensor of any dtype (f16/bf16 by their bits: an all-ones exponent). */
function scan(t: Tensor, name: string): NonFinite | undefined {
  let count = 0;
  let index = -1;
  let value = 0;
  const d = t.data;
  if (t.dtype === 'f16' || t.dtype === 'bf16') {
    const mask = t.dtype === 'f16' ? 0x7c00 : 0x7f80;
    const h = d as Uint16Array;
    for (let i = 0; i < h.length; i++) {
      if ((h[i]! & mask) === mask) {
        if (count++ === 0) index = i;
      }
    }
    if (count) value = (h[index]! & (mask === 0x7c00 ? 0x3ff : 0x7f)) !== 0 ? NaN : h[index]! & 0x8000 ? -Infinity : Infinity;
  } else if (t.dtype === 'f32' || t.dtype === 'f64') {
    const f = d as Float32Array;
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(f[i]!)) {
        if (count++ === 0) index = i;
      }
    }
    if (count) value = f[index]!;
  }
  return count ? { tensor: name, count, index, value } : undefined;
}

/** Every float tensor of the spec (factors, lora bias, DoRA magnitude, float replacements) that holds NaN/±Inf. */
export function nonFiniteTensors(spec: AdapterSpec): NonFinite[] {
  const out: NonFinite[] = [];
  for (const m of spec.modules) {
    for (const [k, t] of [['a', m.a], ['b', m.b], ['bias', m.bias], ['magnitude', m.magnitude]] as const) {
      const r = t && scan(t, `${m.path} ${k}`);
      if (r) out.push(r);
    }
  }
  for (const r of spec.replacements) {
    for (const [k, t] of Object.entries(r.tensors)) {
      const s = scan(t, `${r.path} ${k}`);
      if (s) out.push(s);
    }
  }
  return out;
}

/**
 * Applies the `checkFinite` policy to a freshly built spec: unchanged when off; with `'warn'`, `nonFinite` and a
 * warning per tensor; with `true`, AdapterError 'non_finite' when any tensor holds NaN/±Inf.
 */
export function applyFinitePolicy(spec: AdapterSpec, policy: LoadOptions['checkFinite'], file: string): AdapterSpec {
  if (!policy) return spec;
  const bad = nonFiniteTensors(spec);
  if (policy === true && bad.length) {
    const b = bad[0]!;
    throw new AdapterError('non_finite', 'adapter tensor holds NaN or ±Inf (checkFinite)', {
      file,
      tensor: b.tensor,
      expected: 'finite values',
      got: `${String(b.value)} at index ${b.index}`,
      detail: `${bad.length} tensor(s) with non-finite values, ${b.count} in this one`,
    });
  }
  const warnings = [...spec.warnings, ...bad.map((b) => `${b.tensor}: ${b.count} NaN/±Inf value(s), first ${String(b.value)} at index ${b.index} (loaded as written, as PEFT loads them)`)];
  return { ...spec, warnings, nonFinite: bad };
}
