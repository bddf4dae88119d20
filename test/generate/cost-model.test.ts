import { describe, expect, it } from 'vitest';
import { CostModel } from '../../src/generate/decode.js';

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
});
