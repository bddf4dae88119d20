// Node's `webgpu` package (Dawn) dies with the object `create()` returned: the backend must hold it. The user's
// reference is dropped, GC is forced, then forwards run (in a child process with --expose-gc, on the built package).
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;

it('createBackend("webgpu", { gpu: create([]) }) keeps Dawn alive after the caller drops the reference and GC runs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peftjs-gc-'));
  const script = join(dir, 'gc.mjs');
  writeFileSync(
    script,
    `import { createRequire } from 'node:module';
const require = createRequire('${ROOT}package.json');
const { create, globals } = require('webgpu');
Object.assign(globalThis, globals);
const { createBackend, Linear, Tensor } = await import('${ROOT}dist/index.js');
const b = await createBackend('webgpu', { gpu: create([]) });
for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
const lin = new Linear(Tensor.f32([1, 2, 3, 4], [2, 2]), undefined, { backend: b });
let sum = 0;
for (let i = 0; i < 20; i++) { globalThis.gc(); const y = await lin.forward(Tensor.f32([1, 1], [1, 2])).read(); sum += y[0] + y[1]; }
console.log(JSON.stringify({ sum }));
process.exit(0);
`,
  );
  const r = spawnSync(process.execPath, ['--expose-gc', script], { encoding: 'utf8', timeout: 120_000, env: { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json', ...process.env } });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ sum: 20 * (3 + 7) });
});
