// onnxruntime-web running the pycoder ONNX twin (lib/build-onnx.mjs) the way transformers.js drives it: the
// prefill graph over the prompt, then the KV-cache decode graph one token at a time, past K/V fed back as inputs.
// `ort.env.wasm.numThreads` is read once per process when ORT's wasm starts, so each thread count lives in its
// own worker (lib/ort-worker.mjs); this module is what the worker runs.

/** Index of the largest of `n` values at row `row` (first on ties, as the library's argmax). */
export function argmaxRow(a, n, row = 0) {
  let best = 0;
  let bv = -Infinity;
  for (let j = 0, o = row * n; j < n; j++) if (a[o + j] > bv) { bv = a[o + j]; best = j; }
  return best;
}

/**
 * @param {{ prefill: Uint8Array, decode: Uint8Array, threads: number, layers: number, vocab: number, eos: number[] }} o
 */
export async function createOrtLM(o) {
  const mod = await import('onnxruntime-web');
  const ort = mod.default ?? mod;
  ort.env.wasm.numThreads = o.threads;
  const opts = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  const prefill = await ort.InferenceSession.create(o.prefill, opts);
  const decode = await ort.InferenceSession.create(o.decode, opts);
  const { layers: L, vocab: V } = o;
  const i64 = (ids) => BigInt64Array.from(ids, (x) => BigInt(x));
  const eos = new Set(o.eos);

  /** Logits [S, vocab] of a fresh sequence and the ms of the forward. */
  async function logits(ids) {
    const t0 = performance.now();
    const out = await prefill.run({ input_ids: new ort.Tensor('int64', i64(ids), [1, ids.length]) });
    const ms = performance.now() - t0;
    return { ms, logits: out.logits.data, out };
  }

  /** Greedy decoding, timed as CausalLM.generate times it: prefill ms, and decode ms over the forwards of steps 2…n. */
  async function generate(prompt, maxNew) {
    const { ms: prefillMs, logits: first, out } = await logits(prompt);
    const tokens = [argmaxRow(first, V, prompt.length - 1)];
    let past = {};
    for (let l = 0; l < L; l++) {
      past[`past.${l}.key`] = out[`present.${l}.key`];
      past[`past.${l}.value`] = out[`present.${l}.value`];
    }
    let decodeMs = 0;
    let pos = prompt.length;
    while (tokens.length < maxNew && !eos.has(tokens[tokens.length - 1])) {
      const t0 = performance.now();
      const r = await decode.run({ input_ids: new ort.Tensor('int64', i64([tokens[tokens.length - 1]]), [1, 1]), position: new ort.Tensor('int64', i64([pos]), [1]), ...past });
      decodeMs += performance.now() - t0;
      tokens.push(argmaxRow(r.logits.data, V));
      pos++;
      past = {};
      for (let l = 0; l < L; l++) {
        past[`past.${l}.key`] = r[`present.${l}.key`];
        past[`past.${l}.value`] = r[`present.${l}.value`];
      }
    }
    return { tokens, prefillMs, decodeMs, decodeTokensPerSecond: ((tokens.length - 1) * 1000) / decodeMs, prefillTokensPerSecond: (prompt.length * 1000) / prefillMs };
  }
  return { logits, generate, release: async () => { await prefill.release(); await decode.release(); } };
}
