import { IoError } from './errors.js';

/**
 * Caps on what one load may cost, whatever the input claims. Every loader checks each cap before it
 * allocates or loops, and a breach is a typed error naming the limit (`expected: ≤ N (maxX)`), never an
 * untyped RangeError, a hang or an allocation the input sized. The table with the reasons for each default
 * is docs/limits.md; SECURITY.md says what the loaders guarantee.
 */
export interface LoadLimits {
  /** Largest safetensors JSON header, bytes. The Rust reference's MAX_HEADER_SIZE. */
  maxHeaderBytes: number;
  /** Deepest JSON nesting (arrays + objects; the top-level object is 1). serde_json's recursion limit. */
  maxJsonDepth: number;
  /** Largest JSON file (adapter_config.json, shard index) read whole, after any content decoding, bytes. */
  maxJsonBytes: number;
  /** Most tensors in one safetensors file or torch checkpoint. */
  maxTensors: number;
  /** Most dimensions of one tensor (NumPy's old NPY_MAXDIMS). */
  maxRank: number;
  /** Most elements of one tensor; for shapes with a 0 dim, the product of the other dims. */
  maxElements: number;
  /** Byte budget of one load: every file, range, zip entry and decoded HTTP body read counts against it. */
  maxTotalBytes: number;
  /** Largest ratio of decoded to stored bytes: deflated zip entries, content-encoded HTTP bodies, and torch views that repeat their storage (stride 0). */
  maxInflateRatio: number;
  /** Most entries in one zip (torch checkpoint). */
  maxZipEntries: number;
  /** Most keys of a PEFT config's `rank_pattern` and `alpha_pattern` together (each key is matched against every module). */
  maxPatternKeys: number;
}

/** The defaults: roomy for every real adapter and base checkpoint, tight enough that a small hostile file stays cheap. */
export const DEFAULT_LIMITS: Readonly<LoadLimits> = Object.freeze({
  maxHeaderBytes: 100_000_000,
  maxJsonDepth: 127,
  maxJsonBytes: 16 * 2 ** 20,
  maxTensors: 2 ** 20,
  maxRank: 32,
  maxElements: 2 ** 32,
  maxTotalBytes: 2 ** 36,
  maxInflateRatio: 32,
  maxZipEntries: 2 ** 20,
  maxPatternKeys: 65_536,
});

/** `DEFAULT_LIMITS` with the caller's overrides (undefined fields keep the default). */
export function resolveLimits(partial?: Partial<LoadLimits>): Readonly<LoadLimits> {
  if (!partial) return DEFAULT_LIMITS;
  const out: LoadLimits = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as (keyof LoadLimits)[]) {
    const v = partial[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !(v >= 0)) {
      throw new IoError('unsupported_source', 'load limit must be a non-negative number', { key: k, expected: '≥ 0', got: v });
    }
    out[k] = v;
  }
  return Object.freeze(out);
}

/**
 * The byte budget of one load (`maxTotalBytes`), shared by every read a FileSet makes. `take` reserves bytes
 * before they are read or allocated, so a breach throws before the memory is committed.
 */
export class ByteBudget {
  readonly limit: number;
  #used = 0;
  constructor(limit: number) {
    this.limit = limit;
  }
  get used(): number {
    return this.#used;
  }
  get remaining(): number {
    return Math.max(0, this.limit - this.#used);
  }
  /** Reserves `n` bytes for a read of `file` (IoError 'too_large' when the budget would be exceeded). */
  take(n: number, file: string): void {
    if (n > this.remaining) throw tooLarge(file, this.remaining, this.#used + n, 'maxTotalBytes', `${this.#used} bytes already read in this load`);
    this.#used += n;
  }
}

/** IoError 'too_large' naming the limit that was hit. */
export function tooLarge(file: string, limit: number, got: number | string, name: keyof LoadLimits | 'maxBytes', detail?: string): IoError {
  return new IoError('too_large', 'read exceeds a load limit', { file, expected: `≤ ${limit} bytes (${name})`, got, detail });
}
