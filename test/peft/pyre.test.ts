import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { PyRegex, PyRegexBudgetError, PyRegexError } from '../../src/peft/pyre.js';

/**
 * The Python `re` engine PEFT's patterns run on, checked against CPython itself: the vectors in
 * test/fixtures/pyre/cpython-re-vectors.json were written by test/fixtures/pyre/gen.py under CPython 3.11
 * (`re.match` groups, `re.fullmatch`, and re.error messages), covering the patterns PEFT composes in
 * `get_pattern_key`, `check_target_module_exists` and its `modules_to_save` guard.
 */
interface Vectors {
  python: string;
  cases: ({ pattern: string; error: string } | { pattern: string; results: { s: string; match: (string | null)[] | null; full: boolean }[] })[];
  unsupported: string[];
}
const V = JSON.parse(readFileSync('test/fixtures/pyre/cpython-re-vectors.json', 'utf8')) as Vectors;
const budget = () => ({ steps: 50_000_000 });

function compileError(p: string): PyRegexError {
  try {
    PyRegex.compile(p);
  } catch (e) {
    expect(e).toBeInstanceOf(PyRegexError);
    return e as PyRegexError;
  }
  throw new Error(`expected ${p} to be refused`);
}

describe(`Python re semantics (vectors from CPython ${V.python})`, () => {
  for (const c of V.cases) {
    if ('error' in c) {
      test(`refused as Python refuses it: ${JSON.stringify(c.pattern)} (${c.error})`, () => {
        // Same verdict, and CPython's message starts with ours (a reference to a missing group is a backreference to us).
        const e = compileError(c.pattern);
        expect(c.error.startsWith(e.problem) || e.problem.startsWith('backreferences are not supported')).toBe(true);
      });
      continue;
    }
    test(`match/fullmatch agree with CPython: ${JSON.stringify(c.pattern)}`, () => {
      const re = PyRegex.compile(c.pattern);
      const got = c.results.map((r) => {
        const m = re.exec(r.s, budget());
        return { s: r.s, match: m ? Array.from({ length: re.groups }, (_, i) => m.group(i + 1) ?? null) : null, full: re.fullmatch(r.s, budget()) };
      });
      expect(got).toEqual(c.results);
    });
  }
});

describe('constructs refused by name (Python accepts them; they need backtracking or tables)', () => {
  test.each(V.unsupported)('%s', (p) => {
    const e = compileError(p);
    expect(e.construct.length).toBeGreaterThan(0);
    expect(e.message).toContain(e.construct);
  });
  test('messages name the construct and where it is', () => {
    expect(compileError('(a)\\1').message).toBe('backreferences are not supported (they cannot be matched in linear time): \\1 at position 3');
    expect(compileError('q_proj(?i)').message).toBe('global flags not at the start of the expression: (?i) at position 6');
    expect(compileError('a*+').message).toBe('possessive quantifiers are not supported (they need backtracking control): *+ at position 1');
  });
});

describe('bounded work', () => {
  // Issue 8, items 8–9: `(a+)+` against 41 characters doubles CPython's time per extra character. Here the work is
  // at most |text|·|program| thread steps, so it is asserted as a step count (no wall clock).
  test('(a+)+b on 41 characters takes a few hundred steps, not 2^41', () => {
    const b = { steps: 1_000_000 };
    expect(PyRegex.compile('(a+)+b').match('a'.repeat(41), b)).toBe(false);
    expect(1_000_000 - b.steps).toBeLessThan(42 * 10 * 2);
  });
  test('steps grow linearly with the text', () => {
    const cost = (n: number) => {
      const b = { steps: 1e9 };
      PyRegex.compile('(.*a){12}x').fullmatch(`x${'a'.repeat(n)}`, b);
      return 1e9 - b.steps;
    };
    expect(cost(2000)).toBeLessThan(2.2 * cost(1000));
  });
  test('an exhausted budget is an error, not a hang', () => {
    expect(() => PyRegex.compile('(a|aa)*c').match(`${'a'.repeat(5000)}c`, { steps: 1000 })).toThrow(PyRegexBudgetError);
  });
  test('a literal every match needs is checked before the VM runs', () => {
    const re = PyRegex.compile('(.*\\.)?(layers\\.\\d+\\.self_attn\\.(q|k)_proj)$');
    expect(re.required).toBe('.self_attn.');
    const b = { steps: 100 };
    expect(re.match('model.layers.0.mlp.up_proj', b)).toBe(false);
    expect(b.steps).toBe(100);
  });
  test('counted repeats are expanded up to a program-size limit', () => {
    expect(compileError('(a{1000}){1000}').problem).toMatch(/more than 10000 instructions/);
    expect(compileError('x'.repeat(5000)).problem).toMatch(/longer than 4096 characters/);
  });
});
