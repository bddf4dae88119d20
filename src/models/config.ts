import { ModelError } from '../errors.js';

/**
 * A decoder's shape as every architecture file reads it from `config.json` (HF names differ per family:
 * `hidden_size` vs `n_embd`); the runtime only sees this.
 */
export interface DecoderConfig {
  /** HF `model_type`. */
  readonly modelType: string;
  readonly vocab: number;
  readonly hidden: number;
  readonly layers: number;
  /** Query heads. */
  readonly heads: number;
  /** Key/value heads (GQA: heads % kvHeads = 0). */
  readonly kvHeads: number;
  /** Width of one head (may differ from hidden / heads: Mistral, pycoder). */
  readonly headDim: number;
  /** MLP inner width. */
  readonly ffn: number;
  /** Norm epsilon. */
  readonly eps: number;
  /** The longest sequence the model supports (position table or RoPE context). */
  readonly maxPositions: number;
  /** lm_head shares the token embedding table. */
  readonly tied: boolean;
  /** Token ids that end generation (`eos_token_id`, a number or a list). */
  readonly eos: readonly number[];
  readonly bos?: number;
}

/**
 * Typed access to `config.json`: each getter names the key, what it expected and what it got when a value is
 * missing or of the wrong kind, so an unusable config fails before any weight is read.
 */
export class ConfigReader {
  constructor(
    readonly raw: Readonly<Record<string, unknown>>,
    readonly file = 'config.json',
  ) {}

  private fail(key: string, expected: string, got: unknown): never {
    throw new ModelError('config_invalid', 'config.json value is not usable', { file: this.file, key, expected, got: got === undefined ? 'missing' : got });
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  /** A positive integer (or the default when the key is absent or null). */
  int(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) this.fail(key, 'a positive integer', v);
    return v;
  }

  /** A finite positive number. */
  num(key: string, fallback?: number): number {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a positive number', v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', v);
    return v;
  }

  str(key: string, fallback?: string): string {
    const v = this.raw[key] ?? fallback;
    if (typeof v !== 'string') this.fail(key, 'a string', v);
    return v;
  }

  /** A nested object (rope_parameters), or undefined. */
  obj(key: string): ConfigReader | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) this.fail(key, 'an object', v);
    return new ConfigReader(v as Record<string, unknown>, `${this.file} › ${key}`);
  }

  /** `eos_token_id`: a number, a list of numbers, or absent. */
  ids(key: string): number[] {
    const v = this.raw[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) this.fail(key, 'a token id or a list of them', v);
    return list as number[];
  }

  /** Checks `value` against `allowed`, naming the key. */
  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.raw[key] ?? fallback;
    if (!allowed.includes(v as T)) this.fail(key, allowed.join(' | '), v);
    return v as T;
  }
}

/** GQA and head-width consistency, checked once for every architecture. */
export function checkHeads(c: DecoderConfig, r: ConfigReader): void {
  if (c.heads % c.kvHeads !== 0) throw new ModelError('config_invalid', 'query heads must be a multiple of key/value heads', { file: r.file, key: 'num_key_value_heads', expected: `a divisor of ${c.heads}`, got: c.kvHeads });
  if (c.headDim % 2 !== 0) throw new ModelError('config_invalid', 'RoPE needs an even head width', { file: r.file, key: 'head_dim', expected: 'an even number', got: c.headDim });
}
