// WorkerLM over Node worker_threads: pycoder and its prose LoRA run in a worker and must give what transformers +
// PEFT computed (the oracle), errors must cross back typed, abort and terminate must work.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplyError, IoError, ModelError, PeftError, WorkerError } from '../../src/errors.js';
import { toFileSet } from '../../src/io/fileset.js';
import { WorkerLM } from '../../src/worker/client.js';
import type { StreamChunk } from '../../src/models/causal-lm.js';
import { expectLogits, oracle as loadOracle } from '../models/helpers.js';
import { PYCODER, ROOT, sourceWorker, type Oracle } from './helpers.js';

const oracle = JSON.parse(readFileSync(resolve(ROOT, 'test/fixtures/models/pycoder/oracle.json'), 'utf8')) as Oracle;
const p0 = oracle.prompts[0]!;

/** The error a promise rejects with (the object itself: its class and fields are what these tests check). */
async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

/** Drains a stream: its chunks and its return value. */
async function drain(it: AsyncGenerator<StreamChunk, { tokens: number[]; text?: string }>) {
  const chunks: StreamChunk[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) return { chunks, result: r.value };
    chunks.push(r.value);
  }
}

describe('WorkerLM (worker_threads, from the sources)', () => {
  let worker: Worker;
  let lm: WorkerLM;
  const progress: { loaded: number; total?: number; file?: string; adapter?: string }[] = [];

  beforeAll(async () => {
    worker = await sourceWorker();
    lm = await WorkerLM.load(
      `${PYCODER}/base`,
      { weightDtype: 'bf16', adapters: [{ name: 'prose', source: `${PYCODER}/adapter`, enabled: false }], onProgress: (p) => progress.push(p) },
      { worker },
    );
  });
  afterAll(async () => {
    await lm?.terminate();
  });

  it('loads in the worker: config, adapters and progress (model files, then the adapter) cross back', () => {
    expect(lm.config.modelType).toBe('llama');
    expect(lm.config.vocab).toBe(2048);
    expect(lm.hasTokenizer).toBe(true);
    expect(lm.backend).toBe('wasm');
    expect(lm.adapters).toEqual([{ name: 'prose', enabled: false, modules: expect.any(Number) }]);
    expect(lm.adapters[0]!.modules).toBeGreaterThan(0);
    const model = progress.filter((p) => p.adapter === undefined);
    const adapter = progress.filter((p) => p.adapter === 'prose');
    expect(model.at(-1)!.loaded).toBe(model.at(-1)!.total);
    expect(model.at(-1)!.file).toBe('model.safetensors');
    expect(adapter.length).toBeGreaterThan(0);
    expect(progress.indexOf(adapter[0]!)).toBeGreaterThan(progress.indexOf(model.at(-1)!)); // adapter after model
  });

  it("streams the oracle's greedy text for prompt 0: adapter off (code), then on (prose)", async () => {
    expect(p0.text).toBe('def ');
    for (const on of [false, true]) {
      await lm.setAdapterEnabled('prose', on);
      expect(lm.adapters[0]!.enabled).toBe(on);
      const { chunks, result } = await drain(lm.stream(p0.text, { maxNewTokens: oracle.n_new }));
      const want = on ? p0.greedy_on_text : p0.greedy_off_text;
      expect(chunks.map((c) => c.text ?? '').join('')).toBe(want);
      expect(result.text).toBe(want);
      expect(result.tokens).toEqual(on ? p0.greedy_on : p0.greedy_off);
      expect(chunks.map((c) => c.token)).toEqual(result.tokens);
      expect(chunks.at(-1)!.stats.newTokens).toBe(oracle.n_new);
    }
    // generate: the same as the stream's end; setLoRAEnabled(false) switches every LoRA layer off.
    await lm.setLoRAEnabled(false);
    expect((await lm.generate(p0.text, { maxNewTokens: oracle.n_new })).text).toBe(p0.greedy_off_text);
    await lm.setLoRAEnabled(true);
  });

  it('logits arrive as a transferred Float32Array and match the oracle (adapter off and on)', async () => {
    const o = loadOracle('pycoder');
    for (const on of [false, true]) {
      await lm.setAdapterEnabled('prose', on);
      const got = await lm.logits(p0.ids);
      expect(got).toBeInstanceOf(Float32Array);
      expect(got.byteOffset).toBe(0);
      expect(got.buffer.byteLength).toBe(got.byteLength); // its own buffer, not a view of the worker's memory
      expectLogits(got, o.logits.get(`p0.logits_${on ? 'on' : 'off'}`)!, 1e-4, `p0 ${on ? 'on' : 'off'}`);
    }
    expect(await lm.encode(p0.text)).toEqual(p0.ids);
    expect(await lm.decode(p0.greedy_off)).toBe(p0.greedy_off_text);
  });

  it('errors thrown in the worker come back as the same PeftError subclass with its code and facts', async () => {
    const bad = await caught(lm.generate(p0.text, { temperature: -1 }));
    expect(bad).toBeInstanceOf(ModelError);
    expect(bad).toMatchObject({ name: 'ModelError', code: 'bad_option', key: 'temperature', expected: 'a finite number ≥ 0', got: -1 });
    expect((bad as Error).message).toBe('invalid sampling option: expected a finite number ≥ 0, got -1 → at temperature');
    expect((bad as Error).stack).toContain('--- in the worker ---');

    const ids = await caught(lm.logits([0, 5000]));
    expect(ids).toMatchObject({ name: 'ModelError', code: 'bad_ids', key: 'ids[1]', got: 5000 });

    const unknown = await caught(lm.setAdapterEnabled('nope', true));
    expect(unknown).toBeInstanceOf(ApplyError);
    expect(unknown).toMatchObject({ code: 'not_applied', got: 'nope', expected: ['prose'] });

    const dup = await caught(lm.addAdapter({ name: 'prose', source: `${PYCODER}/adapter` }));
    expect(dup).toMatchObject({ name: 'ApplyError', code: 'already_applied', got: 'prose' });

    const missing = await caught(WorkerLM.load(`${ROOT}/no/such/model`, {}, { worker: lm }));
    expect(missing).toBeInstanceOf(IoError);
    expect(missing).toBeInstanceOf(PeftError);
    expect(missing).toMatchObject({ name: 'IoError', code: 'not_found', file: 'model.safetensors' });

    // Checked before anything is sent: a FileSet holds functions, which no worker can receive.
    const fileSet = await caught(WorkerLM.load((await toFileSet(`${PYCODER}/base`)) as never, {}, { worker: lm }));
    expect(fileSet).toBeInstanceOf(IoError);
    expect(fileSet).toMatchObject({ code: 'unsupported_source' });
    const response = await caught(lm.addAdapter({ source: { 'adapter_config.json': new Response('{}') as never } }));
    expect(response).toMatchObject({ name: 'IoError', code: 'unsupported_source', file: 'adapter_config.json', got: 'Response' });
  });

  it('an in-memory adapter (Record of Uint8Array) is copied to the worker and stacks as a second adapter', async () => {
    const files = Object.fromEntries(['adapter_config.json', 'adapter_model.safetensors'].map((f) => [f, new Uint8Array(readFileSync(`${PYCODER}/adapter/${f}`))]));
    await lm.addAdapter({ name: 'prose2', source: files, enabled: false });
    expect(lm.adapters.map((a) => [a.name, a.enabled])).toEqual([
      ['prose', true],
      ['prose2', false],
    ]);
    // The same adapter under the other name: on alone, it gives the oracle's prose.
    await lm.setAdapterEnabled('prose', false);
    await lm.setAdapterEnabled('prose2', true);
    expect((await lm.generate(p0.text, { maxNewTokens: 16 })).tokens).toEqual(p0.greedy_on.slice(0, 16));
    await lm.setAdapterEnabled('prose2', false);
  });

  it('abort: the signal is forwarded; the generation stops with ModelError aborted and the model stays usable', async () => {
    await lm.setAdapterEnabled('prose', false);
    // Aborted at the first chunk of a long generation: the worker hears it at its next token, far before the end.
    const max = lm.maxLength - p0.ids.length;
    const ac = new AbortController();
    const seen: number[] = [];
    const err = await caught(
      (async () => {
        for await (const c of lm.stream(p0.text, { maxNewTokens: max, signal: ac.signal })) {
          seen.push(c.token);
          ac.abort();
        }
      })(),
    );
    expect(err).toBeInstanceOf(ModelError);
    expect(err).toMatchObject({ code: 'aborted' });
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(seen.length).toBeLessThan(max);
    expect(seen[0]).toBe(p0.greedy_off[0]);

    // A signal that fired before the call: no token at all, as on the main thread.
    const pre = new AbortController();
    pre.abort();
    const early = lm.stream(p0.text, { signal: pre.signal });
    expect(await caught(early.next())).toMatchObject({ name: 'ModelError', code: 'aborted' });
    // … and on a load, the worker's reader says so.
    expect(await caught(WorkerLM.load(`${PYCODER}/base`, { signal: pre.signal }, { worker: lm }))).toMatchObject({ name: 'IoError', code: 'aborted' });

    // Leaving a stream early cancels it in the worker; the next call gets the whole oracle text.
    for await (const c of lm.stream(p0.text, { maxNewTokens: max })) if (c.token >= 0) break;
    expect((await lm.generate(p0.text, { maxNewTokens: oracle.n_new })).text).toBe(p0.greedy_off_text);
  });

  it('two models in one worker: a drafter WorkerLM drives lossless speculative decoding; one from another worker is refused', async () => {
    const drafter = await WorkerLM.load(`${PYCODER}/base`, { weightDtype: 'bf16', adapters: [{ name: 'd', source: `${PYCODER}/draft-l2` }] }, { worker: lm });
    await lm.setAdapterEnabled('prose', false);
    const r = await lm.generate(p0.text, { maxNewTokens: 32, draft: { model: drafter, exitAfterLayers: 2, tokens: 4 } });
    expect(r.tokens).toEqual(p0.greedy_off.slice(0, 32)); // greedy speculation is lossless
    expect(r.stats.speculative!.accepted).toBeGreaterThan(0);
    // Self-speculation with an adapter by name.
    await lm.addAdapter({ name: 'draft', source: `${PYCODER}/draft-l2`, enabled: false });
    const s = await lm.generate(p0.text, { maxNewTokens: 32, draft: { adapter: 'draft', exitAfterLayers: 2 } });
    expect(s.tokens).toEqual(p0.greedy_off.slice(0, 32));
    // The same raw Worker passed again: the one connection it already has (ids do not collide), a third model.
    const third = await WorkerLM.load(`${PYCODER}/base`, { weightDtype: 'bf16' }, { worker });
    const [a, b] = await Promise.all([third.generate(p0.text, { maxNewTokens: 8 }), lm.generate(p0.text, { maxNewTokens: 8 })]);
    expect(a.tokens).toEqual(p0.greedy_off.slice(0, 8));
    expect(b.tokens).toEqual(p0.greedy_off.slice(0, 8));
    await third.dispose();
    await drafter.dispose();
    expect(await caught(drafter.generate(p0.text))).toMatchObject({ name: 'WorkerError', code: 'disposed' });
    expect((await lm.generate(p0.text, { maxNewTokens: 4 })).tokens).toEqual(p0.greedy_off.slice(0, 4)); // the worker lives on

    const other = await WorkerLM.load(`${PYCODER}/base`, { weightDtype: 'bf16' }, { worker: await sourceWorker() });
    const e = await caught(lm.generate(p0.text, { draft: { model: other } }));
    expect(e).toMatchObject({ name: 'ModelError', code: 'bad_option', key: 'draft.model' });
    await other.terminate();
  });
});

describe('WorkerLM: the worker itself', () => {
  it('terminate() ends the thread; a call in flight and every later call fail with WorkerError terminated', async () => {
    const worker = await sourceWorker();
    const exited = new Promise<number>((ok) => worker.once('exit', ok));
    const lm = await WorkerLM.load(`${PYCODER}/base`, { weightDtype: 'bf16' }, { worker });
    expect(worker.threadId).toBeGreaterThan(0);
    const inflight = caught(lm.generate(p0.text, { maxNewTokens: 64 }));
    await lm.terminate();
    expect(await inflight).toMatchObject({ name: 'WorkerError', code: 'terminated' });
    expect(await inflight).toBeInstanceOf(WorkerError);
    await exited;
    expect(worker.threadId).toBe(-1); // the thread, its wasm memory and the model are gone
    expect(await caught(lm.generate(p0.text))).toMatchObject({ code: 'terminated' });
    expect(await caught(WorkerLM.load(`${PYCODER}/base`, {}, { worker: lm }))).toMatchObject({ code: 'terminated' });
  });

  it('a worker that crashes fails the load with WorkerError crashed; one that never serves, with no_handshake', async () => {
    const crashing = new Worker('throw new Error("boom at start")', { eval: true });
    const crash = await caught(WorkerLM.load(`${PYCODER}/base`, {}, { worker: crashing }));
    expect(crash).toBeInstanceOf(WorkerError);
    expect(crash).toMatchObject({ code: 'crashed' });
    expect((crash as Error).message).toContain('boom at start');

    const silent = new Worker('setInterval(() => {}, 1000)', { eval: true });
    const none = await caught(WorkerLM.load(`${PYCODER}/base`, {}, { worker: silent, timeoutMs: 300 }));
    expect(none).toMatchObject({ name: 'WorkerError', code: 'no_handshake' });
    await silent.terminate();
  });
});
