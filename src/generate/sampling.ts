import { ModelError } from '../errors.js';

/** How the next token is chosen. No temperature (or 0) is greedy: the first index of the largest logit. */
export interface SamplingOptions {
  /** Softmax temperature; 0 or absent = greedy. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 / absent = all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 / absent = all). */
  topP?: number;
  /** CTRL's penalty on tokens already in the sequence: logit ÷ p if positive, × p if negative (1 = none). */
  repetitionPenalty?: number;
  /** Seed of the sampler's PRNG: the same seed, prompt and options give the same tokens. */
  seed?: number;
}

/** Checks sampling options once, before any work (typed error naming the option). */
export function checkSampling(o: SamplingOptions): void {
  const bad = (key: string, expected: string, got: unknown) => {
    throw new ModelError('bad_option', 'invalid sampling option', { key, expected, got });
  };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad('temperature', 'a finite number ≥ 0', o.temperature);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('topK', 'an integer ≥ 0', o.topK);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('topP', '0 < topP ≤ 1', o.topP);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetitionPenalty', 'a finite number > 0', o.repetitionPenalty);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) bad('seed', 'an integer', o.seed);
}

/** xoshiro128**: a small, fast, seedable PRNG (splitmix32 expands the seed); `next()` ∈ [0, 1). */
export class Rng {
  #s = new Uint32Array(4);
  constructor(seed = 0) {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  next(): number {
    const s = this.#s;
    const r = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ((s[3] << 11) | (s[3] >>> 21)) >>> 0;
    return r / 4294967296;
  }
}

/** Index of the largest value (the first one on ties, as torch.argmax). `row` picks a row of `[rows, vocab]`. */
export function argmax(logits: Float32Array, vocab = logits.length, row = 0): number {
  const o = row * vocab;
  let best = 0;
  let bestV = logits[o];
  for (let i = 1; i < vocab; i++) {
    const v = logits[o + i];
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/** Softmax probability of the top token of a row (the drafter's confidence). */
export function topProbability(logits: Float32Array, vocab: number, row = 0): number {
  const o = row * vocab;
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[o + i] > max) max = logits[o + i];
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[o + i] - max);
  return 1 / sum;
}

/**
 * Picks the next token from one row of logits, as transformers' processors do in order: repetition penalty,
 * temperature, top-k, top-p, then a draw from the softmax. Greedy (argmax) when temperature is 0 / absent.
 * `history` is the sequence so far (for the penalty).
 */
export function sampleToken(logits: Float32Array, vocab: number, o: SamplingOptions, rng: Rng, history: readonly number[], row = 0): number {
  const pen = o.repetitionPenalty ?? 1;
  const greedy = !o.temperature;
  if (greedy && pen === 1) return argmax(logits, vocab, row);
  const x = Float64Array.from(logits.subarray(row * vocab, (row + 1) * vocab));
  if (pen !== 1) {
    for (const id of new Set(history)) if (id >= 0 && id < vocab) x[id] = x[id] > 0 ? x[id] / pen : x[id] * pen;
  }
  if (greedy) {
    let best = 0;
    for (let i = 1; i < vocab; i++) if (x[i] > x[best]) best = i;
    return best;
  }
  for (let i = 0; i < vocab; i++) x[i] /= o.temperature!;
  // Candidates sorted by logit, descending (stable: lower id first on ties).
  let order = Array.from({ length: vocab }, (_, i) => i).sort((a, b) => x[b] - x[a] || a - b);
  if (o.topK && o.topK < vocab) order = order.slice(0, o.topK);
  const max = x[order[0]];
  let probs = order.map((i) => Math.exp(x[i] - max));
  let sum = probs.reduce((a, b) => a + b, 0);
  if (o.topP !== undefined && o.topP < 1) {
    // Keep the most likely tokens until their mass reaches topP (at least one).
    let acc = 0;
    let keep = 0;
    while (keep < order.length) {
      acc += probs[keep] / sum;
      keep++;
      if (acc >= o.topP) break;
    }
    order = order.slice(0, keep);
    probs = probs.slice(0, keep);
    sum = probs.reduce((a, b) => a + b, 0);
  }
  let u = rng.next() * sum;
  for (let i = 0; i < order.length; i++) {
    u -= probs[i];
    if (u < 0) return order[i];
  }
  return order[order.length - 1];
}
