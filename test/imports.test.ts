import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect, test } from 'vitest';

/**
 * The import graph of src/ has no cycle (a cycle makes load order decide which side sees `undefined`, and keeps the
 * folders from layering). Edges are static value imports and re-exports; `import type` / `export type` vanish at
 * compile time and `import()` is lazy, so neither counts.
 */
const SRC = resolve(__dirname, '../src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.ts$/.test(n) && !n.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative value imports of one file, as absolute .ts paths. */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+'(\.[^']+)'/gms;
  for (const m of text.matchAll(re)) {
    if (m[2]) continue; // import type … / export type …
    const names = m[3]!;
    // `import { type A, type B } from` is type-only too.
    if (/^\{[^}]*\}$/s.test(names) && names.slice(1, -1).split(',').every((x) => !x.trim() || /^type\s/.test(x.trim()))) continue;
    out.push(resolve(dirname(file), m[4]!.replace(/\.js$/, '.ts')));
  }
  for (const m of text.matchAll(/^\s*import\s+'(\.[^']+)'/gm)) out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  return out;
}

/** Every cycle found by a depth-first walk (each reported once, from where it was entered). */
export function cycles(all: readonly string[]): string[][] {
  const graph = new Map(all.map((f) => [f, imports(f)]));
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const g of graph.get(f) ?? []) {
      if (state.get(g) === 'open') found.push(stack.slice(stack.indexOf(g)).concat(g));
      else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of all) if (!state.has(f)) visit(f);
  return found;
}

test('src/ has no import cycle', () => {
  const all = files(SRC);
  expect(all.length).toBeGreaterThan(50);
  const found = cycles(all).map((c) => c.map((f) => relative(SRC, f)).join(' → '));
  expect(found).toEqual([]);
});

test('the walk finds a cycle when there is one (the checker checks)', () => {
  const tmp = resolve(__dirname, '../test/fixtures/import-cycle');
  const found = cycles(files(tmp)).map((c) => c.map((f) => relative(tmp, f)).join(' → '));
  expect(found).toEqual(['a.ts → b.ts → a.ts']);
});

test('lora/ imports no loader (adapter plumbing, peft/, mlx/, io/, formats/)', () => {
  const bad = files(join(SRC, 'lora')).flatMap((f) => imports(f).filter((g) => /\/src\/(adapter|peft|mlx|io|formats)\//.test(g)).map((g) => `${relative(SRC, f)} → ${relative(SRC, g)}`));
  expect(bad).toEqual([]);
});
