import { ModelError } from '../errors.js';
import { Rng, argmax, checkSampling, sampleToken, topProbability, type SamplingOptions } from './sampling.js';

/**
 * What the decoding loops drive: a model set up one way (adapters on or off, all layers or an early exit) over
 * one KV cache. generate/ knows nothing of layers or files: models/ hands it these.
 */
export interface DecodeTarget {
  readonly vocab: number;
  /** ids at positions `start …` (the cache holds `start` positions) → logits `[rows, vocab]`, rows = 1 with lastOnly. */
  run(ids: readonly number[], start: number, lastOnly: boolean): Promise<Float32Array>;
  /** Keeps the first n cached positions (rolls back rejected drafts). */
  truncate(n: number): void;
}

/** Speculative decoding: a drafter proposes tokens, the target verifies them in one batched forward. */
export interface DraftOptions {
  /** Most tokens drafted per round, or 'auto' (picked each round from the measured costs and acceptance). Default 'auto'. */
  tokens?: number | 'auto';
  /** Stop drafting early when the drafter's top-1 probability falls below this (adaptive draft length). Default 0.2; 0 = never. */
  minProbability?: number;
}

export interface DecodeOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Token ids that end generation (the model's eos by default, added by the caller). */
  stopTokens?: readonly number[];
  signal?: AbortSignal;
}

export interface SpeculativeStats {
  /** Verification rounds (one batched target forward each). */
  rounds: number;
  drafted: number;
  accepted: number;
  /** Rounds whose drafts the verifier cut short (a disagreement). */
  rejected: number;
  /**
   * Per-token acceptance α: accepted ÷ (accepted + rejected), the probability that the verifier agrees with the
   * next drafted token (comparable to a drafter's top-1 agreement; drafts after a rejection are not counted).
   */
  acceptanceRate: number;
  /** accepted ÷ drafted: the share of drafted tokens kept (≤ α; lower when γ is long). */
  keptShare: number;
  /** Tokens produced per verification (accepted + the target's own). */
  tokensPerRound: number;
  /** Median ms of one draft step ÷ median ms of one plain target step (m = 1); from this run's measurements. */
  draftCostRatio: number;
  /** Mean ms of a verification ÷ median ms of one plain target step. */
  verifyCostRatio: number;
  /** Speed-up over plain decoding that the measured acceptance and costs predict: tokens per round × c₁ ÷ round cost
   * (drafts, a separate drafter's catch-up, verification). */
  predictedSpeedup: number;
  /** Rounds that drafted nothing because the cost model said drafting would not pay. */
  plainSteps: number;
  /** A separate drafter (`sharedCache: false` or its own model): its forwards over more than one token, which bring its
   * cache up to the tokens it has not seen (plain rounds, the verifier's corrections), and the tokens they covered. */
  catchupSteps: number;
  catchupTokens: number;
}

export interface DecodeStats {
  promptTokens: number;
  newTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  speculative?: SpeculativeStats;
}

const now = () => (globalThis.performance ?? Date).now();

function checkDecode(o: DecodeOptions, prompt: readonly number[], vocab: number): void {
  checkSampling(o);
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new ModelError('bad_option', 'maxNewTokens must be an integer ≥ 0', { key: 'maxNewTokens', expected: 'an integer ≥ 0', got: o.maxNewTokens });
  if (prompt.length === 0) throw new ModelError('bad_ids', 'the prompt is empty', { expected: 'at least one token id', got: 0 });
  const bad = prompt.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
  if (bad >= 0) throw new ModelError('bad_ids', 'token id out of range', { key: `prompt[${bad}]`, expected: `0 ≤ id < ${vocab}`, got: prompt[bad] });
}

function aborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ModelError('aborted', 'generation was aborted', { cause: signal.reason });
}

function finish(stats: DecodeStats): void {
  stats.prefillTokensPerSecond = stats.prefillMs > 0 ? (stats.promptTokens * 1000) / stats.prefillMs : 0;
  // The first new token comes from the prefill; each later one from a decode step (or a share of a round).
  const steps = Math.max(stats.newTokens - 1, 0);
  stats.decodeTokensPerSecond = stats.decodeMs > 0 ? (steps * 1000) / stats.decodeMs : 0;
}

export function emptyStats(promptTokens: number): DecodeStats {
  return { promptTokens, newTokens: 0, prefillMs: 0, decodeMs: 0, prefillTokensPerSecond: 0, decodeTokensPerSecond: 0 };
}

/** Plain autoregressive decoding: prefill, then one forward per token. Yields each new token id. */
export async function* decodeTokens(target: DecodeTarget, prompt: readonly number[], o: DecodeOptions, stats: DecodeStats): AsyncGenerator<number> {
  checkDecode(o, prompt, target.vocab);
  const rng = new Rng(o.seed ?? 0);
  const stop = new Set(o.stopTokens ?? []);
  const history = [...prompt];
  if (o.maxNewTokens === 0) return;
  aborted(o.signal);
  let t = now();
  let logits = await target.run(prompt, 0, true);
  stats.prefillMs += now() - t;
  for (;;) {
    const tok = sampleToken(logits, target.vocab, o, rng, history);
    history.push(tok);
    stats.newTokens++;
    finish(stats);
    yield tok;
    if (stop.has(tok) || stats.newTokens >= o.maxNewTokens) return;
    aborted(o.signal);
    t = now();
    logits = await target.run([tok], history.length - 1, true);
    stats.decodeMs += now() - t;
  }
}

/** A drafter: its own target, and whether it shares the verifier's KV cache (self-speculation). */
export interface Drafter {
  readonly target: DecodeTarget;
  /** True when drafter and verifier write one cache (the verifier's entries overwrite the drafter's). */
  readonly sharedCache: boolean;
}

/** Expected tokens per round with per-token acceptance α and γ drafts: (1 − α^(γ+1)) / (1 − α). */
export function expectedTokens(alpha: number, gamma: number): number {
  if (alpha >= 1) return gamma + 1;
  return (1 - alpha ** (gamma + 1)) / (1 - alpha);
}

/** The median of a few timings (the upper one of an even count). */
function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * Running cost model: the draft step d and the plain step c₁ as medians of their timings (a draft step after a
 * stretch of plain steps can pay a thread wake-up or a cold path: one 1.7 ms step among 0.3 ms ones put a mean at
 * 1.5 c₁), verification per batch size as means.
 */
export class CostModel {
  readonly drafts: number[] = [];
  readonly verify = new Map<number, { ms: number; n: number }>();
  accepted = 0;
  rejected = 0;
  /** A separate drafter's steps over several tokens (catch-up, then a draft): their ms summed and counted. */
  catchupMs = 0;
  catchupSteps = 0;
  /** Rounds that drafted (γ ≥ 1). */
  draftRounds = 0;

  addDraft(ms: number): void {
    this.drafts.push(ms);
  }
  /** A drafter step over several tokens: the tokens it has not seen yet, then its draft. */
  addCatchup(ms: number): void {
    this.catchupMs += ms;
    this.catchupSteps++;
  }
  /** Catch-up per drafting round: what those steps took beyond a draft step each (0 with a shared cache). */
  get catchup(): number {
    if (!this.draftRounds || !this.catchupSteps) return 0;
    return Math.max(0, this.catchupMs - this.catchupSteps * (this.draftCost ?? 0)) / this.draftRounds;
  }
  /** Plain steps' times: c₁ is their median (robust to a slow first step or a busy machine). */
  readonly plain: number[] = [];
  get c1(): number | undefined {
    if (!this.plain.length) return this.verifyCost(1);
    return median(this.plain);
  }
  addVerify(rows: number, ms: number): void {
    if (rows === 1) this.plain.push(ms);
    const v = this.verify.get(rows) ?? { ms: 0, n: 0 };
    v.ms += ms;
    v.n++;
    this.verify.set(rows, v);
  }
  /** Mean ms of a target forward over `rows` tokens: measured, else interpolated from c₁ (prior: +15 % per extra row). */
  verifyCost(rows: number): number | undefined {
    const v = this.verify.get(rows);
    if (v && v.n > 0) return v.ms / v.n;
    const one = this.verify.get(1);
    const known = [...this.verify.entries()].filter(([, x]) => x.n > 0).sort((a, b) => a[0] - b[0]);
    if (known.length === 0) return undefined;
    if (known.length >= 2) {
      // Least squares over the measured batch sizes: ms ≈ a + b·rows.
      const pts = known.map(([r, x]) => [r, x.ms / x.n]);
      const mx = pts.reduce((s, p) => s + p[0], 0) / pts.length;
      const my = pts.reduce((s, p) => s + p[1], 0) / pts.length;
      const sxx = pts.reduce((s, p) => s + (p[0] - mx) ** 2, 0);
      const b = Math.max(sxx > 0 ? pts.reduce((s, p) => s + (p[0] - mx) * (p[1] - my), 0) / sxx : 0, 0);
      return my + b * (rows - mx);
    }
    const [r0, x0] = known[0];
    const base = one ? one.ms / one.n : x0.ms / x0.n / (1 + 0.15 * (r0 - 1));
    return base * (1 + 0.15 * (rows - 1));
  }
  get alpha(): number {
    // Per-token acceptance with a weak prior (½ on 4 tokens) until the drafter has shown its own.
    return (this.accepted + 2) / (this.accepted + this.rejected + 4);
  }
  get draftCost(): number | undefined {
    return this.drafts.length ? median(this.drafts) : undefined;
  }
  /** γ maximising predicted tokens per ms (0 = decode plainly); `max` caps it. */
  bestGamma(max: number): number {
    const cd = this.draftCost;
    const c1 = this.c1;
    if (cd === undefined || c1 === undefined) return Math.min(4, max);
    let best = 0;
    let bestRate = 1 / c1;
    for (let g = 1; g <= max; g++) {
      const rate = expectedTokens(this.alpha, g) / this.roundCost(g, cd, c1);
      if (rate > bestRate * 1.02) {
        best = g;
        bestRate = rate;
      }
    }
    return best;
  }
  /**
   * Whether a drafter whose every draft the verifier accepted (α = 1: γ + 1 tokens a round) would beat plain decoding
   * at some γ ≤ `max` with the measured costs: (γ + 1) ÷ (γ·d + catch-up + v(γ + 1)) > 1 ÷ c₁. When not (a verifier
   * whose batch cost grows like its rows, as on a small compute-bound model), no acceptance can make drafting pay, so
   * probing for it is wasted.
   */
  couldPay(max: number): boolean {
    const cd = this.draftCost;
    const c1 = this.c1;
    if (cd === undefined || c1 === undefined) return true;
    for (let g = 1; g <= max; g++) if ((g + 1) / this.roundCost(g, cd, c1) > 1 / c1) return true;
    return false;
  }
  /** One round's cost at γ = g: γ draft steps d, the catch-up, and verifying g + 1 rows (v(1) = c₁ until measured). */
  private roundCost(g: number, cd: number, c1: number): number {
    return g * cd + this.catchup + (this.verifyCost(g + 1) ?? c1 * (1 + 0.15 * g));
  }
}

/**
 * Greedy speculative decoding, lossless: the drafter proposes up to γ tokens (stopping early when its top-1
 * probability drops below `minProbability`), the verifier scores [last, d₁ … d_γ] in one forward, the longest
 * prefix where the verifier's argmax equals the draft is kept plus the verifier's own next token, and the cache
 * entries of rejected drafts are rolled back. The output is exactly the verifier's greedy decoding.
 */
export async function* speculativeTokens(
  verifier: DecodeTarget,
  drafter: Drafter,
  prompt: readonly number[],
  o: DecodeOptions,
  d: DraftOptions,
  stats: DecodeStats,
): AsyncGenerator<number> {
  checkDecode(o, prompt, verifier.vocab);
  if (o.temperature || (o.repetitionPenalty ?? 1) !== 1) {
    throw new ModelError('bad_option', 'speculative decoding here is greedy (lossless); sampling options do not apply', { key: 'draft', expected: 'no temperature / repetitionPenalty with draft', got: { temperature: o.temperature, repetitionPenalty: o.repetitionPenalty } });
  }
  const maxTokens = d.tokens ?? 'auto';
  if (maxTokens !== 'auto' && !(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens <= 64)) throw new ModelError('bad_option', 'draft.tokens must be 1…64 or "auto"', { key: 'draft.tokens', expected: '1…64 | "auto"', got: maxTokens });
  const minP = d.minProbability ?? 0.2;
  const stop = new Set(o.stopTokens ?? []);
  const vocab = verifier.vocab;
  const cost = new CostModel();
  const spec: SpeculativeStats = { rounds: 0, drafted: 0, accepted: 0, rejected: 0, acceptanceRate: 0, keptShare: 0, tokensPerRound: 0, draftCostRatio: 0, verifyCostRatio: 0, predictedSpeedup: 1, plainSteps: 0, catchupSteps: 0, catchupTokens: 0 };
  stats.speculative = spec;
  if (o.maxNewTokens === 0) return;
  aborted(o.signal);

  let t = now();
  const first = await verifier.run(prompt, 0, true);
  stats.prefillMs += now() - t;
  const seq = [...prompt, argmax(first, vocab)];
  let drafterCached = 0; // positions the drafter's own cache holds (separate drafter only)
  let step = 0;
  let plainStreak = 0;
  /** With γ 'auto', a plain round every this many rounds re-measures c₁; a probe round re-measures α after this many plain ones. */
  const PROBE = 16;
  /** Each probe that leaves γ at 0 doubles the wait before the next, up to this (a probe costs a draft step and a
   * 2-row verification, and with a separate cache the drafter's catch-up over every token since the last one). */
  const PROBE_MAX = 256;
  let probeEvery = PROBE;
  /** Plain rounds first: c₁ is measured, not extrapolated (three samples, the median used). */
  const WARM_PLAIN = 3;
  let verifyRows = 0;
  let verifyMs = 0;

  const emit = function* (toks: readonly number[]): Generator<number, boolean> {
    for (const tok of toks) {
      stats.newTokens++;
      finish(stats);
      yield tok;
      if (stop.has(tok) || stats.newTokens >= o.maxNewTokens) return true;
    }
    return false;
  };
  if (yield* emit([seq[seq.length - 1]])) return finalize();

  for (;;) {
    aborted(o.signal);
    const remaining = o.maxNewTokens - stats.newTokens;
    const cap = Math.min(maxTokens === 'auto' ? 8 : maxTokens, remaining - 1);
    // The first round is plain: it measures c₁, the cost of one full step, which the cost model and the predicted
    // speed-up are relative to. With 'auto', γ is then the cost model's choice; when it says "decode plainly", a
    // γ = 1 probe after PROBE plain rounds keeps α and the draft cost current (the drafter may start agreeing again);
    // while probes keep saying "plain", they come at doubling intervals, and not at all while even a drafter that is
    // always right could not pay (CostModel.couldPay).
    let gamma: number;
    if (cap <= 0 || step < WARM_PLAIN) gamma = 0;
    else if (maxTokens !== 'auto') gamma = Math.min(maxTokens, cap);
    else if (spec.rounds < 2) gamma = Math.min(4, cap);
    else {
      gamma = cost.bestGamma(cap);
      if (gamma > 0) {
        plainStreak = 0;
        probeEvery = PROBE;
      } else if (++plainStreak >= probeEvery && cost.couldPay(cap)) {
        gamma = 1;
        plainStreak = 0;
        probeEvery = Math.min(2 * probeEvery, PROBE_MAX);
      }
    }
    step++;
    const roundStart = now();
    // Draft.
    const drafts: number[] = [];
    let start = drafter.sharedCache ? seq.length - 1 : drafterCached;
    let pending = seq.slice(start);
    for (let i = 0; i < gamma; i++) {
      const t0 = now();
      const dl = await drafter.target.run(pending, start, true);
      const tok = argmax(dl, vocab);
      // A catch-up step (a separate drafter processing several accepted tokens) is not a draft step's cost; its
      // excess over one is the round's catch-up.
      if (pending.length === 1) cost.addDraft(now() - t0);
      else {
        cost.addCatchup(now() - t0);
        spec.catchupSteps++;
        spec.catchupTokens += pending.length;
      }
      drafts.push(tok);
      start += pending.length;
      pending = [tok];
      if (minP > 0 && topProbability(dl, vocab) < minP) break;
    }
    drafterCached = start;
    if (gamma > 0) cost.draftRounds++;
    // Verify [last, d₁ … d_γ] at once.
    const vstart = seq.length - 1;
    const t1 = now();
    const vl = await verifier.run([seq[vstart], ...drafts], vstart, drafts.length === 0);
    const vms = now() - t1;
    cost.addVerify(drafts.length + 1, vms);
    verifyRows += drafts.length + 1;
    verifyMs += vms;
    let j = 0;
    while (j < drafts.length && argmax(vl, vocab, j) === drafts[j]) j++;
    const out = [...drafts.slice(0, j), argmax(vl, vocab, j)];
    verifier.truncate(vstart + 1 + j);
    if (!drafter.sharedCache) {
      drafterCached = Math.min(drafterCached, vstart + 1 + j);
      drafter.target.truncate(drafterCached);
    }
    if (drafts.length) {
      spec.rounds++;
      spec.drafted += drafts.length;
      spec.accepted += j;
      if (j < drafts.length) spec.rejected++;
      cost.rejected += j < drafts.length ? 1 : 0;
      cost.accepted += j;
    } else spec.plainSteps++;
    stats.decodeMs += now() - roundStart;
    seq.push(...out);
    if (yield* emit(out)) return finalize();
  }

  function finalize(): void {
    const c1 = cost.c1;
    const cd = cost.draftCost;
    spec.acceptanceRate = spec.accepted + spec.rejected ? spec.accepted / (spec.accepted + spec.rejected) : 0;
    spec.keptShare = spec.drafted ? spec.accepted / spec.drafted : 0;
    const rounds = spec.rounds + spec.plainSteps;
    spec.tokensPerRound = rounds ? (stats.newTokens - 1) / rounds : 0;
    if (c1 && cd !== undefined) {
      spec.draftCostRatio = cd / c1;
      const meanRows = rounds ? verifyRows / rounds : 1;
      spec.verifyCostRatio = rounds ? verifyMs / rounds / c1 : 1;
      const meanDrafts = meanRows - 1;
      const catchup = (cost.catchup * cost.draftRounds) / Math.max(rounds, 1);
      spec.predictedSpeedup = (spec.tokensPerRound * c1) / (meanDrafts * cd + catchup + verifyMs / Math.max(rounds, 1));
    }
  }
}
