import { AdapterError } from '../errors.js';
import { SafetensorsReader, type TensorInfo } from '../formats/safetensors.js';
import { toFileSet, type FileSet } from '../io/fileset.js';
import { LoRAContainer } from '../adapter/container.js';
import { formatReport, type AdapterReport, type ReportRow } from '../adapter/report.js';
import { parseMlxConfig } from '../mlx/config.js';
import { MLX_FILES } from '../mlx/load.js';
import { parsePeftConfig } from '../peft/config.js';
import { bytesPer } from '../adapter/convert-f32.js';
import { detectFormat } from '../adapter/detect.js';
import { IssueList } from '../adapter/issues.js';
import { groupPeftKeys } from '../peft/keys.js';
import { PEFT_FILES, readConfigJson, tokenIndicesFor } from '../peft/load.js';
import { alphaFor, rankFor, scaleOf } from '../peft/scaling.js';
import { init } from '../backends/index.js';
import type { ProgressFactory } from './progress.js';

/**
 * `peftjs inspect <adapter>`: what an adapter holds, from `adapter_config.json` and the safetensors header alone.
 * No tensor byte is read (over HTTP: the config and one Range request for the header), so a 300 MB adapter is
 * described in the time of two small reads. `--full` loads and validates every tensor instead, as
 * `LoRAContainer.load` does; a PEFT `.bin` (torch zip) has no header to read and always loads fully.
 */
export interface InspectResult {
  source: string;
  /** true when only headers were read. */
  headerOnly: boolean;
  report: AdapterReport;
}

export async function inspectAdapter(source: string, opts: { full?: boolean; progress?: ProgressFactory } = {}): Promise<InspectResult> {
  if (!opts.full) {
    const files = await toFileSet(source);
    const report = await headerReport(files);
    if (report) return { source, headerOnly: true, report };
  }
  await init();
  const container = await LoRAContainer.load(source, { onProgress: opts.progress?.('adapter') });
  return { source, headerOnly: false, report: container.report };
}

/** The table (or, with `json`, one JSON object) that `peftjs inspect` prints. */
export async function inspect(source: string, opts: { full?: boolean; json?: boolean; progress?: ProgressFactory } = {}): Promise<string> {
  const r = await inspectAdapter(source, opts);
  if (!opts.json) return r.report.toString();
  const { toString: _, ...report } = r.report;
  return JSON.stringify({ source: r.source, headerOnly: r.headerOnly, ...report }, null, 2);
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;
const widest = (dtypes: string[]) => dtypes.reduce((w, d) => (bytesPer(d as never) > bytesPer(w as never) ? d : w));

function makeReport(format: AdapterReport['format'], name: string, modules: ReportRow[], replacements: ReportRow[], tensors: Iterable<TensorInfo>, warnings: string[]): AdapterReport {
  let parameters = 0;
  let bytes = 0;
  for (const t of tensors) {
    parameters += count(t.shape);
    bytes += t.end - t.begin;
  }
  const report: AdapterReport = {
    format,
    name,
    modules: [...modules, ...replacements],
    replacements,
    totals: { pairs: modules.length, parameters, bytes },
    warnings,
    toString: () => formatReport(report),
  };
  return report;
}

/** The report from headers, or undefined when the weights are not a safetensors file (a torch `.bin`). */
async function headerReport(files: FileSet): Promise<AdapterReport | undefined> {
  const raw = await readConfigJson(files, PEFT_FILES.config);
  const format = detectFormat(raw);
  if (format === 'mlx') return mlxHeaderReport(files, raw);
  if (format !== 'peft') return undefined; // LoRAContainer.load says what is wrong with it
  const { config, warnings } = parsePeftConfig(raw, PEFT_FILES.config);
  const file = PEFT_FILES.safetensors;
  const src = await files.open(file);
  if (!src) return undefined;
  const header = await SafetensorsReader.open(src, { file });
  const info = (key: string) => header.tensors.get(key)!;

  const issues = new IssueList(`invalid LoRA adapter ${file}`);
  const grouped = groupPeftKeys([...header.tensors.keys()], config, issues, warnings, { file });
  const modules: ReportRow[] = [];
  for (const g of grouped.modules.values()) {
    const embedding = g.lora_embedding_A !== undefined;
    const aKey = embedding ? g.lora_embedding_A : g.lora_A;
    const bKey = embedding ? g.lora_embedding_B : g.lora_B;
    if (!aKey || !bKey) {
      issues.add('unpaired_factor', 'a LoRA factor is missing for this module', { file, module: g.path, expected: 'A and B', got: aKey ?? bKey ?? 'neither' });
      continue;
    }
    const A = info(aKey);
    const B = info(bKey);
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== B.shape[1]) {
      issues.add('shape_mismatch', 'LoRA factors must be A [r, in] and B [out, r]', { file, module: g.path, expected: '[r, in] and [out, r]', got: `${shapeStr(A.shape)} and ${shapeStr(B.shape)}` });
      continue;
    }
    const rank = A.shape[0]!;
    if (rank !== rankFor(config, g.path)) {
      issues.add('rank_mismatch', 'tensor rank does not match the config', { file, tensor: aKey, module: g.path, expected: rankFor(config, g.path), got: rank });
      continue;
    }
    const alpha = alphaFor(config, g.path);
    const parts = [A, B, g.lora_B_bias && info(g.lora_B_bias), g.lora_magnitude_vector && info(g.lora_magnitude_vector)].filter((t): t is TensorInfo => !!t);
    modules.push({
      path: g.path,
      kind: embedding ? 'embedding' : g.lora_magnitude_vector ? 'dora' : 'linear',
      rank,
      alpha,
      scale: scaleOf(alpha, rank, config.use_rslora),
      in: A.shape[1],
      out: B.shape[0],
      dtype: widest(parts.map((t) => t.dtype)),
    });
  }
  const replacements: ReportRow[] = [...grouped.replacements.values()].map((r) => {
    const ts = Object.values(r.params).map(info);
    const w = r.params.weight ? info(r.params.weight) : r.params.delta ? info(r.params.delta) : undefined;
    const b = r.params.bias ? info(r.params.bias) : undefined;
    const io =
      w?.shape.length === 2 ? (r.kind === 'trainable_tokens' ? { out: w.shape[1] } : { in: w.shape[1], out: w.shape[0] }) : b ? { out: b.shape[0] } : {};
    if (r.kind === 'trainable_tokens' && !tokenIndicesFor(config, r.path)) {
      issues.add('invalid_adapter', 'trainable_tokens_delta has no indices in the config', { file, module: r.path, expected: 'trainable_token_indices naming this module' });
    }
    return { path: r.path, kind: 'replacement', ...io, dtype: ts[0]?.dtype ?? '', replaces: r.kind };
  });
  issues.throwIfAny('adapter');
  if (!modules.length && !replacements.length) throw new AdapterError('invalid_adapter', 'the adapter holds no LoRA tensors', { file, expected: 'lora_A/lora_B pairs', got: 'none' });
  return makeReport('peft', grouped.adapterName ?? 'default', modules, replacements, header.tensors.values(), warnings);
}

/** MLX: `<path>.lora_a [in, r]`, `<path>.lora_b [r, out]`, `<path>.m [out]`; one rank and one scale for all. */
async function mlxHeaderReport(files: FileSet, raw: unknown): Promise<AdapterReport | undefined> {
  const config = parseMlxConfig(raw, MLX_FILES.config);
  const file = MLX_FILES.weights;
  const src = await files.open(file);
  if (!src) return undefined;
  const header = await SafetensorsReader.open(src, { file });
  const { rank: r, scale } = config.lora_parameters;
  const issues = new IssueList(`invalid MLX adapter ${file}`);
  const groups = new Map<string, Partial<Record<'lora_a' | 'lora_b' | 'm', TensorInfo>>>();
  for (const [key, t] of header.tensors) {
    const dot = key.lastIndexOf('.');
    const suffix = key.slice(dot + 1);
    if (dot <= 0 || !['lora_a', 'lora_b', 'm'].includes(suffix)) {
      issues.add('unknown_tensor', 'tensor fits nothing in an MLX adapter', { file, tensor: key, expected: '<module>.lora_a, <module>.lora_b or <module>.m', got: key });
      continue;
    }
    const g = groups.get(key.slice(0, dot)) ?? {};
    g[suffix as 'lora_a'] = t;
    groups.set(key.slice(0, dot), g);
  }
  const modules: ReportRow[] = [];
  for (const [path, g] of groups) {
    const { lora_a: A, lora_b: B, m } = g;
    if (!A || !B || A.shape.length !== 2 || B.shape.length !== 2 || A.shape[1] !== B.shape[0]) {
      issues.add('shape_mismatch', 'MLX factors must be lora_a [in, r] and lora_b [r, out]', { file, module: path, got: `${A ? shapeStr(A.shape) : 'no lora_a'}, ${B ? shapeStr(B.shape) : 'no lora_b'}` });
      continue;
    }
    if (A.shape[1] !== r) {
      issues.add('rank_mismatch', 'tensor rank does not match the config', { file, module: path, expected: r, got: A.shape[1], detail: `lora_parameters.rank = ${r}` });
      continue;
    }
    const last = path.slice(path.lastIndexOf('.') + 1);
    modules.push({
      path,
      kind: m ? 'dora' : /^(embed_tokens|wte|word_embeddings|embed_in|tok_embeddings|shared)$/.test(last) ? 'embedding' : 'linear',
      rank: r,
      alpha: scale * r,
      scale,
      in: A.shape[0],
      out: B.shape[1],
      dtype: widest([A, B, m].filter((t): t is TensorInfo => !!t).map((t) => t.dtype)),
    });
  }
  issues.throwIfAny('adapter');
  if (!modules.length) throw new AdapterError('invalid_adapter', 'the adapter holds no LoRA tensors', { file, expected: 'lora_a/lora_b pairs', got: 'none' });
  return makeReport('mlx', 'default', modules, [], header.tensors.values(), []);
}
