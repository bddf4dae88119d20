// The README's example, exactly as written (its ```ts block), run with node against the built package with
// './pycoder/' pointing at the embedded model: it must print the oracle's prose and decode speculatively
// to the same tokens as plain greedy decoding.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';

const ROOT = new URL('../', import.meta.url).pathname;

test('README example runs as written and prints the oracle text', () => {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(readme)![1];
  const dir = mkdtempSync(join(tmpdir(), 'peftjs-readme-'));
  const script = code.replaceAll("from 'peftjs'", `from '${ROOT}dist/index.js'`).replaceAll("'./pycoder/", `'${ROOT}models/pycoder/`) +
    `\nconst plain = await lm.generate('def ', {});\nconsole.log('\\n' + JSON.stringify({ same: JSON.stringify(plain.tokens) === JSON.stringify(r.tokens), n: r.tokens.length }));\n`;
  writeFileSync(join(dir, 'example.mjs'), script);
  const out = spawnSync(process.execPath, [join(dir, 'example.mjs')], { encoding: 'utf8', timeout: 120_000 });
  expect(out.status, out.stderr).toBe(0);
  const o = JSON.parse(readFileSync(`${ROOT}test/fixtures/models/pycoder/oracle.json`, 'utf8'));
  expect(out.stdout.startsWith(o.prompts[0].greedy_on_text)).toBe(true);
  expect(JSON.parse(out.stdout.trim().split('\n').at(-1)!)).toEqual({ same: true, n: 64 });
});
