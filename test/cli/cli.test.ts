// The `peftjs` command as users run it: the built dist/cli.js (npm test builds first).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string };
const run = (...args: string[]) => spawnSync(process.execPath, [`${ROOT}dist/cli.js`, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('peftjs CLI', () => {
  it('--version prints the package version', () => {
    const r = run('--version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  });

  it('--help lists the commands', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage:');
    expect(r.stdout).toContain('inspect <adapter>');
  });

  it('inspect prints the report of a PEFT adapter: ranks, alphas and scales from its config', () => {
    const r = run('inspect', `${ROOT}test/fixtures/golden/rslora/adapter`);
    expect(r.status).toBe(0);
    const cfg = JSON.parse(readFileSync(`${ROOT}test/fixtures/golden/rslora/adapter/adapter_config.json`, 'utf8')) as { r: number; lora_alpha: number };
    // rsLoRA: s = α/√r, worked out here from the config, not taken from the library.
    const s = cfg.lora_alpha / Math.sqrt(cfg.r);
    expect(r.stdout).toMatch(/^PEFT adapter "default": 4 LoRA modules/);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('model.'));
    expect(rows).toHaveLength(4);
    for (const row of rows) expect(row.split(/\s+/).slice(1, 5)).toEqual(['linear', String(cfg.r), String(cfg.lora_alpha), String(s)]);
  });

  it('demo (npm start) runs on a small embedded default and says off ≡ base', () => {
    const r = run('demo', '--m', '2', '--k', '64', '--n', '48', '--r', '4');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\| wasm \|.*\| yes \|/);
    expect(r.stdout).toMatch(/\| js \|.*\| yes \|/);
  });

  it('bad input: exit code 1 and a message, no stack trace', () => {
    const r = run('--bogus');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('peftjs: unknown option --bogus (see peftjs --help)\n');
    const missing = run('inspect', '/nonexistent-adapter');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('adapter config not found');
  });
});
