// `peftjs inspect` reads headers only: the same report as a full load, from the config and the safetensors header.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { inspect, inspectAdapter } from '../../src/cli/inspect.js';
import { init } from '../../src/backends/index.js';
import type { FileSet } from '../../src/io/fileset.js';
import { dirFileSet } from '../../src/io/node.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { GOLDEN, REAL } from '../lora/helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;

/** Every adapter folder among the fixtures that the loader accepts, with its safetensors weights. */
const adapters = [
  ...readdirSync(GOLDEN).flatMap((c) => (c === 'stacked' ? ['adapter-a', 'adapter-b'] : ['adapter']).map((a) => join(GOLDEN, c, a))),
  ...readdirSync(REAL).filter((d) => !d.endsWith('.tsv')).map((d) => join(REAL, d)),
].filter((dir) => readdirSync(dir).some((f) => f.endsWith('.safetensors')));

/** A directory FileSet that records every byte range read. */
function counting(dir: string): { files: FileSet; reads: { file: string; start: number; end: number }[] } {
  const inner = dirFileSet(dir);
  const reads: { file: string; start: number; end: number }[] = [];
  const files: FileSet = {
    name: dir,
    async open(file, o) {
      const src = await inner.open(file, o);
      return (
        src && {
          name: src.name,
          size: src.size,
          read: (start, end, signal) => {
            reads.push({ file, start, end });
            return src.read(start, end, signal);
          },
        }
      );
    },
    async readAll(file, o) {
      const b = await inner.readAll(file, o);
      if (b) reads.push({ file, start: 0, end: b.byteLength });
      return b;
    },
  };
  return { files, reads };
}

describe('inspect (headers only)', () => {
  test.each(adapters.map((a) => [a.slice(ROOT.length), a]))('%s: the same rows, totals and warnings as a full load', async (_, dir) => {
    await init();
    const full = (await LoRAContainer.load(dir)).report;
    const r = await inspectAdapter(dir);
    expect(r.headerOnly).toBe(true);
    expect(r.report.format).toBe(full.format);
    expect(r.report.name).toBe(full.name);
    expect(r.report.modules).toEqual(full.modules);
    expect(r.report.totals.pairs).toBe(full.totals.pairs);
    expect(r.report.totals.parameters).toBe(full.totals.parameters);
    expect(r.report.warnings).toEqual(full.warnings);
    expect(r.report.toString().split('\n').slice(1)).toEqual(full.toString().split('\n').slice(1));
  });

  test('reads the config and the safetensors header, and no tensor byte', async () => {
    const dir = join(REAL, 'smollm135m-qv');
    const weights = readFileSync(join(dir, 'adapter_model.safetensors'));
    const headerEnd = 8 + Number(weights.readBigUInt64LE(0));
    const { files, reads } = counting(dir);
    const r = await inspectAdapter(files as never);
    expect(r.headerOnly).toBe(true);
    const weightReads = reads.filter((x) => x.file === 'adapter_model.safetensors');
    expect(weightReads.length).toBeGreaterThan(0);
    expect(Math.max(...weightReads.map((x) => x.end))).toBeLessThanOrEqual(headerEnd);
    expect(headerEnd).toBeLessThan(weights.byteLength / 10);
  });

  test('a torch .bin adapter has no header to read: a full load', async () => {
    const r = await inspectAdapter(join(REAL, 't5-small-peft02-bin'));
    expect(r.headerOnly).toBe(false);
  });

  test('--full loads and validates everything', async () => {
    expect((await inspectAdapter(join(GOLDEN, 'basic/adapter'), { full: true })).headerOnly).toBe(false);
  });
});

test('peftjs inspect --json (the built CLI): one JSON object a script can read', () => {
  const r = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, 'inspect', `${GOLDEN}rslora/adapter`, '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  const cfg = JSON.parse(readFileSync(`${GOLDEN}rslora/adapter/adapter_config.json`, 'utf8')) as { r: number; lora_alpha: number };
  const json = JSON.parse(r.stdout) as { headerOnly: boolean; format: string; modules: { kind: string; rank: number; alpha: number; scale: number }[]; totals: { pairs: number } };
  expect(json.headerOnly).toBe(true);
  expect(json.format).toBe('peft');
  expect(json.totals.pairs).toBe(4);
  // rsLoRA: s = α/√r, worked out here from the config.
  for (const m of json.modules) expect(m).toMatchObject({ kind: 'linear', rank: cfg.r, alpha: cfg.lora_alpha, scale: cfg.lora_alpha / Math.sqrt(cfg.r) });
});

test('inspect of a malformed adapter: the loader’s typed error, not a crash', async () => {
  await expect(inspect(join(GOLDEN, 'nope'))).rejects.toMatchObject({ name: 'ConfigError', code: 'config_missing' });
});
