// A minimal stand-in for vitest's runner, for running test/gpu on the lent GPU machine (no vitest there):
// describe/it/test (+ .each, .skip, .skipIf), beforeAll/afterAll/beforeEach/afterEach, and vitest's own expect
// (@vitest/expect on chai) and vi.fn/vi.spyOn (@vitest/spy).
import * as chai from 'chai';
import { ASYMMETRIC_MATCHERS_OBJECT, ChaiStyleAssertions, customMatchers, getState, GLOBAL_EXPECT, JestAsymmetricMatchers, JestChaiExpect, JestExtend, setState } from '@vitest/expect';
import * as spy from '@vitest/spy';

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(ChaiStyleAssertions);
chai.use(JestAsymmetricMatchers);

export const expect: any = (value: unknown, message?: string) => {
  const { assertionCalls } = getState(expect);
  setState({ assertionCalls: assertionCalls + 1 }, expect);
  return chai.expect(value, message);
};
Object.assign(expect, chai.expect);
Object.assign(expect, (globalThis as any)[ASYMMETRIC_MATCHERS_OBJECT]);
expect.getState = () => getState(expect);
expect.setState = (s: any) => setState(s, expect);
setState({ assertionCalls: 0, isExpectingAssertions: false, isExpectingAssertionsError: null, expectedAssertionsNumber: null, expectedAssertionsNumberErrorGen: null, currentTestName: '' }, expect);
expect.extend = (m: any) => (chai.expect as any).extend(expect, m);
expect.assert = chai.assert;
expect.extend(customMatchers);
// Inline snapshots of strings only (what test/gpu uses): vitest prints a string snapshot in double quotes.
expect.extend({
  toMatchInlineSnapshot(received: unknown, snap: string) {
    const got = typeof received === 'string' ? `"${received}"` : JSON.stringify(received);
    const pass = got === snap.trim();
    return { pass, message: () => `inline snapshot: expected ${snap.trim()}, got ${got}` };
  },
});
(globalThis as any)[GLOBAL_EXPECT] = expect;

export const vi = { fn: spy.fn, spyOn: spy.spyOn, restoreAllMocks: () => spy.restoreAllMocks?.(), clearAllMocks: () => spy.clearAllMocks?.() };

type Fn = (...a: any[]) => any;
interface Suite { name: string; items: (Suite | Case)[]; beforeAll: Fn[]; afterAll: Fn[]; beforeEach: Fn[]; afterEach: Fn[]; kind: 'suite' }
interface Case { name: string; fn: Fn; skip: boolean; kind: 'case'; timeout?: number }
const newSuite = (name: string): Suite => ({ name, items: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [], kind: 'suite' });
let current: Suite = newSuite('');
export function beginFile(name: string): Suite {
  current = newSuite(name);
  return current;
}

function fmt(name: string, args: unknown[]): string {
  let i = 0;
  const one = args.length === 1 && args[0] && typeof args[0] === 'object' && !Array.isArray(args[0]) ? (args[0] as Record<string, unknown>) : undefined;
  let s = name.replace(/%[sidfjo]/g, () => String(args[i++]));
  if (one) s = s.replace(/\$([a-zA-Z_]\w*)/g, (_, k) => String(one[k]));
  return s;
}
const spread = (row: unknown) => (Array.isArray(row) ? row : [row]);

function describeImpl(name: string, fn: Fn) {
  const s = newSuite(name);
  current.items.push(s);
  const prev = current;
  current = s;
  try {
    fn();
  } finally {
    current = prev;
  }
}
function itImpl(name: string, fn: Fn, timeout?: number | object, skip = false) {
  current.items.push({ name, fn, skip, kind: 'case', timeout: typeof timeout === 'number' ? timeout : undefined });
}
const each = (impl: Fn) => (table: unknown[]) => (name: string, fn: Fn, t?: any) => {
  for (const row of table) impl(fmt(name, spread(row)), () => fn(...spread(row)), t);
};
export const describe: any = Object.assign(describeImpl, {
  each: each((n: string, f: Fn) => describeImpl(n, f)),
  skip: (n: string) => itImpl(n, () => undefined, undefined, true),
  skipIf: (c: boolean) => (c ? (n: string) => itImpl(n, () => undefined, undefined, true) : describeImpl),
  runIf: (c: boolean) => (c ? describeImpl : (n: string) => itImpl(n, () => undefined, undefined, true)),
});
export const it: any = Object.assign(itImpl, {
  each: each(itImpl),
  skip: (n: string, f: Fn) => itImpl(n, f, undefined, true),
  skipIf: (c: boolean) => (n: string, f: Fn, t?: any) => itImpl(n, f, t, c),
  runIf: (c: boolean) => (n: string, f: Fn, t?: any) => itImpl(n, f, t, !c),
});
export const test = it;
export const beforeAll = (f: Fn) => current.beforeAll.push(f);
export const afterAll = (f: Fn) => current.afterAll.push(f);
export const beforeEach = (f: Fn) => current.beforeEach.push(f);
export const afterEach = (f: Fn) => current.afterEach.push(f);

export interface Result { name: string; ok: boolean; skipped?: boolean; ms: number; error?: string }

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}

export async function runSuite(s: Suite, path: string[], each: { before: Fn[]; after: Fn[] }, out: Result[], log: (r: Result) => void): Promise<void> {
  const here = [...path, s.name].filter(Boolean);
  const before = [...each.before, ...s.beforeEach];
  const after = [...s.afterEach, ...each.after];
  let setupError: string | undefined;
  for (const h of s.beforeAll) {
    try {
      await withTimeout(Promise.resolve(h()), 60_000, `beforeAll in ${here.join(' > ')}`);
    } catch (e) {
      setupError = `beforeAll: ${(e as Error).stack ?? e}`;
      break;
    }
  }
  for (const item of s.items) {
    if (item.kind === 'suite') {
      if (setupError) out.push({ name: [...here, item.name].join(' > '), ok: false, ms: 0, error: setupError });
      else await runSuite(item, here, { before, after }, out, log);
      continue;
    }
    const name = [...here, item.name].join(' > ');
    if (item.skip) {
      const r = { name, ok: true, skipped: true, ms: 0 };
      out.push(r);
      log(r);
      continue;
    }
    const t0 = performance.now();
    let error = setupError;
    if (!error) {
      try {
        for (const h of before) await h();
        await withTimeout(Promise.resolve(item.fn({})), item.timeout ?? 120_000, name);
      } catch (e) {
        error = String((e as Error).stack ?? e).split('\n').slice(0, 8).join('\n');
      }
      for (const h of after) {
        try {
          await h();
        } catch (e) {
          error ??= `afterEach: ${(e as Error).message}`;
        }
      }
    }
    const r = { name, ok: !error, ms: performance.now() - t0, error };
    out.push(r);
    log(r);
  }
  for (const h of s.afterAll) {
    try {
      await h();
    } catch (e) {
      out.push({ name: `${here.join(' > ')} afterAll`, ok: false, ms: 0, error: String(e) });
    }
  }
}
