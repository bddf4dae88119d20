import { applyFinitePolicy, diskFloatTensor, loadLimits, readConfigJson, safetensorsTensors, type LoadOptions, type RawTensor } from '../adapter/raw.js';
import type { AdapterModule, AdapterReplacement, AdapterSpec, SpecFloat } from '../adapter/spec.js';
import { AdapterError, ConfigError } from '../errors.js';
import { SafetensorsReader } from '../formats/safetensors.js';
import { readTorchZip } from '../formats/torch-zip.js';
import { toFileSet, type AdapterSource, type FileSet } from '../io/fileset.js';
import { throwIfAborted, type ByteSource } from '../io/source.js';
import type { LoadLimits } from '../limits.js';
import { Tensor } from '../tensor.js';
import { parsePeftConfig, type PeftConfig } from './config.js';
import { bytesPer, convertReady, isFloatDType, toF32, toI32 } from '../adapter/convert-f32.js';
import { IssueList } from '../adapter/issues.js';
import { groupPeftKeys, type FactorKeys, type ReplacementKeys } from './keys.js';
import { effectiveModulesToSave, PatternError, patternConfigError, PeftMatcher, scaleOf, type NotTargeted } from './scaling.js';

/**
 * Loads a PEFT LoRA adapter folder: `adapter_config.json` + `adapter_model.safetensors` (or the older
 * `adapter_model.bin`, a torch zip). Everything is validated first and every problem reported at once; then
 * the factors are laid out once in the internal layout `a [in,r]` = lora_Aᵀ, `b [r,out]` = lora_Bᵀ, in their
 * on-disk float dtype (no wasm needed; each backend widens on upload).
 */

export { readConfigJson, safetensorsTensors, type LoadOptions, type RawTensor };

/** File names peft writes (`peft.utils.constants`). */
export const PEFT_FILES = {
  config: 'adapter_config.json',
  safetensors: 'adapter_model.safetensors',
  bin: 'adapter_model.bin',
} as const;

export async function loadPEFT(source: AdapterSource, opts: LoadOptions = {}): Promise<AdapterSpec> {
  const files = await toFileSet(source, { fetch: opts.fetch, limits: opts.limits });
  return loadPEFTFrom(files, await readConfigJson(files, PEFT_FILES.config, opts), opts);
}

/** `loadPEFT` for a FileSet whose config JSON was already read (used by format detection). */
export async function loadPEFTFrom(files: FileSet, rawConfig: unknown, opts: LoadOptions = {}): Promise<AdapterSpec> {
  const { config, warnings } = parsePeftConfig(rawConfig, PEFT_FILES.config);
  const limits = loadLimits(files, opts);
  const { file, tensors } = await readPeftWeights(files, { ...opts, limits });
  // LoRA tensors stay in their dtype (no conversion, no wasm); 16-bit replacements (modules_to_save, biases,
  // trainable tokens) are widened to f32, faster once wasm is up.
  for (const [k, t] of tensors) {
    if ((t.dtype === 'F16' || t.dtype === 'BF16') && !LORA_KEY.test(k)) {
      await convertReady();
      break;
    }
  }
  const spec = specFromPeft(config, tensors, { file, warnings, adapterName: opts.adapterName, limits });
  return applyFinitePolicy(spec, opts.checkFinite, file);
}

/** The adapter's tensors: `adapter_model.safetensors`, else `adapter_model.bin` (AdapterError 'weights_missing'). */
export async function readPeftWeights(files: FileSet, opts: LoadOptions = {}): Promise<{ file: string; tensors: Map<string, RawTensor> }> {
  const io = { signal: opts.signal, onProgress: opts.onProgress };
  const limits = loadLimits(files, opts);
  if (files.randomAccess) {
    const src = await files.open(PEFT_FILES.safetensors, io);
    if (src?.readInto) return { file: PEFT_FILES.safetensors, tensors: await streamSafetensors(src, PEFT_FILES.safetensors, { ...opts, limits }) };
  }
  const st = await files.readAll(PEFT_FILES.safetensors, io);
  if (st) return { file: PEFT_FILES.safetensors, tensors: safetensorsTensors(st, PEFT_FILES.safetensors, limits) };
  const bin = await files.readAll(PEFT_FILES.bin, io);
  if (bin) return { file: PEFT_FILES.bin, tensors: await readTorchZip(bin, { file: PEFT_FILES.bin, limits }) };
  throw new AdapterError('weights_missing', 'adapter weights not found', { file: files.name, expected: `${PEFT_FILES.safetensors} or ${PEFT_FILES.bin}`, got: 'neither' });
}

/** A tensor as loaded: LoRA factors streamed from a local file arrive already transposed, in their dtype (`diskT`). */
type LoadedTensor = RawTensor & { readonly diskT?: Tensor<SpecFloat> };

/** Tensors of the LoRA modules themselves (factors, lora bias, DoRA magnitude), kept in their dtype. */
const LORA_KEY = /\.(?:lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)(?:\.|$)/;

/** 2-D LoRA factors, which are transposed at load: `lora_A[.name].weight`, `lora_B[.name].weight`, `lora_embedding_A/B[.name]`. */
const FACTOR_KEY = /\.(?:lora_[AB](?:\.[^.]+)?\.weight|lora_embedding_[AB](?:\.[^.]+)?)$/;

/**
 * All tensors of a local safetensors file, read in file order through one reused staging buffer: each LoRA
 * factor is transposed from the staging bytes straight into its final array (its own dtype), so the file's bytes
 * land in fresh memory once (the point: committing fresh memory costs more than the read on many machines); other
 * tensors (biases, magnitudes, replacements) get their own copy. Validation still runs on shapes before use.
 */
async function streamSafetensors(src: ByteSource, file: string, opts: LoadOptions & { limits: Readonly<LoadLimits> }): Promise<Map<string, RawTensor>> {
  const reader = await SafetensorsReader.open(src, { file, signal: opts.signal, limits: opts.limits });
  const out = new Map<string, LoadedTensor>();
  let stage = new Uint8Array(0);
  let loaded = reader.dataOffset;
  for (const [name, info] of reader.tensors) {
    throwIfAborted(opts.signal, file);
    const bytes = info.end - info.begin;
    const factor = FACTOR_KEY.test(name) && info.shape.length === 2 && isFloatDType(info.dtype);
    if (factor) {
      if (stage.byteLength < bytes) stage = new Uint8Array(Math.max(bytes, 2 * stage.byteLength));
      const view = stage.subarray(0, bytes);
      await src.readInto!(reader.dataOffset + info.begin, view, opts.signal);
      const [rows, cols] = info.shape as [number, number];
      const diskT = diskFloatTensor(info.dtype, view, [cols, rows], name, [rows, cols]);
      out.set(name, { dtype: info.dtype, shape: info.shape, data: EMPTY_BYTES, diskT });
    } else {
      const data = new Uint8Array(bytes);
      await src.readInto!(reader.dataOffset + info.begin, data, opts.signal);
      out.set(name, { dtype: info.dtype, shape: info.shape, data });
    }
    loaded += bytes;
    opts.onProgress?.({ loaded, total: src.size });
  }
  return out;
}
const EMPTY_BYTES = new Uint8Array(0);

interface Planned {
  path: string;
  kind: AdapterModule['kind'];
  rank: number;
  alpha: number;
  scale: number;
  in: number;
  out: number;
  dtype: string;
  keys: FactorKeys;
}

/**
 * Builds the spec from a parsed config and the checkpoint's tensors (16-bit replacements convert faster after `await convertReady()`).
 * Throws one AdapterError listing every problem; nothing is converted unless all is well.
 */
export function specFromPeft(
  config: PeftConfig,
  tensors: ReadonlyMap<string, RawTensor>,
  opts: { file?: string; warnings?: string[]; adapterName?: string; limits?: Partial<LoadLimits> } = {},
): AdapterSpec {
  // Compiled once for this load and dropped with it.
  const matcher = new PeftMatcher(config, opts.limits);
  if (matcher.problems.length) throw patternConfigError(matcher.problems[0]!);
  try {
    return buildSpec(config, tensors, matcher, opts);
  } catch (e) {
    if (!(e instanceof PatternError)) throw e;
    throw patternConfigError(e.info);
  }
}

/** At most this many ignored modules are named one per warning line; the rest are counted. */
const MAX_IGNORED_LISTED = 100;

const NOT_TARGETED_WHY: Record<NotTargeted, string> = {
  exclude_modules: 'it matches exclude_modules',
  modules_to_save: 'it is a modules_to_save module',
  target_modules: 'it does not match target_modules',
  layers_to_transform: 'its layer index is not in layers_to_transform',
};

function buildSpec(config: PeftConfig, tensors: ReadonlyMap<string, RawTensor>, matcher: PeftMatcher, opts: { file?: string; warnings?: string[]; adapterName?: string }): AdapterSpec {
  const file = opts.file ?? PEFT_FILES.safetensors;
  const warnings = [...(opts.warnings ?? [])];

  const issues = new IssueList(`invalid LoRA adapter ${file}`);
  // The task head PEFT adds to modules_to_save itself (SEQ_CLS `classifier`/`score`, …) is a replacement too.
  const keyConfig = { bias: config.bias, modules_to_save: effectiveModulesToSave(config) };
  const grouped = groupPeftKeys([...tensors.keys()], keyConfig, issues, warnings, { file, adapterName: opts.adapterName });
  if (!opts.adapterName && grouped.adapterName !== undefined && grouped.adapterName !== 'default') {
    warnings.push(
      `the keys name adapter "${grouped.adapterName}" (…lora_A.${grouped.adapterName}.weight): loaded as adapter "${grouped.adapterName}"; ` +
        'PEFT, loading the default adapter, would not match these keys and would report them missing (pass adapterName to choose)',
    );
  }

  // PEFT only wraps the modules its config targets (check_target_module_exists); tensors for any other module
  // are unexpected keys to `load_state_dict(strict=False)`, i.e. dropped. Do the same, and say so.
  const ignored: string[] = [];
  const kept: FactorKeys[] = [];
  for (const g of grouped.modules.values()) {
    const t = matcher.targets(g.path);
    if (t === true || t === undefined) kept.push(g);
    else {
      if (ignored.length < MAX_IGNORED_LISTED) warnings.push(`${g.path}: LoRA tensors ignored, as PEFT ignores them: ${NOT_TARGETED_WHY[t]}`);
      ignored.push(g.path);
    }
  }
  if (ignored.length > MAX_IGNORED_LISTED) warnings.push(`… and ${ignored.length - MAX_IGNORED_LISTED} more modules whose LoRA tensors were ignored (${ignored.length} in all)`);
  rejectMergedLinear(kept, tensors, file);

  const plans: Planned[] = [];
  for (const g of kept) {
    const p = planModule(g, tensors, config, matcher, issues, warnings, file);
    if (p) plans.push(p);
  }
  const reps = [...grouped.replacements.values()];
  for (const r of reps) checkReplacement(r, tensors, config, issues, file);
  issues.throwIfAny('adapter');
  if (!plans.length && !reps.length && !ignored.length) throw new AdapterError('invalid_adapter', 'the adapter holds no LoRA tensors', { file, expected: 'lora_A/lora_B pairs', got: 'none' });
  // Modules PEFT guards from targeting (exclude_modules, modules_to_save) never miss keys.
  const guarded = (p: string) => {
    const t = matcher.targets(p);
    return t === 'exclude_modules' || t === 'modules_to_save';
  };
  warnings.push(...missingTargets(config, [...kept.map((g) => g.path), ...ignored.filter(guarded)], guarded));

  const modules: AdapterModule[] = plans.map((p) => buildModule(p, tensors, config.fan_in_fan_out));
  const replacements: AdapterReplacement[] = reps.map((r) => buildReplacement(r, tensors, config));
  return {
    format: 'peft',
    name: opts.adapterName ?? grouped.adapterName ?? 'default',
    config,
    modules,
    replacements,
    warnings,
  };
}

const MISSING_NOTE = 'if the model has such modules, PEFT wraps them with untrained LoRA weights and warns "Found missing adapter keys while loading the checkpoint"';

/** `target_modules` entries no module with LoRA tensors answers to: PEFT's missing-keys case, seen from the file. */
function missingTargets(config: PeftConfig, kept: readonly string[], guarded: (name: string) => boolean): string[] {
  const t = config.target_modules;
  if (Array.isArray(t)) {
    const names = new Set<string>();
    for (const p of kept) {
      names.add(p);
      for (let i = p.indexOf('.'); i >= 0; i = p.indexOf('.', i + 1)) names.add(p.slice(i + 1));
    }
    const missing = t.filter((e) => !names.has(e) && !guarded(e));
    if (!missing.length) return [];
    const named = missing.slice(0, 20).map((e) => JSON.stringify(e)).join(', ') + (missing.length > 20 ? ` and ${missing.length - 20} more` : '');
    return [`no LoRA tensors for target_modules ${named}: ${MISSING_NOTE}`];
  }
  if (typeof t === 'string' && t.toLowerCase() !== 'all-linear' && !kept.length) return [`no LoRA tensors match target_modules ${JSON.stringify(t)}: ${MISSING_NOTE}`];
  return [];
}

/**
 * The keys PEFT would report missing when this adapter is put on a model whose adaptable modules (Linear,
 * Conv1D, Embedding) are `modulePaths`: modules the config targets that the checkpoint has no tensors for.
 * `PeftModel.from_pretrained` warns with {@link missingKeysWarning}; loaders that know the model can do the same.
 */
export function missingAdapterKeys(spec: AdapterSpec, modulePaths: Iterable<string>): string[] {
  if (spec.format !== 'peft') return [];
  const matcher = new PeftMatcher(spec.config as PeftConfig);
  if (matcher.problems.length) throw patternConfigError(matcher.problems[0]!);
  const have = new Set(spec.modules.map((m) => m.path));
  const out: string[] = [];
  try {
    for (const p of modulePaths) {
      if (!have.has(p) && matcher.targets(p) === true) out.push(`base_model.model.${p}.lora_A.${spec.name}.weight`, `base_model.model.${p}.lora_B.${spec.name}.weight`);
    }
  } catch (e) {
    if (!(e instanceof PatternError)) throw e;
    throw patternConfigError(e.info);
  }
  return out;
}

/** PEFT's warning text (`PeftModel.from_pretrained`), with the key list as Python prints it. */
export function missingKeysWarning(keys: readonly string[]): string {
  return `Found missing adapter keys while loading the checkpoint: [${keys.map((k) => `'${k}'`).join(', ')}].`;
}

/** PEFT 0.2's MergedLinear stored lora_B as a grouped Conv1d weight [out, r, 1]: a 3-D lora_B. */
function rejectMergedLinear(groups: readonly FactorKeys[], tensors: ReadonlyMap<string, RawTensor>, file: string): void {
  for (const g of groups) {
    const key = g.lora_B;
    const t = key === undefined ? undefined : tensors.get(key)!;
    if (key !== undefined && t && t.shape.length === 3) {
      throw new ConfigError('unsupported_merged_linear', 'a 3-D lora_B (PEFT 0.2-era MergedLinear or Conv1d LoRA) is not supported', {
        file,
        tensor: key,
        expected: 'lora_B [out, r]',
        got: `[${t.shape.join(', ')}]`,
      });
    }
  }
}

const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

function planModule(g: FactorKeys, tensors: ReadonlyMap<string, RawTensor>, config: PeftConfig, matcher: PeftMatcher, issues: IssueList, warnings: string[], file: string): Planned | undefined {
  const path = g.path;
  const embedding = g.lora_embedding_A !== undefined || g.lora_embedding_B !== undefined;
  if (embedding && (g.lora_A !== undefined || g.lora_B !== undefined)) {
    issues.add('invalid_adapter', 'module has both Linear (lora_A/lora_B) and Embedding (lora_embedding_A/B) factors', { file, module: path });
    return;
  }
  const [aName, bName] = embedding ? ['lora_embedding_A', 'lora_embedding_B'] : ['lora_A', 'lora_B'];
  const aKey = embedding ? g.lora_embedding_A : g.lora_A;
  const bKey = embedding ? g.lora_embedding_B : g.lora_B;
  if (!aKey || !bKey) {
    const present = aKey ?? bKey ?? g.lora_B_bias ?? g.lora_magnitude_vector!;
    const missing = [!aKey && aName, !bKey && bName].filter(Boolean).join(' and ');
    issues.add('unpaired_factor', `${missing} missing for this module`, { file, tensor: present, module: path, expected: `${aName} and ${bName}`, got: present });
    return;
  }
  const A = tensors.get(aKey)!;
  const B = tensors.get(bKey)!;
  const bias = g.lora_B_bias ? tensors.get(g.lora_B_bias)! : undefined;
  const mag = g.lora_magnitude_vector ? tensors.get(g.lora_magnitude_vector)! : undefined;
  let ok = true;
  for (const [k, t] of [[aKey, A], [bKey, B], [g.lora_B_bias, bias], [g.lora_magnitude_vector, mag]] as const) {
    if (t && !isFloatDType(t.dtype)) {
      issues.add('bad_dtype', 'LoRA tensors must be floating point', { file, tensor: k, expected: 'F32, F16, BF16 or F64', got: t.dtype });
      ok = false;
    }
  }
  if (A.shape.length !== 2) {
    const detail = A.shape.length === 4 ? 'Conv2d LoRA is not supported' : undefined;
    issues.add('shape_mismatch', `${aName} must be 2-D [r, in]`, { file, tensor: aKey, expected: '[r, in]', got: shapeStr(A.shape), detail });
    ok = false;
  }
  if (B.shape.length !== 2) {
    issues.add('shape_mismatch', `${bName} must be 2-D [out, r]`, { file, tensor: bKey, expected: '[out, r]', got: shapeStr(B.shape) });
    ok = false;
  }
  if (!ok) return;
  const [rank, inF] = A.shape as [number, number];
  const [outF, rankB] = B.shape as [number, number];
  if (rank !== rankB) {
    issues.add('rank_mismatch', `${aName} and ${bName} disagree on the rank`, { file, module: path, expected: `${bName} [${outF}, ${rank}]`, got: `${bName} ${shapeStr(B.shape)}` });
    return;
  }
  const rankKey = matcher.rankKey(path);
  const want = rankKey === undefined ? config.r : config.rank_pattern[rankKey]!;
  if (rank !== want) {
    const from = rankKey === undefined ? `r = ${config.r}` : `rank_pattern["${rankKey}"] = ${want}`;
    issues.add('rank_mismatch', 'tensor rank does not match the config', { file, tensor: aKey, module: path, expected: want, got: rank, detail: `config says ${from}` });
    return;
  }
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== outF)) {
    issues.add('shape_mismatch', 'lora_B.bias must be [out]', { file, tensor: g.lora_B_bias, expected: `[${outF}]`, got: shapeStr(bias.shape) });
    return;
  }
  if (mag) {
    if (embedding) {
      issues.add('invalid_adapter', 'DoRA on embeddings is not supported', { file, tensor: g.lora_magnitude_vector, module: path });
      return;
    }
    if (mag.shape.length !== 1 || mag.shape[0] !== outF) {
      issues.add('shape_mismatch', 'lora_magnitude_vector must be [out]', { file, tensor: g.lora_magnitude_vector, expected: `[${outF}]`, got: shapeStr(mag.shape) });
      return;
    }
    if (!config.use_dora) warnings.push(`${path}: lora_magnitude_vector present although use_dora is false: loaded as DoRA`);
  } else if (config.use_dora && !embedding) {
    issues.add('unpaired_factor', 'use_dora is set but the DoRA magnitude is missing', { file, module: path, expected: `${path}.lora_magnitude_vector`, got: 'absent' });
    return;
  }
  const alphaKey = matcher.alphaKey(path);
  const alpha = alphaKey === undefined ? config.lora_alpha : config.alpha_pattern[alphaKey]!;
  const dtype = [A, B, bias, mag].filter((t): t is RawTensor => !!t).map((t) => t.dtype).reduce((w, d) => (bytesPer(d) > bytesPer(w) ? d : w));
  return {
    path,
    kind: embedding ? 'embedding' : mag ? 'dora' : 'linear',
    rank,
    alpha,
    scale: scaleOf(alpha, rank, config.use_rslora),
    in: inF,
    out: outF,
    dtype,
    keys: g,
  };
}

function buildModule(p: Planned, tensors: ReadonlyMap<string, RawTensor>, fanInFanOut: boolean): AdapterModule {
  const k = p.keys;
  const vec = (key: string) => {
    const t = tensors.get(key)!;
    return diskFloatTensor(t.dtype, t.data, [p.out], key);
  };
  const aKey = (p.kind === 'embedding' ? k.lora_embedding_A : k.lora_A)!;
  const bKey = (p.kind === 'embedding' ? k.lora_embedding_B : k.lora_B)!;
  // lora_A [r,in] → a [in,r]; lora_B [out,r] → b [r,out] (embedding: A [r,vocab] → a [vocab,r], B [dim,r] → b [r,dim]).
  const factor = (key: string, rows: number, cols: number) => {
    const t = tensors.get(key)! as LoadedTensor;
    return t.diskT ?? diskFloatTensor(t.dtype, t.data, [cols, rows], key, [rows, cols]);
  };
  return {
    path: p.path,
    kind: p.kind,
    rank: p.rank,
    alpha: p.alpha,
    scale: p.scale,
    in: p.in,
    out: p.out,
    dtype: p.dtype,
    a: factor(aKey, p.rank, p.in),
    b: factor(bKey, p.out, p.rank),
    fanInFanOut,
    ...(k.lora_B_bias ? { bias: vec(k.lora_B_bias) } : {}),
    ...(k.lora_magnitude_vector ? { magnitude: vec(k.lora_magnitude_vector) } : {}),
  };
}

/** Indices of trainable tokens for the embedding at `path` (`trainable_token_indices`: a list, or module name → list). */
export function tokenIndicesFor(config: Pick<PeftConfig, 'trainable_token_indices'>, path: string): number[] | undefined {
  const t = config.trainable_token_indices;
  if (t == null) return undefined; // absent from the file, or null
  if (Array.isArray(t)) return t;
  for (const [k, v] of Object.entries(t)) if (path === k || path.endsWith(`.${k}`)) return v;
  return undefined;
}

function checkReplacement(r: ReplacementKeys, tensors: ReadonlyMap<string, RawTensor>, config: PeftConfig, issues: IssueList, file: string): void {
  if (r.kind !== 'trainable_tokens') {
    for (const [param, key] of Object.entries(r.params)) {
      const t = tensors.get(key)!;
      if ((param === 'weight' || param === 'bias') && !isFloatDType(t.dtype)) {
        issues.add('bad_dtype', 'a saved weight must be floating point', { file, tensor: key, expected: 'F32, F16, BF16 or F64', got: t.dtype });
      }
    }
    return;
  }
  const key = r.params.delta!;
  const t = tensors.get(key)!;
  const idx = tokenIndicesFor(config, r.path);
  if (!idx) {
    issues.add('invalid_adapter', 'trainable_tokens_delta has no indices in the config', { file, tensor: key, module: r.path, expected: 'trainable_token_indices naming this module', got: config.trainable_token_indices });
  } else if (t.shape.length !== 2 || t.shape[0] !== idx.length) {
    issues.add('shape_mismatch', 'trainable_tokens_delta must have one row per token index', { file, tensor: key, expected: `[${idx.length}, dim]`, got: shapeStr(t.shape) });
  } else if (!isFloatDType(t.dtype)) {
    issues.add('bad_dtype', 'trainable_tokens_delta must be floating point', { file, tensor: key, expected: 'F32, F16, BF16 or F64', got: t.dtype });
  }
}

function buildReplacement(r: ReplacementKeys, tensors: ReadonlyMap<string, RawTensor>, config: PeftConfig): AdapterReplacement {
  const out: Record<string, Tensor> = {};
  let dtype = '';
  for (const [param, key] of Object.entries(r.params)) {
    const t = tensors.get(key)!;
    dtype ||= t.dtype;
    const name = r.kind === 'trainable_tokens' ? 'delta' : param;
    out[name] = isFloatDType(t.dtype) ? Tensor.from(toF32(t.dtype, t.data, key), t.shape, 'f32') : Tensor.from(toI32(t.dtype, t.data, key), t.shape, 'i32');
  }
  if (r.kind === 'trainable_tokens') {
    const idx = tokenIndicesFor(config, r.path)!;
    out.indices = Tensor.from(Int32Array.from(idx), [idx.length], 'i32');
  }
  return { path: r.path, kind: r.kind, tensors: out, dtype };
}
