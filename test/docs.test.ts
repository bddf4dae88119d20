// docs/errors.md has a row for every error code in src/errors.ts, under its class (the table users look codes up in).
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';

const ROOT = new URL('../', import.meta.url).pathname;

test('docs/errors.md lists every code of every PeftError subclass', () => {
  const src = readFileSync(`${ROOT}src/errors.ts`, 'utf8');
  const doc = readFileSync(`${ROOT}docs/errors.md`, 'utf8');
  // `export type XCode = | 'a' | 'b';` … `export class YError extends PeftError<XCode>`
  const codes = new Map<string, string[]>();
  for (const m of src.matchAll(/export type (\w+) =([^;]+);/g)) codes.set(m[1]!, [...m[2]!.matchAll(/'(\w+)'/g)].map((c) => c[1]!));
  const classes = [...src.matchAll(/export class (\w+) extends PeftError<(\w+)>/g)];
  expect(classes.length).toBeGreaterThanOrEqual(8);
  const sections = doc.split(/^## /m).slice(1);
  for (const [, cls, type] of classes) {
    const section = sections.find((s) => s.startsWith(`${cls}:`));
    expect(section, `a "## ${cls}: …" section`).toBeDefined();
    const documented = [...section!.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort(), cls).toEqual([...codes.get(type!)!].sort());
  }
});
