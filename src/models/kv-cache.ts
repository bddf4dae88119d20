import type { Backend } from '../backends/backend.js';
import { ModelError } from '../errors.js';
import type { Tensor } from '../tensor.js';

/**
 * The key/value cache of a decoder, preallocated on the backend's device: per layer, K and V
 * `[kvHeads, maxLen, hd]` (head-major, so attention reads each head's keys contiguously).
 * `length` is how many positions hold valid entries; `truncate(n)` rolls back rejected draft tokens
 * (their entries are simply overwritten by the next write).
 */
export class KVCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  #length = 0;

  constructor(
    readonly backend: Backend,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly maxLen: number,
  ) {
    // Unfilled where the backend can: attention reads positions 0 … length only, each written first, and a
    // zero fill would touch every page of a cache that a short sequence mostly never reaches (pycoder: 6 MB of
    // page faults, a fifth of a fresh process's first generate; a draft model's cache is new every generate).
    const alloc = (shape: number[]) => backend.empty?.(shape) ?? backend.zeros(shape);
    for (let l = 0; l < layers; l++) {
      this.k.push(alloc([kvHeads, maxLen, headDim]));
      this.v.push(alloc([kvHeads, maxLen, headDim]));
    }
  }

  /** Positions holding valid entries (the next token goes at this position). */
  get length(): number {
    return this.#length;
  }

  /** Bytes held on the device. */
  get byteLength(): number {
    return 2 * this.layers * this.kvHeads * this.maxLen * this.headDim * 4;
  }

  /** Throws `context_full` when `extra` more positions would not fit. */
  reserve(start: number, extra: number): void {
    if (start < 0 || start > this.#length) throw new ModelError('bad_option', 'a forward must continue the cached sequence', { expected: `start ≤ ${this.#length}`, got: start, where: 'KVCache' });
    if (start + extra > this.maxLen) throw new ModelError('context_full', 'the sequence does not fit the KV cache', { expected: `≤ ${this.maxLen} positions`, got: start + extra, where: 'KVCache', detail: 'pass a larger maxLength to CausalLM.load, or generate fewer tokens' });
  }

  /** Marks positions `[0, n)` valid after a forward wrote them. */
  commit(n: number): void {
    this.#length = n;
  }

  /** Rolls back to the first `n` positions (rejected draft tokens); entries past n are overwritten later. */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.#length) throw new ModelError('bad_option', 'truncate past the cached length', { expected: `0 ≤ n ≤ ${this.#length}`, got: n, where: 'KVCache.truncate' });
    this.#length = n;
  }

  /** Frees the device memory. */
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
    this.k.length = 0;
    this.v.length = 0;
    this.#length = 0;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
