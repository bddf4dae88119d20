import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { readSafetensors } from '../lora/helpers.js';

/** The embedded pycoder (base, adapter, drafters) and the fixture models with their transformers + PEFT oracles. */
export const PYCODER = new URL('../../models/pycoder/', import.meta.url).pathname;
export const FIXTURES = new URL('../fixtures/models/', import.meta.url).pathname;

export const MODELS = ['pycoder', 'tiny-llama', 'tiny-qwen2', 'tiny-mistral', 'tiny-gpt2'] as const;
export type ModelName = (typeof MODELS)[number];

export interface OraclePrompt {
  ids: number[];
  greedy_on: number[];
  greedy_off: number[];
  greedy_on_margins: number[];
  greedy_off_margins: number[];
  text?: string;
  greedy_on_text?: string;
  greedy_off_text?: string;
}

export function basePath(m: ModelName): string {
  return m === 'pycoder' ? `${PYCODER}base` : `${FIXTURES}${m}/base`;
}
export function adapterPath(m: ModelName): string {
  return m === 'pycoder' ? `${PYCODER}adapter` : `${FIXTURES}${m}/adapter`;
}

export function oracle(m: ModelName): { prompts: OraclePrompt[]; logits: Map<string, Float32Array> } {
  const dir = `${FIXTURES}${m}/`;
  const json = JSON.parse(readFileSync(`${dir}oracle.json`, 'utf8')) as { prompts: OraclePrompt[] };
  const logits = new Map([...readSafetensors(`${dir}oracle.safetensors`)].map(([k, t]) => [k, t.data as Float32Array]));
  return { prompts: json.prompts, logits };
}

export function drafterOracle(k: 2 | 3): { exit_after_layers: number; top1_agreement: { draft_lora: number }; logits: Map<string, Float32Array> } {
  const dir = `${FIXTURES}pycoder/draft-l${k}/`;
  const json = JSON.parse(readFileSync(`${dir}oracle.json`, 'utf8'));
  return { ...json, logits: new Map([...readSafetensors(`${dir}oracle.safetensors`)].map(([n, t]) => [n, t.data as Float32Array])) };
}

/** |got − exp| ≤ rel · max|exp| over the whole array (the bar: 1e-4 · max|logit|). */
export function expectLogits(got: Float32Array, exp: Float32Array, rel: number, what: string): number {
  expect(got.length, `${what}: length`).toBe(exp.length);
  let maxAbs = 0;
  for (const v of exp) maxAbs = Math.max(maxAbs, Math.abs(v));
  let maxErr = 0;
  let at = 0;
  for (let i = 0; i < exp.length; i++) {
    const e = Math.abs(got[i] - exp[i]);
    if (!(e <= maxErr)) {
      maxErr = e;
      at = i;
    }
  }
  expect(maxErr, `${what}: max |Δ| ${maxErr} at ${at} (got ${got[at]}, oracle ${exp[at]}), max|logit| ${maxAbs}`).toBeLessThanOrEqual(rel * maxAbs);
  return maxErr / maxAbs;
}

/** The oracle's greedy path up to (not including) the first step whose top-1 margin is below `minMargin`. */
export function trustedPrefix(tokens: readonly number[], margins: readonly number[], minMargin: number): number[] {
  const cut = margins.findIndex((m) => m < minMargin);
  return tokens.slice(0, cut < 0 ? tokens.length : cut);
}
