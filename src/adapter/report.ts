import type { AdapterSpec } from './spec.js';

/**
 * What an adapter holds, as data and as a readable table (`peftjs inspect`): one row per LoRA module and per
 * replacement, totals, and the loader's warnings.
 */

export interface ReportRow {
  readonly path: string;
  readonly kind: 'linear' | 'embedding' | 'dora' | 'replacement';
  /** LoRA rank, alpha and scale (absent for replacements). */
  readonly rank?: number;
  readonly alpha?: number;
  readonly scale?: number;
  /** in/out features (embedding: vocab/dim; replacement: from its weight [out,in], or out from a bias/delta). */
  readonly in?: number;
  readonly out?: number;
  /** On-disk dtype. */
  readonly dtype: string;
  /** Replacements only: what they replace (`modules_to_save`, `bias`, `trainable_tokens`). */
  readonly replaces?: string;
}

export interface AdapterReport {
  readonly format: AdapterSpec['format'];
  readonly name: string;
  readonly modules: readonly ReportRow[];
  readonly replacements: readonly ReportRow[];
  readonly totals: {
    /** LoRA modules (A/B pairs). */
    readonly pairs: number;
    /** Elements of every tensor (factors, biases, magnitudes, replacements; token indices excluded). */
    readonly parameters: number;
    /** Bytes those elements take on disk, in their stored dtypes. */
    readonly bytes: number;
  };
  readonly warnings: readonly string[];
  /** Tensors holding NaN/±Inf, when the load scanned for them (`checkFinite: 'warn'`). */
  readonly nonFinite?: AdapterSpec['nonFinite'];
  /** Once applied: the backend(s) the adapted layers run on (`wasm`, `webgpu`, …), as `createBackend('auto')` chose. */
  readonly backend?: string;
  toString(): string;
}

const DISK_BYTES: Readonly<Record<string, number>> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, U16: 2, U32: 4, I8: 1, U8: 1, BOOL: 1 };

/** `opts.warnings`: more warnings after the loader's (the container's apply-time ones). */
export function buildReport(spec: AdapterSpec, opts: { backend?: string; warnings?: readonly string[] } = {}): AdapterReport {
  let parameters = 0;
  let bytes = 0;
  const count = (n: number, dtype: string) => {
    parameters += n;
    bytes += n * (DISK_BYTES[dtype] ?? 4);
  };
  const modules: ReportRow[] = spec.modules.map((m) => {
    count(m.a.size + m.b.size + (m.bias?.size ?? 0) + (m.magnitude?.size ?? 0), m.dtype);
    return { path: m.path, kind: m.kind, rank: m.rank, alpha: m.alpha, scale: m.scale, in: m.in, out: m.out, dtype: m.dtype };
  });
  const replacements: ReportRow[] = spec.replacements.map((r) => {
    for (const [k, t] of Object.entries(r.tensors)) if (k !== 'indices') count(t.size, r.dtype);
    const w = r.tensors.weight ?? r.tensors.delta;
    const b = r.tensors.bias;
    const io = w?.ndim === 2 ? (r.kind === 'trainable_tokens' ? { out: w.shape[1] } : { in: w.shape[1], out: w.shape[0] }) : b ? { out: b.shape[0] } : {};
    return { path: r.path, kind: 'replacement', ...io, dtype: r.dtype, replaces: r.kind };
  });
  const report = {
    format: spec.format,
    name: spec.name,
    modules: [...modules, ...replacements],
    replacements,
    totals: { pairs: spec.modules.length, parameters, bytes },
    warnings: [...spec.warnings, ...(opts.warnings ?? [])],
    ...(spec.nonFinite ? { nonFinite: spec.nonFinite } : {}),
    ...(opts.backend ? { backend: opts.backend } : {}),
    toString: () => formatReport(report),
  };
  return report;
}

const num = (x: number | undefined) => (x === undefined ? '' : Number.isInteger(x) ? String(x) : String(+x.toPrecision(6)));

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function formatReport(r: AdapterReport): string {
  const head = ['module', 'kind', 'r', 'alpha', 'scale', 'in', 'out', 'dtype'];
  const rows = r.modules.map((m) => [m.path, m.kind === 'replacement' ? `replace:${m.replaces}` : m.kind, num(m.rank), num(m.alpha), num(m.scale), num(m.in), num(m.out), m.dtype]);
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const right = new Set([2, 3, 4, 5, 6]);
  const line = (cells: string[]) => cells.map((c, i) => (right.has(i) ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join('  ').trimEnd();
  const out = [
    `${r.format.toUpperCase()} adapter "${r.name}": ${r.totals.pairs} LoRA module${r.totals.pairs === 1 ? '' : 's'}, ${r.replacements.length} replacement${r.replacements.length === 1 ? '' : 's'}, ${r.totals.parameters.toLocaleString('en-US')} parameters, ${humanBytes(r.totals.bytes)}${r.backend ? `, running on ${r.backend}` : ''}`,
    line(head),
    line(width.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  if (r.warnings.length) out.push('', 'warnings:', ...r.warnings.map((w) => `  ! ${w}`));
  return out.join('\n');
}
