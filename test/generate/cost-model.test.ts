import { afterEach, describe, expect, it, vi } from 'vitest';
import { CostModel, emptyStats, speculativeTokens, type DecodeTarget } from '../../src/generate/decode.js';

// The speculative cost model's estimates, against figures worked by hand.
describe('speculative cost model', () => {
  it('a draft step is the median of its timings: one slow step does not make drafting look unprofitable', () => {
    const c = new CostModel();
    for (let i = 0; i < 9; i++) c.addVerify(1, 0.335); // plain steps: c₁ = 0.335 ms
    for (let i = 0; i < 7; i++) c.addDraft(0.1);
    c.addDraft(1.7); // a worker woken from sleep, say
    c.accepted = 30;
    c.rejected = 6; // α = (30 + 2) / (36 + 4) = 0.8 with the prior
    expect(c.c1).toBe(0.335);
    expect(c.draftCost).toBe(0.1); // the mean would be 0.3
    expect(c.alpha).toBeCloseTo(0.8, 12);
    // Tokens per ms with γ drafts: E(γ) / (γ·d + c₁·(1 + 0.15γ)), E(γ) = (1 − α^(γ+1)) / (1 − α); plain: 1 / c₁ = 2.985.
    // d = 0.1: γ = 1 3.71, γ = 2 3.84, γ = 3 3.76 → 2. With d = 0.3 (the mean) no γ beats plain decoding.
    expect(c.bestGamma(8)).toBe(2);
  });

  it('no draft timings yet: no draft cost, and γ starts at 4 (capped)', () => {
    const c = new CostModel();
    expect(c.draftCost).toBeUndefined();
    c.addVerify(1, 0.3);
    expect(c.bestGamma(8)).toBe(4);
    expect(c.bestGamma(3)).toBe(3);
  });

  it("a separate drafter's catch-up counts in the round cost", () => {
    const c = new CostModel();
    for (let i = 0; i < 9; i++) c.addVerify(1, 0.335);
    for (let i = 0; i < 7; i++) c.addDraft(0.1);
    c.accepted = 30;
    c.rejected = 6; // α = 0.8
    c.draftRounds = 4;
    for (let i = 0; i < 4; i++) c.addCatchup(0.7); // 0.6 ms each beyond the 0.1 ms draft step
    expect(c.catchup).toBeCloseTo(0.6, 12);
    // E(γ) / (γ·0.1 + 0.6 + 0.335·(1 + 0.15γ)): γ = 1 … 6 1.66, 1.98, 2.13, 2.19, 2.19, 2.15, all under plain's 2.985.
    expect(c.bestGamma(8)).toBe(0);
    c.catchupMs = 4 * 0.2; // 0.1 ms each beyond a draft step: γ = 1 3.08, γ = 2 3.32, γ = 3 3.33 (not 2 % more) → 2
    expect(c.catchup).toBeCloseTo(0.1, 12);
    expect(c.bestGamma(8)).toBe(2);
  });

  it('could a drafter that is always right pay? (γ + 1) / (γ·d + v(γ + 1)) against 1 / c₁', () => {
    const c = new CostModel();
    for (let i = 0; i < 5; i++) c.addVerify(1, 0.335); // plain: 1 / 0.335 = 2.985 tokens per ms
    c.addDraft(0.2);
    c.addVerify(2, 0.64);
    c.addVerify(3, 0.95);
    // γ = 1: 2 / (0.2 + 0.64) = 2.38; γ = 2: 3 / (0.4 + 0.95) = 2.22: a verifier bound by its arithmetic.
    expect(c.couldPay(2)).toBe(false);
    const d = new CostModel();
    for (let i = 0; i < 5; i++) d.addVerify(1, 0.335);
    d.addDraft(0.2);
    d.addVerify(2, 0.4); // γ = 1: 2 / 0.6 = 3.33 > 2.985
    expect(d.couldPay(1)).toBe(true);
  });
});

// Targets that take a fixed time per call on a virtual clock (performance.now is stubbed: the cost model's
// decisions must not depend on how busy the test machine is) over a toy vocabulary: the verifier's next token after
// position q is (q + 1) mod 8; the drafter always proposes (q + 2) mod 8, so it is always rejected.
let clock = 0;
afterEach(() => {
  vi.restoreAllMocks();
});
function toyTarget(next: (q: number) => number, msPerCall: number, msPerExtraRow: number): DecodeTarget & { rounds: number } {
  const V = 8;
  const t = {
    vocab: V,
    rounds: 0,
    async run(ids: readonly number[], start: number, lastOnly: boolean) {
      t.rounds++;
      clock += msPerCall + msPerExtraRow * (ids.length - 1);
      const rows = lastOnly ? 1 : ids.length;
      const out = new Float32Array(rows * V);
      for (let r = 0; r < rows; r++) out[r * V + next(start + (lastOnly ? ids.length - 1 : r))] = 10;
      return out;
    },
    truncate() {},
  };
  return t;
}

describe("speculative decoding with 'auto': probing", () => {
  for (const sharedCache of [true, false]) {
    it(`probes at doubling intervals while drafting does not pay (${sharedCache ? 'shared' : 'separate'} cache), and stays lossless`, async () => {
      vi.spyOn(performance, 'now').mockImplementation(() => clock);
      // A verifier bound by weight streaming (an extra row costs 10 % of a step): a drafter that is always right would
      // pay, so probing for acceptance is worth it.
      const verifier = toyTarget((q) => (q + 1) % 8, 0.2, 0.02);
      const drafter = { target: toyTarget((q) => (q + 2) % 8, 0.05, 0.01), sharedCache };
      const stats = emptyStats(1);
      const out: number[] = [];
      for await (const tok of speculativeTokens(verifier, drafter, [0], { maxNewTokens: 300 }, { tokens: 'auto' }, stats)) out.push(tok);
      expect(out).toEqual(Array.from({ length: 300 }, (_, i) => (i + 1) % 8)); // the verifier's greedy tokens
      const s = stats.speculative!;
      // 3 plain rounds, 2 rounds of 4 drafts (γ starts at 4), then γ = 0 with probes after 16, 32, 64 and 128 plain
      // rounds (the 256 wait runs past the end): 6 drafting rounds. A probe every 16 rounds drafted in 20.
      expect(s.rounds).toBe(6);
      expect(s.accepted).toBe(0);
      // A separate drafter catches up before its first draft (the 5 tokens so far) and at each probe (the tokens since
      // the last drafting round: its correction and the plain rounds', 16, 32, 64, 128); a shared cache never does.
      expect([s.catchupSteps, s.catchupTokens]).toEqual(sharedCache ? [0, 0] : [5, 5 + 16 + 32 + 64 + 128]);
    });

    it(`does not probe where even a drafter that is always right could not pay (${sharedCache ? 'shared' : 'separate'} cache)`, async () => {
      vi.spyOn(performance, 'now').mockImplementation(() => clock);
      // Every extra row costs a whole step (a small model whose step is bound by arithmetic): verifying γ + 1 rows costs
      // γ + 1 steps, more than the γ + 1 tokens they could give.
      const verifier = toyTarget((q) => (q + 1) % 8, 0.2, 0.2);
      const drafter = { target: toyTarget((q) => (q + 2) % 8, 0.05, 0.01), sharedCache };
      const stats = emptyStats(1);
      const out: number[] = [];
      for await (const tok of speculativeTokens(verifier, drafter, [0], { maxNewTokens: 300 }, { tokens: 'auto' }, stats)) out.push(tok);
      expect(out).toEqual(Array.from({ length: 300 }, (_, i) => (i + 1) % 8));
      // The two opening rounds of 4 drafts, then plain to the end (the doubling schedule would have probed 4 times).
      expect(stats.speculative!.rounds).toBe(2);
    });
  }
});
