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

  it('layer-demo runs on a small embedded default and says off ≡ base', () => {
    const r = run('layer-demo', '--m', '2', '--k', '64', '--n', '48', '--r', '4');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/\| wasm \|.*\| yes \|/);
    expect(r.stdout).toMatch(/\| js \|.*\| yes \|/);
  });

  it('demo (npm start): pycoder off writes the oracle code, on the oracle prose; off ≡ base; speculative is lossless', () => {
    const o = JSON.parse(readFileSync(`${ROOT}test/fixtures/models/pycoder/oracle.json`, 'utf8')) as { prompts: { text: string; greedy_off_text: string; greedy_on_text: string }[] };
    const r = spawnSync(process.execPath, [`${ROOT}dist/cli.js`, 'demo'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const flat = (s: string) => s.replace(/\n/g, '⏎ ');
    // The demo prints the first 95 characters of prompt + continuation for 'def ' and 'The ' (oracle prompts 0 and 2).
    for (const p of [o.prompts[0], o.prompts[2]]) {
      expect(r.stdout).toContain(`LoRA off │ ${flat(p.text + p.greedy_off_text).slice(0, 80)}`);
      expect(r.stdout).toContain(`LoRA on  │ ${flat(p.text + p.greedy_on_text).slice(0, 80)}`);
    }
    expect(r.stdout).toContain('identical (every bit of every logit)');
    expect(r.stdout).toContain('yes, token for token');
  });

  it('generate streams the oracle continuation (LoRA off, then on) and prints stats on stderr', () => {
    const o = JSON.parse(readFileSync(`${ROOT}test/fixtures/models/pycoder/oracle.json`, 'utf8')) as { prompts: { text: string; greedy_off_text: string; greedy_on_text: string }[] };
    const p = o.prompts[1];
    const r = run('generate', '--model', `${ROOT}models/pycoder/base`, '--adapter', `${ROOT}models/pycoder/adapter`, '--prompt', p.text, '--lora', 'both', '--max-new', '64');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${p.text}${p.greedy_off_text}\n${p.text}${p.greedy_on_text}\n`);
    expect(r.stderr).toMatch(/64 tokens · prefill \d+ tok\/s · decode \d+ tok\/s/);
    const spec = run('generate', '--model', `${ROOT}models/pycoder/base`, '--draft', `${ROOT}models/pycoder/draft-l3`, '--exit-after', '3', '--prompt', p.text, '--max-new', '64');
    expect(spec.status, spec.stderr).toBe(0);
    expect(spec.stdout).toBe(`${p.text}${p.greedy_off_text}\n`);
    expect(spec.stderr).toMatch(/speculative: acceptance \d+ %/);
  });

  it('generate without --prompt, with a bad --lora or an unknown model dir: exit 1 and a message', () => {
    expect(run('generate').stderr).toContain('generate needs --prompt');
    expect(run('generate', '--prompt', 'x', '--lora', 'maybe').stderr).toContain('--lora must be on, off or both');
    const r = run('generate', '--model', '/nonexistent-model', '--prompt', 'x');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^peftjs: /);
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
