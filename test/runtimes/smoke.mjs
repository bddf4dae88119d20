// Runtime smoke check shared by the Deno, Bun and browser tests: the built package (dist/index.js) loads
// its wasm and one LoRA linear result matches a float64 reference written here, independently of the library.
// Plain JS (no TypeScript) so a browser page can import it as is.

/** Deterministic values in [-1, 1): a 32-bit LCG, so every runtime sees the same inputs. */
export function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

function fill(n, rnd) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rnd();
  return a;
}

/**
 * y = x·Wᵀ + b + s·(x·A)·B in float64.  x [m,k], W [n,k], b [n], A [k,r], B [r,n].
 */
export function referenceLoRALinear(x, W, b, A, B, s, m, k, n, r) {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const t = new Float64Array(r);
    for (let j = 0; j < r; j++) for (let p = 0; p < k; p++) t[j] += x[i * k + p] * A[p * r + j];
    for (let o = 0; o < n; o++) {
      let acc = b[o];
      for (let p = 0; p < k; p++) acc += x[i * k + p] * W[o * k + p];
      for (let j = 0; j < r; j++) acc += s * t[j] * B[j * n + o];
      y[i * n + o] = acc;
    }
  }
  return y;
}

/**
 * Runs the check against a loaded peftjs module. Returns {backend, maxErr, tol, ok, offEqualsBase}.
 * Tolerance: f32 accumulation over k terms of magnitude ≤ 1 → k·2⁻²³·(k + r·k) is a safe bound; we use 1e-4·k.
 */
export async function runSmoke(lib) {
  const backend = await lib.init();
  const m = 3, k = 37, n = 11, r = 4, s = 2;
  const rnd = lcg(42);
  const x = fill(m * k, rnd), W = fill(n * k, rnd), b = fill(n, rnd), A = fill(k * r, rnd), B = fill(r * n, rnd);
  const T = lib.Tensor;
  const w = backend.upload(T.from(W, [n, k], 'f32'));
  const bias = backend.upload(T.from(b, [n], 'f32'));
  const delta = { a: backend.upload(T.from(A, [k, r], 'f32')), b: backend.upload(T.from(B, [r, n], 'f32')), scale: s };
  const xt = T.from(x, [m, k], 'f32');
  const yOn = await backend.linear(xt, w, bias, [delta]).read();
  const yOff = await backend.linear(xt, w, bias, []).read();
  const yBase = await backend.linear(xt, w, bias, []).read();
  const ref = referenceLoRALinear(x, W, b, A, B, s, m, k, n, r);
  let maxErr = 0;
  for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(yOn[i] - ref[i]));
  let offEqualsBase = yOff.length === yBase.length;
  for (let i = 0; i < yOff.length; i++) if (Object.is(yOff[i], yBase[i]) === false) offEqualsBase = false;
  const tol = 1e-4 * k * 0.1;
  return { backend: backend.name, maxErr, tol, ok: maxErr <= tol && offEqualsBase, offEqualsBase };
}

/**
 * End to end on one golden case (test/fixtures/golden/basic): the adapter loaded with `LoRAContainer.fromPEFT(adapter)`
 * (a directory path in Deno/Bun, a URL in the browser), applied to a model built from base.safetensors, matches the
 * float64 expectation `y_on` in io.safetensors; with the adapter off the output equals the base layer's bit for bit.
 * `readBytes(name)` reads a file of the case folder. Tolerance: case.json's 1e-4·max(1, max|y|).
 */
export async function runGoldenSmoke(lib, { adapter, readBytes }) {
  await lib.init();
  const { SafetensorsReader, Tensor, modelFromWeights, LoRAContainer, setLoRAEnabled } = lib;
  const base = SafetensorsReader.fromBytes(await readBytes('base.safetensors'), { file: 'base.safetensors' });
  const io = SafetensorsReader.fromBytes(await readBytes('io.safetensors'), { file: 'io.safetensors' });
  const weights = new Map();
  for (const [name, info] of base.tensors) weights.set(name, Tensor.from(new Float32Array(base.typedSync(name)), info.shape, 'f32'));
  const model = modelFromWeights(weights);
  const container = await LoRAContainer.fromPEFT(adapter);
  const applied = container.apply(model);
  let maxErr = 0;
  let offEqualsBase = true;
  for (const { path, layer } of applied) {
    const x = Tensor.from(new Float32Array(io.typedSync(`${path}.x`)), io.tensors.get(`${path}.x`).shape, 'f32');
    const want = io.typedSync(`${path}.y_on`);
    const got = await layer.forward(x).read();
    const scale = Math.max(1, ...Array.from(want, Math.abs));
    for (let i = 0; i < want.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]) / scale);
    layer.loraEnabled = false;
    const off = await layer.forward(x).read();
    const plain = await layer.base.forward(x).read();
    for (let i = 0; i < off.length; i++) if (!Object.is(off[i], plain[i])) offEqualsBase = false;
    layer.loraEnabled = true;
  }
  setLoRAEnabled(model, true);
  return { modules: applied.length, scales: container.spec.modules.map((m) => m.scale), maxErr, tol: 1e-4, offEqualsBase, ok: maxErr <= 1e-4 && offEqualsBase && applied.length === 4 };
}

/**
 * The language model end to end: pycoder (`model`: its base/ folder as a path or URL) with its prose LoRA
 * (`adapter`) generates the transformers + PEFT oracle's greedy text for the prompt "def " with the adapter off
 * and on (`oracle`: the parsed test/fixtures/models/pycoder/oracle.json).
 */
export async function runModelSmoke(lib, { model, adapter, oracle }) {
  await lib.init();
  const lm = await lib.CausalLM.load(model, { weightDtype: 'bf16' });
  const prose = await lib.LoRAContainer.fromPEFT(adapter);
  prose.apply(lm);
  const p = oracle.prompts[0];
  const texts = {};
  for (const on of [false, true]) {
    prose.enabled = on;
    texts[on ? 'on' : 'off'] = (await lm.generate(p.text, { maxNewTokens: 64 })).text;
  }
  lm.dispose();
  return { texts, ok: texts.off === p.greedy_off_text && texts.on === p.greedy_on_text };
}

/**
 * The same model in a worker (peftjs/worker: a Web Worker in Deno and Bun and browsers, worker_threads in Node):
 * `WorkerLM` streams the oracle's greedy text with the prose adapter off and on, and an error thrown in the
 * worker comes back as the class `lib` exports (`workerLib`: dist/worker*.js, `lib`: the main entry beside it).
 */
export async function runWorkerSmoke(workerLib, lib, { model, adapter, oracle }) {
  const lm = await workerLib.WorkerLM.load(model, { weightDtype: 'bf16', adapters: [{ name: 'prose', source: adapter, enabled: false }] });
  const p = oracle.prompts[0];
  const texts = {};
  for (const on of [false, true]) {
    await lm.setAdapterEnabled('prose', on);
    let text = '';
    for await (const c of lm.stream(p.text, { maxNewTokens: 64 })) text += c.text ?? '';
    texts[on ? 'on' : 'off'] = text;
  }
  let error;
  try {
    await lm.generate(p.text, { temperature: -1 });
  } catch (e) {
    error = `${e instanceof lib.ModelError ? 'ModelError' : e?.name}:${e?.code}`;
  }
  await lm.terminate();
  return { texts, error, ok: texts.off === p.greedy_off_text && texts.on === p.greedy_on_text && error === 'ModelError:bad_option' };
}
