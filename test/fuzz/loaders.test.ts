/**
 * Property-based fuzzing of every loader boundary (issue 8): for any input, the outcome is a result or a typed
 * PeftError — never an untyped error, a crash or a hang. Fixed seed and a few hundred runs per target here;
 * `npm run fuzz` runs the long campaign with fresh seeds (FUZZ_RUNS, FUZZ_SEED) and saves failing inputs
 * under test/fixtures/fuzz-regressions/, which the last test replays on every run.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PeftError } from '../../src/errors.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { HTTP_CONFIG, httpOutcome, INPUTS, TARGETS } from './targets.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 0x5eed;
const REGRESSIONS = join(__dirname, '../fixtures/fuzz-regressions');
const T = { timeout: 600_000 };

describe(`fuzz: typed errors only (seed ${SEED}, ${RUNS} runs per target)`, () => {
  for (const name of Object.keys(TARGETS) as (keyof typeof TARGETS)[]) {
    it(name, T, async () => {
      const result = await fc.check(fc.asyncProperty(INPUTS[name], (b) => TARGETS[name]!(b)), { seed: SEED, numRuns: RUNS, endOnFailure: false });
      if (result.failed && result.counterexample) {
        const bytes = result.counterexample[0];
        if (process.env.FUZZ_SAVE) {
          mkdirSync(REGRESSIONS, { recursive: true });
          writeFileSync(join(REGRESSIONS, `${name}-${SEED}-${result.numRuns}.bin`), bytes);
        }
        throw new Error(`${name}: ${String(result.errorInstance)} — input (${bytes.length} bytes, seed ${SEED}, path ${result.counterexamplePath}): ${Buffer.from(bytes.subarray(0, 256)).toString('hex')}`);
      }
      expect(result.failed).toBe(false);
      expect(result.numRuns).toBe(RUNS);
    });
  }
});

describe('fuzz regressions: every saved failing input stays fixed', () => {
  const files = (() => {
    try {
      return readdirSync(REGRESSIONS).filter((f) => f.endsWith('.bin'));
    } catch {
      return [];
    }
  })();
  it.each(files.length ? files : ['(none saved)'])('%s', T, async (f) => {
    if (f === '(none saved)') return;
    const target = TARGETS[f.split('-')[0] as keyof typeof TARGETS];
    expect(target, `target of ${f}`).toBeDefined();
    await target!(new Uint8Array(readFileSync(join(REGRESSIONS, f))));
  });
});

describe('issue 8 #1: a config value nested ~4,500 deep is a typed error, not a stack overflow', () => {
  const deep = '['.repeat(4500) + '8' + ']'.repeat(4500);
  it.each(['r', 'layer_replication', 'target_modules', 'rank_pattern'])('%s', T, async (key) => {
    const cfg = new TextEncoder().encode(`{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q"],"${key}":${deep}}`);
    const e = await LoRAContainer.fromPEFT({ 'adapter_config.json': cfg }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PeftError);
    expect((e as PeftError).message.length).toBeLessThan(2000);
  });
});

describe('the http target serves what its input scripts (so the fuzzing reaches the loader)', () => {
  // [status index, encoding index, flags, file (0 config, 1 weights), ...body]: STATUSES / ENCODINGS in targets.ts.
  const cfg = (status: number, encoding: number, flags: number) => new Uint8Array([status, encoding, flags, 0, ...HTTP_CONFIG]);
  it.each([
    ['200, identity, Content-Length right', cfg(0, 0, 4), 'ok'],
    ['200, gzip, Range honoured', cfg(0, 1, 2 | 4), 'ok'],
    ['200, br', cfg(0, 3, 0), 'ok'],
    ['500', cfg(8, 0, 0), 'IoError http_error'],
    ['404 for the config', cfg(6, 0, 0), 'ConfigError config_missing'],
    ['text/html for the config (a single-page-app fallback)', cfg(0, 0, 1), 'IoError html_response'],
    ['Content-Encoding: gzip over plain bytes', cfg(0, 4, 0), 'IoError'],
  ] as const)('%s', T, async (_, input, want) => {
    expect(await httpOutcome(input)).toMatch(new RegExp(`^${want}`));
  });
});
