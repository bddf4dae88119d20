import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import { createBackend } from '../../src/backends/index.js';
import type { WasmBackend } from '../../src/backends/wasm.js';
import { ModelError } from '../../src/errors.js';
import { argmax } from '../../src/generate/sampling.js';
import { LoRAContainer } from '../../src/adapter/container.js';
import { loraLayersOf, setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { CausalLM } from '../../src/models/causal-lm.js';
import { TextStreamer } from '../../src/models/tokenizer.js';
import { FIXTURES, PYCODER, expectLogits, oracle } from './helpers.js';

let backend: Backend;
let lm: CausalLM;
beforeAll(async () => {
  backend = await createBackend('wasm');
  lm = await CausalLM.load(`${PYCODER}base`, { backend, weightDtype: 'bf16' });
  (await LoRAContainer.fromPEFT(`${PYCODER}adapter`, { name: 'prose' })).apply(lm);
});

describe('KV cache', () => {
  it('decoding one token at a time gives the full-sequence logits at every step (adapter on and off)', async () => {
    const p = oracle('pycoder').prompts[1];
    const seq = [...p.ids, ...p.greedy_off.slice(0, 20)];
    for (const on of [true, false]) {
      setLoRAEnabled(lm, on);
      const full = await lm.logits(seq);
      const V = lm.config.vocab;
      const cache = lm.createCache(64);
      for (let i = 0; i < seq.length; i++) {
        const t = lm.forward([seq[i]], i, { cache });
        const row = (await t.read()) as Float32Array;
        t.dispose();
        expectLogits(row, full.subarray(i * V, (i + 1) * V), 1e-5, `step ${i} ${on ? 'on' : 'off'}`);
      }
      cache.dispose();
    }
    setLoRAEnabled(lm, true);
  });

  it('truncate(n) rolls back: re-decoding after a rollback reproduces the same logits', async () => {
    const cache = lm.createCache(32);
    const ids = [454, 221, 300, 301, 302];
    (await readRows(lm.forward(ids, 0, { cache })));
    const again = await readRows(lm.forward([302], 4, { cache }));
    cache.truncate(2);
    expect(cache.length).toBe(2);
    const a = await readRows(lm.forward([300, 301], 2, { cache }));
    const b = await readRows(lm.forward([302], 4, { cache }));
    expect(a.length).toBe(2 * lm.config.vocab);
    expect(Array.from(b)).toEqual(Array.from(again));
    expect(() => cache.truncate(9)).toThrow(ModelError);
    cache.dispose();
  });

  it('a cache is not zero-filled, and unwritten positions are never read: a NaN-poisoned cache decodes the same', async () => {
    const wb = backend as WasmBackend;
    let empties = 0;
    const own = wb.empty.bind(wb);
    wb.empty = (shape) => (empties++, own(shape));
    const cache = lm.createCache(48);
    delete (wb as { empty?: unknown }).empty; // back to the prototype's
    expect(empties).toBe(2 * lm.config.layers);
    // Garbage where nothing was written yet: one unwritten key or value read would turn logits into NaN.
    for (const t of [...cache.k, ...cache.v]) {
      const b = t.storage.bytes();
      new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).fill(NaN);
    }
    setLoRAEnabled(lm, false);
    const seq = [454, 221, 300, 301, 302, 17, 99];
    const full = await lm.logits(seq);
    const V = lm.config.vocab;
    const first = await readRows(lm.forward(seq.slice(0, 3), 0, { cache }));
    expectLogits(first.subarray(2 * V), full.subarray(2 * V, 3 * V), 1e-5, 'prefill');
    for (let i = 3; i < seq.length; i++) {
      const row = await readRows(lm.forward([seq[i]], i, { cache }));
      expect(row.every(Number.isFinite), `step ${i}`).toBe(true);
      expectLogits(row, full.subarray(i * V, (i + 1) * V), 1e-5, `step ${i}`);
    }
    cache.dispose();
  });

  it('a sequence past the cache is a typed context_full error, before any work', async () => {
    const small = await CausalLM.load(`${PYCODER}base`, { backend, weightDtype: 'bf16', maxLength: 8 });
    await expect(small.generate([454, 221], { maxNewTokens: 10 })).rejects.toMatchObject({ code: 'context_full' });
    expect(() => small.forward(new Array(9).fill(1), 0)).toThrow(expect.objectContaining({ code: 'context_full' }));
  });
});

async function readRows(t: import('../../src/tensor.js').Tensor): Promise<Float32Array> {
  const v = (await t.read()) as Float32Array;
  t.dispose();
  return v;
}

describe('per-step toggle', () => {
  it('flipping the adapter every step for 1,000 steps allocates nothing: same layer list, same wasm memory', async () => {
    const rt = (backend as WasmBackend).runtime;
    const list = loraLayersOf(lm);
    expect(list.length).toBe(6 * 7);
    setLoRAEnabled(lm, false);
    setLoRAEnabled(lm, true);
    const mem = rt.memory.buffer.byteLength;
    for (let i = 0; i < 1000; i++) setLoRAEnabled(lm, i % 2 === 0);
    expect(loraLayersOf(lm)).toBe(list); // cached, not rebuilt
    expect(rt.memory.buffer.byteLength).toBe(mem);
    // … and decoding while flipping every step equals the two plain greedy paths where they agree (they are the same model).
    setLoRAEnabled(lm, true);
  });

  it('the cached list follows apply/unload (tree changes)', async () => {
    const extra = await LoRAContainer.fromPEFT(`${PYCODER}draft-l2`, { name: 'd2' });
    extra.apply(lm);
    expect(loraLayersOf(lm, 'd2').length).toBe(2 * 7);
    extra.unload(lm);
    expect(loraLayersOf(lm, 'd2').length).toBe(0);
    expect(loraLayersOf(lm).length).toBe(6 * 7);
  });
});

describe('generation', () => {
  const p = oracle('pycoder').prompts;

  it('text prompts are tokenized as transformers does (oracle ids) and decoded to the oracle text', () => {
    for (const q of p) {
      expect(lm.tokenizer!.encode(q.text!)).toEqual(q.ids);
      expect(lm.tokenizer!.decode(q.greedy_on)).toBe(q.greedy_on_text);
    }
  });

  it('TextStreamer: pieces over a windowed decode join to the whole text, multi-byte characters held until complete', () => {
    const text = 'def café(x):\n    return "✓ naïve — 日本語" + x  # 🚀 done';
    const ids = lm.tokenizer!.encode(text);
    const s = new TextStreamer(lm.tokenizer!);
    const pieces = ids.map((id) => s.push(id));
    expect(pieces.join('') + s.flush()).toBe(lm.tokenizer!.decode(ids));
    expect(pieces.every((p) => !p.includes('\uFFFD'))).toBe(true);
  });

  it('stream yields the same tokens as generate, and its text pieces concatenate to the whole text', async () => {
    setLoRAEnabled(lm, true);
    let text = '';
    const toks: number[] = [];
    for await (const c of lm.stream(p[0].text!, { maxNewTokens: 64 })) {
      toks.push(c.token);
      text += c.text ?? '';
    }
    expect(toks).toEqual(p[0].greedy_on);
    expect(text).toBe(p[0].greedy_on_text);
  });

  it('stop strings end generation and cut the text before them', async () => {
    setLoRAEnabled(lm, false);
    const full = p[0].greedy_off_text!;
    const stop = full.slice(20, 26);
    const r = await lm.generate(p[0].ids, { maxNewTokens: 64, stop });
    expect(r.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.tokens.length).toBeLessThan(64);
    let streamed = '';
    for await (const c of lm.stream(p[0].ids, { maxNewTokens: 64, stop })) streamed += c.text ?? '';
    expect(streamed).toBe(r.text);
  });

  it('stop token ids end generation after the token', async () => {
    setLoRAEnabled(lm, false);
    const r = await lm.generate(p[0].ids, { maxNewTokens: 64, stop: [p[0].greedy_off[5]] });
    expect(r.tokens).toEqual(p[0].greedy_off.slice(0, p[0].greedy_off.indexOf(p[0].greedy_off[5]) + 1));
  });

  it('seeded sampling is reproducible; top-k 1 is greedy; stats are filled', async () => {
    setLoRAEnabled(lm, true);
    const a = await lm.generate(p[2].ids, { maxNewTokens: 24, temperature: 0.8, topP: 0.9, seed: 7 });
    const b = await lm.generate(p[2].ids, { maxNewTokens: 24, temperature: 0.8, topP: 0.9, seed: 7 });
    expect(a.tokens).toEqual(b.tokens);
    const c = await lm.generate(p[2].ids, { maxNewTokens: 24, temperature: 0.8, topK: 1, seed: 3 });
    expect(c.tokens).toEqual(p[2].greedy_on.slice(0, 24));
    expect(a.stats.promptTokens).toBe(2);
    expect(a.stats.newTokens).toBe(24);
    expect(a.stats.prefillTokensPerSecond).toBeGreaterThan(0);
    expect(a.stats.decodeTokensPerSecond).toBeGreaterThan(0);
  });

  it('an aborted signal stops generation with a typed error', async () => {
    const ctl = new AbortController();
    const it = lm.stream(p[0].ids, { maxNewTokens: 64, signal: ctl.signal });
    await it.next();
    ctl.abort();
    await expect(it.next()).rejects.toMatchObject({ code: 'aborted' });
  });

  it('bad options and ids are typed errors', async () => {
    await expect(lm.generate([999999])).rejects.toMatchObject({ code: 'bad_ids' });
    await expect(lm.generate(p[0].ids, { temperature: -1 })).rejects.toMatchObject({ code: 'bad_option', key: 'temperature' });
    await expect(lm.generate(p[0].ids, { topP: 0 })).rejects.toMatchObject({ code: 'bad_option', key: 'topP' });
    await expect(lm.generate([])).rejects.toMatchObject({ code: 'bad_ids' });
  });

  it('argmax takes the first of equal maxima (torch.argmax)', () => {
    expect(argmax(new Float32Array([1, 3, 3, 2]))).toBe(1);
  });
});

describe('loading', () => {
  const dir = `${FIXTURES}tiny-llama/base`;
  const files = () => Object.fromEntries(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(`${dir}/${f}`))]));
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const f = decodeURIComponent(req.url!.split('/').pop()!);
      let body: Buffer;
      try {
        body = readFileSync(`${dir}/${f}`);
      } catch {
        res.writeHead(404).end();
        return;
      }
      const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
      if (range) {
        const [a, b] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
        res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${body.length}`, 'content-length': b - a + 1 }).end(body.subarray(a, b + 1));
      } else res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/model/`;
  });
  afterAll(() => server.close());

  it('from a directory, in-memory files and a URL: same logits; progress reaches the total', async () => {
    const ids = oracle('tiny-llama').prompts[1].ids;
    const want = oracle('tiny-llama').logits.get('p1.logits_off')!;
    const seen: number[] = [];
    for (const src of [dir, files(), url]) {
      const m = await CausalLM.load(src, { backend, onProgress: (q) => seen.push(q.loaded / q.total) });
      expectLogits(await m.logits(ids), want, 1e-4, String(typeof src));
    }
    expect(seen.at(-1)).toBe(1);
  });

  it('unknown model_type, missing and mis-shaped tensors, no config: typed errors naming what is wrong', async () => {
    const f = files();
    const cfg = JSON.parse(new TextDecoder().decode(f['config.json']));
    const withCfg = (c: object) => ({ ...f, 'config.json': new TextEncoder().encode(JSON.stringify(c)) });
    await expect(CausalLM.load(withCfg({ ...cfg, model_type: 'falcon' }), { backend })).rejects.toMatchObject({ code: 'unknown_architecture', got: 'falcon', expected: expect.stringContaining('llama') });
    await expect(CausalLM.load(withCfg({ ...cfg, num_hidden_layers: 3 }), { backend })).rejects.toMatchObject({ code: 'missing_tensor', tensor: 'model.layers.2.self_attn.q_proj.weight' });
    await expect(CausalLM.load(withCfg({ ...cfg, intermediate_size: 128 }), { backend })).rejects.toMatchObject({ code: 'tensor_shape', tensor: 'model.layers.0.mlp.gate_proj.weight', expected: [128, 64], got: [160, 64] });
    await expect(CausalLM.load(withCfg({ ...cfg, hidden_size: 'big' }), { backend })).rejects.toMatchObject({ code: 'config_invalid', key: 'hidden_size' });
    await expect(CausalLM.load(withCfg({ ...cfg, rope_parameters: { rope_type: 'yarn', rope_theta: 1e4 } }), { backend })).rejects.toMatchObject({ code: 'config_invalid', got: 'yarn' });
    // Hostile configs: nested past serde_json's 127 levels, a number where an id list goes, not UTF-8.
    const deep = new TextEncoder().encode(`{"model_type":"llama","x":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    await expect(CausalLM.load({ ...f, 'config.json': deep }, { backend })).rejects.toMatchObject({ code: 'config_invalid', file: expect.stringContaining('config.json') });
    await expect(CausalLM.load({ ...f, 'config.json': new Uint8Array([0x7b, 0xff, 0x7d]) }, { backend })).rejects.toMatchObject({ code: 'config_invalid' });
    await expect(CausalLM.load(withCfg({ ...cfg, eos_token_id: [1, -2] }), { backend })).rejects.toMatchObject({ code: 'config_invalid', key: 'eos_token_id' });
    await expect(CausalLM.load(withCfg({ ...cfg, num_key_value_heads: 3 }), { backend })).rejects.toMatchObject({ code: 'config_invalid', key: 'num_key_value_heads' });
    const { ['config.json']: _, ...noCfg } = f;
    await expect(CausalLM.load(noCfg, { backend })).rejects.toMatchObject({ code: 'config_missing' });
    await expect(CausalLM.load(withCfg(cfg), { backend }).then((m) => m.generate('text'))).rejects.toMatchObject({ code: 'no_tokenizer' });
  });

  it('an aborted load is a typed error', async () => {
    const ctl = new AbortController();
    ctl.abort();
    await expect(CausalLM.load(url, { backend, signal: ctl.signal })).rejects.toMatchObject({ code: 'aborted' });
  });
});

describe('per-row adapters', () => {
  it('lm.logits(ids, { adapters }): all rows on the adapter = adapter on; all null = the base, bit for bit; unknown = typed error', async () => {
    const ids = oracle('pycoder').prompts[4].ids;
    setLoRAEnabled(lm, true);
    const on = await lm.logits(ids);
    setLoRAEnabled(lm, false);
    const off = await lm.logits(ids);
    setLoRAEnabled(lm, true);
    const routedOn = await lm.logits(ids, { adapters: ids.map(() => 'prose') });
    const routedOff = await lm.logits(ids, { adapters: ids.map(() => null) });
    expect(Array.from(routedOn)).toEqual(Array.from(on));
    expect(Array.from(routedOff)).toEqual(Array.from(off));
    // Mixed: the first row is the base's, exactly; later rows differ from both uniform runs.
    const mixed = await lm.logits(ids, { adapters: [null, 'prose', 'prose'] });
    const V = lm.config.vocab;
    expect(Array.from(mixed.subarray(0, V))).toEqual(Array.from(off.subarray(0, V)));
    expect(Array.from(mixed.subarray(2 * V))).not.toEqual(Array.from(on.subarray(2 * V)));
    await expect(lm.logits(ids, { adapters: ['nope', null, null] })).rejects.toMatchObject({ code: 'not_applied' });
    await expect(lm.logits(ids, { adapters: [null] })).rejects.toMatchObject({ code: 'bad_option' });
  });
});
