// Deno 2 has relaxed SIMD (Node 20 does not): runs the kernels of wasm/peftjs-relaxed.wasm itself, against float64
// references, and checks its batch invariance (run by `npm test` via scripts/run-runtimes.mjs).
//
// Tolerance: f32x4.relaxed_madd may be fused (one rounding) or not (two), per engine. Either way each output is an
// f32 sum of k products in the 4-lane order of cpp/linear.h, so |y − y₆₄| ≤ (k/4 + 4)·2⁻²³·Σ|x·w| (+ the epilogue's
// own terms, bounded the same way); tests use that bound, not a tuned epsilon. Within the build, a row's bits never
// depend on the batch it rides in (the same kernel order on the GEMV and GEMM paths).
const root = new URL('../../', import.meta.url);

type Ex = Record<string, (...a: number[]) => number> & { memory: WebAssembly.Memory };
async function load(name: string): Promise<Ex> {
  const bytes = await Deno.readFile(new URL(name, root));
  const { instance } = await WebAssembly.instantiate(bytes, { env: { emscripten_notify_memory_growth: () => {} } });
  const ex = instance.exports as unknown as Ex;
  (ex._initialize as () => void)();
  return ex;
}

let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const rand = (n: number) => Float32Array.from({ length: n }, rnd);

function put(ex: Ex, a: Float32Array | Uint16Array | Uint32Array): number {
  const p = ex.malloc(Math.max(a.byteLength, 4)) >>> 0;
  new Uint8Array(ex.memory.buffer, p, a.byteLength).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return p;
}
const get = (ex: Ex, p: number, n: number) => new Float32Array(ex.memory.buffer, p, n).slice();
// Epilogue {bias, row_scale, lora_bias, nterms, terms} and one LoraTerm {t, b, r, 0}.
function epilogue(ex: Ex, bias: number, term?: { t: number; b: number; r: number }): number {
  const termp = term ? put(ex, new Uint32Array([term.t, term.b, term.r, 0])) : 0;
  return put(ex, new Uint32Array([bias, 0, 0, term ? 1 : 0, termp]));
}

function check(name: string, y: Float32Array, ref: Float64Array, mag: Float64Array, k: number) {
  for (let i = 0; i < y.length; i++) {
    const tol = (k / 4 + 4) * 2 ** -23 * mag[i] + 1e-30;
    if (!(Math.abs(y[i] - ref[i]) <= tol)) throw new Error(`${name}: y[${i}] = ${y[i]}, float64 ${ref[i]}, |Δ| > ${tol}`);
  }
}
function sameBits(name: string, a: Float32Array, b: Float32Array) {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) throw new Error(`${name}: element ${i} differs: ${a[i]} vs ${b[i]}`);
}

// y = x·Wᵀ + t·B + bias in float64, and Σ|terms| for the bound. w(j, p) gives W as the kernel sees it.
function reference(m: number, n: number, k: number, x: Float32Array, w: (j: number, p: number) => number, bias: Float32Array, lora?: { t: Float32Array; b: Float32Array; r: number }) {
  const ref = new Float64Array(m * n), mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0, a = 0;
      for (let p = 0; p < k; p++) {
        s += x[i * k + p] * w(j, p);
        a += Math.abs(x[i * k + p] * w(j, p));
      }
      if (lora) for (let q = 0; q < lora.r; q++) {
        s += lora.t[i * lora.r + q] * lora.b[q * n + j];
        a += Math.abs(lora.t[i * lora.r + q] * lora.b[q * n + j]);
      }
      ref[i * n + j] = s + bias[j];
      mag[i * n + j] = a + Math.abs(bias[j]);
    }
  return { ref, mag };
}

const ex = await load('wasm/peftjs-relaxed.wasm');

Deno.test('relaxed build: the engine has relaxed SIMD and the module validates; same ABI version as the base build', async () => {
  const bytes = await Deno.readFile(new URL('wasm/peftjs-relaxed.wasm', root));
  if (!WebAssembly.validate(bytes)) throw new Error('Deno should validate the relaxed module');
  const base = await load('wasm/peftjs.wasm');
  if (ex.peft_abi_version() !== base.peft_abi_version()) throw new Error('ABI versions differ');
});

for (const [label, kernel, scratchOf, widen] of [
  ['f32 W', 'peft_f32_linear', 'peft_f32_linear_scratch_bytes', false],
  ['bf16 W', 'peft_f32xbf16_linear', 'peft_f32xbf16_linear_scratch_bytes', true],
] as const) {
  Deno.test(`relaxed build, ${label}: every row within the f32 bound of float64, LoRA on and off; each row equals the row alone, bit for bit`, () => {
    const n = 37, k = 259, r = 5, M = 13;
    const xs = rand(M * k), wf = rand(n * k), bias = rand(n), t = rand(M * r), b = rand(r * n);
    const wb = Uint16Array.from(wf, (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16);
    const wOf = widen ? (j: number, p: number) => new Float32Array(new Uint32Array([wb[j * k + p] << 16]).buffer)[0] : (j: number, p: number) => wf[j * k + p];
    const wp = put(ex, widen ? wb : wf), bp = put(ex, bias), bBp = put(ex, b);
    const run = (m: number, x: Float32Array, tt: Float32Array | undefined) => {
      const xp = put(ex, x), yp = ex.malloc(m * n * 4) >>> 0, sp = ex.malloc(ex[scratchOf](m, k) >>> 0) >>> 0;
      const tp = tt ? put(ex, tt) : 0;
      const ep = epilogue(ex, bp, tt ? { t: tp, b: bBp, r } : undefined);
      ex[kernel](m, n, k, xp, wp, k, yp, ep, sp);
      const y = get(ex, yp, m * n);
      for (const p of [xp, yp, sp, tp, ep]) ex.free(p);
      return y;
    };
    for (const lora of [false, true]) {
      for (const m of [1, 2, 3, 4, 5, 8, M]) {
        const x = xs.subarray(0, m * k), tt = lora ? t.subarray(0, m * r) : undefined;
        const y = run(m, x, tt);
        const { ref, mag } = reference(m, n, k, x, wOf, bias, tt ? { t: tt, b, r } : undefined);
        check(`${label} m=${m} lora=${lora}`, y, ref, mag, k);
        for (let i = 0; i < m; i++) {
          const alone = run(1, x.slice(i * k, (i + 1) * k), tt?.slice(i * r, (i + 1) * r));
          sameBits(`${label} m=${m} row ${i} vs alone`, y.subarray(i * n, (i + 1) * n), alone);
        }
      }
    }
  });
}

Deno.test('relaxed build, f32 and bf16 W in panels (as a Linear stores them): every path equals the row-major W bit for bit, every sweep of the GEMM (tuning knob 2) alike; rows batch-invariant', () => {
  // k = 2053: the streams tiles (from k = 2048) and the first-pair sweep run, with a k tail; n = 45: 11 whole panels
  // (two groups of four and three left over) and a cut one. m = 1 … 4: the GEMV tiles; 5, 8, 13: the GEMM.
  const n = 45, k = 2053, M = 13;
  const xs = rand(M * k), wf = rand(n * k), bias = rand(n);
  const wb = Uint16Array.from(wf, (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16);
  const bp = put(ex, bias);
  for (const bf16 of [false, true]) {
    const [kernel, scratchOf, pack, eb] = bf16
      ? ['peft_f32xbf16_linear', 'peft_f32xbf16_linear_scratch_bytes', 'peft_bf16_pack_panels', 2]
      : ['peft_f32_linear', 'peft_f32_linear_scratch_bytes', 'peft_f32_pack_panels', 4];
    const wp = put(ex, bf16 ? wb : wf);
    const pan = ex.malloc(ex.peft_weight_panel_bytes(n, k, eb) >>> 0) >>> 0;
    ex[pack](n, k, wp, k, pan);
    const run = (m: number, x: Float32Array, w: number, ldw: number) => {
      const xp = put(ex, x), yp = ex.malloc(m * n * 4) >>> 0, sp = ex.malloc(ex[scratchOf](m, k) >>> 0) >>> 0;
      const ep = epilogue(ex, bp);
      ex[kernel](m, n, k, xp, w, ldw, yp, ep, sp);
      const y = get(ex, yp, m * n);
      for (const p of [xp, yp, sp, ep]) ex.free(p);
      return y;
    };
    const alone = Array.from({ length: M }, (_, i) => run(1, xs.slice(i * k, (i + 1) * k), pan, 0));
    for (const m of [1, 2, 3, 4, 5, 8, M]) {
      const x = xs.subarray(0, m * k);
      const rowMajor = run(m, x, wp, k);
      for (const sweep of [0, 1, 2, 3]) {
        if (ex.peft_set_tuning(2, sweep) !== 0) throw new Error(`panel sweep ${sweep} refused`);
        const y = run(m, x, pan, 0);
        sameBits(`bf16=${bf16} m=${m} sweep ${sweep}: panels vs row-major`, y, rowMajor);
        for (let i = 0; i < m; i++) sameBits(`bf16=${bf16} m=${m} sweep ${sweep} row ${i} vs alone`, y.subarray(i * n, (i + 1) * n), alone[i]);
      }
      ex.peft_set_tuning(2, 0);
    }
    ex.free(wp);
    ex.free(pan);
  }
});

Deno.test('relaxed build, 4-bit W: every row within the bound of float64 (W dequantized by the base-op scalar twin); rows batch-invariant', () => {
  const n = 20, k = 256, group = 64, bits = 4, M = 9, groups = k / group;
  const wq = Uint32Array.from({ length: (n * k * bits) / 32 }, () => (rnd() * 2 ** 31) >>> 0);
  const scales = Float32Array.from({ length: n * groups }, () => rnd() * 0.1), biases = rand(n * groups);
  const wqp = put(ex, wq), scp = put(ex, scales), bip = put(ex, biases), bias = new Float32Array(n), bp = put(ex, bias);
  const dq = ex.malloc(n * k * 4) >>> 0;
  ex.peft_f32_dequantize__scalar(n, k, bits, group, wqp, scp, bip, dq);
  const W = get(ex, dq, n * k);
  const xs = rand(M * k);
  const run = (m: number, x: Float32Array) => {
    const xp = put(ex, x), yp = ex.malloc(m * n * 4) >>> 0, sp = ex.malloc(ex.peft_f32_qlinear_scratch_bytes(m, k) >>> 0) >>> 0;
    const ep = epilogue(ex, bp);
    ex.peft_f32_qlinear(m, n, k, bits, group, xp, wqp, scp, bip, sp, yp, ep);
    const y = get(ex, yp, m * n);
    for (const p of [xp, yp, sp, ep]) ex.free(p);
    return y;
  };
  for (const m of [1, 3, 5, M]) {
    const x = xs.subarray(0, m * k);
    const y = run(m, x);
    const { ref, mag } = reference(m, n, k, x, (j, p) => W[j * k + p], bias);
    // The 4-bit kernel folds scale·Σq·x + bias·Σx per group: one more rounding per group than the plain dot.
    check(`q4 m=${m}`, y, ref, mag.map((v) => 2 * v), k);
    for (let i = 0; i < m; i++) sameBits(`q4 m=${m} row ${i}`, y.subarray(i * n, (i + 1) * n), run(1, x.slice(i * k, (i + 1) * k)));
  }
});

Deno.test('relaxed threads build (the built package): 2 threads equal 1 thread bit for bit, f32 and bf16 W, m = 1, 3, 9', async () => {
  const lib = await import('../../dist/index.js');
  const two = await lib.createBackend('wasm', { threads: 2 });
  const one = await lib.createBackend('wasm', { threads: 1 });
  if (two.build !== 'relaxed-simd' || one.build !== 'relaxed-simd') throw new Error(`builds: ${two.build}, ${one.build}`);
  if (two.threads !== 2 || !two.runtime.shared) throw new Error(`expected 2 threads on shared memory, got ${two.threads} (${two.threadsNote})`);
  const n = 1029, k = 1031;
  const wf = rand(n * k), bias = rand(n);
  const wb = Uint16Array.from(wf, (v) => new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16);
  for (const bf16 of [false, true]) {
    const up = (be: typeof one) => bf16 ? be.upload(lib.Tensor.from(wb, [n, k], 'bf16'), { keepBf16: true }) : be.upload(lib.Tensor.from(wf, [n, k], 'f32'));
    const W1 = up(one), W2 = up(two), b1 = one.upload(lib.Tensor.from(bias, [n], 'f32')), b2 = two.upload(lib.Tensor.from(bias, [n], 'f32'));
    for (const m of [1, 3, 9]) {
      const x = rand(m * k);
      const y1 = one.linear(lib.Tensor.from(x, [m, k], 'f32'), W1, b1, []), y2 = two.linear(lib.Tensor.from(x, [m, k], 'f32'), W2, b2, []);
      sameBits(`bf16=${bf16} m=${m}`, new Float32Array(y2.data), new Float32Array(y1.data));
      y1.dispose();
      y2.dispose();
    }
  }
});
