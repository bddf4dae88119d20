// The peers, each behind one interface so gemm.mjs times them all the same way:
//   const p = await peer.prepare({ k, n, w, bias, lora })   // once per weight set: upload / pack / build a session
//   p.run(x, m, copy)                                        // one forward, x [m,k] Float32Array → y [m,n]
//   p.dispose()
// Layouts in: w [n,k] (PyTorch nn.Linear), bias [n], lora = { a [k,r], b [r,n], scale, r }.
// Every peer gets its best setup, done once outside the timing, as a user would at load:
// the LoRA scale is folded into B, and the weight is stored in the layout the peer is fastest with.
import { pkgVersion } from './common.mjs';

function scaled(b, s) {
  const out = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b[i] * s;
  return out;
}

function transpose(w, rows, cols) {
  const out = new Float32Array(w.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = w[i * cols + j];
  return out;
}

/** tfjs-core + tfjs-backend-wasm (XNNPACK): the single-threaded build, or with `threads` > 1 the threaded one. */
export async function tfjsPeer({ threads = 1 } = {}) {
  const tf = await import('@tensorflow/tfjs-core');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // Force the non-threaded SIMD binary (in Node the threaded one would be picked when SharedArrayBuffer exists),
  // and one XNNPACK thread on top.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', threads > 1);
  wasm.setThreadsCount(threads);
  await tf.setBackend('wasm');
  await tf.ready();
  const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
  return {
    id: threads > 1 ? `tfjs-${threads}t` : 'tfjs',
    label: `tfjs-backend-wasm ${pkgVersion('@tensorflow/tfjs-backend-wasm')}${threads > 1 ? `, ${threads} threads` : ''}`,
    detail: `tfjs-core ${pkgVersion('@tensorflow/tfjs-core')}, backend ${tf.getBackend()}, simd ${simd}, threads ${wasm.getThreadsCount()}`,
    async prepare({ k, n, w, bias, lora }) {
      // W as [k,n] with transposeB=false: tfjs-backend-wasm 4.22 re-packs a transposed B on every call
      // (≈10× slower at k=n=4096), so the fair setup transposes once here.
      const W = tf.tensor2d(transpose(w, n, k), [k, n]);
      const b = tf.tensor1d(bias);
      const A = lora && tf.tensor2d(lora.a, [k, lora.r]);
      const B = lora && tf.tensor2d(scaled(lora.b, lora.scale), [lora.r, n]);
      return {
        run(x, m, copy) {
          const y = tf.tidy(() => {
            const xt = tf.tensor2d(x, [m, k]);
            const base = tf.fused.matMul({ a: xt, b: W, bias: b });
            return lora ? tf.add(base, tf.matMul(tf.matMul(xt, A), B)) : base;
          });
          const out = y.dataSync();
          y.dispose();
          return copy ? out : out[0];
        },
        dispose() {
          for (const t of [W, b, A, B]) t?.dispose();
        },
      };
    },
  };
}

/** onnxruntime-web, WASM execution provider, `threads` threads (default one), on a graph built in memory (lib/onnx.mjs). */
export async function ortPeer({ threads = 1 } = {}) {
  const ort = (await import('onnxruntime-web')).default ?? (await import('onnxruntime-web'));
  const { linearModel } = await import('./onnx.mjs');
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.simd = true; // the default and, since 1.19, the only build; set for the record
  return {
    id: threads > 1 ? `ort-${threads}t` : 'ort',
    label: `onnxruntime-web ${pkgVersion('onnxruntime-web')}${threads > 1 ? `, ${threads} threads` : ''}`,
    detail: `WASM EP, numThreads ${threads}, simd, graphOptimizationLevel all`,
    async prepare({ k, n, w, bias, lora }) {
      const model = linearModel({ k, n, w, bias, ...(lora && { a: lora.a, b: scaled(lora.b, lora.scale), r: lora.r }) });
      const session = await ort.InferenceSession.create(model, {
        executionProviders: ['wasm'],
        graphOptimizationLevel: 'all',
      });
      return {
        async run(x, m, copy) {
          const out = await session.run({ x: new ort.Tensor('float32', x, [m, k]) });
          return copy ? out.y.data : out.y.data[0];
        },
        dispose() {
          return session.release();
        },
      };
    },
  };
}

/** Plain JS: Float32Array loops in i-k-j order over Wᵀ [k,n], so the inner loop walks both arrays contiguously. */
export async function plainJsPeer() {
  return {
    id: 'js',
    label: 'plain JS (Float32Array, i-k-j)',
    detail: 'no SIMD, no blocking',
    async prepare({ k, n, w, bias, lora }) {
      const wt = transpose(w, n, k);
      const r = lora?.r ?? 0;
      const a = lora?.a;
      const bs = lora && scaled(lora.b, lora.scale);
      const t = new Float32Array(r);
      return {
        run(x, m) {
          const y = new Float32Array(m * n);
          for (let i = 0; i < m; i++) {
            const yo = i * n;
            y.set(bias, yo);
            for (let p = 0; p < k; p++) {
              const xv = x[i * k + p];
              const wo = p * n;
              for (let j = 0; j < n; j++) y[yo + j] += xv * wt[wo + j];
            }
            if (!lora) continue;
            t.fill(0);
            for (let p = 0; p < k; p++) {
              const xv = x[i * k + p];
              for (let q = 0; q < r; q++) t[q] += xv * a[p * r + q];
            }
            for (let q = 0; q < r; q++) {
              const tv = t[q];
              for (let j = 0; j < n; j++) y[yo + j] += tv * bs[q * n + j];
            }
          }
          return y;
        },
        dispose() {},
      };
    },
  };
}

/**
 * `ortPeer` or `tfjsPeer` with `threads` threads in a worker thread of its own (lib/peer-worker.mjs). x goes over
 * by structured clone and y comes back the same way (≈ 10–30 µs a call at these sizes: part of its time, as a
 * worker-hosted engine costs a caller).
 */
export async function threadedPeer(name, threads) {
  const { Worker } = await import('node:worker_threads');
  const w = new Worker(new URL('./peer-worker.mjs', import.meta.url), { workerData: { peer: name, threads } });
  const pending = new Map();
  let seq = 0;
  const info = await new Promise((resolve, reject) => {
    w.once('error', reject);
    w.on('message', (msg) => {
      if (msg.ready) return resolve(msg);
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error));
      else p.resolve(msg.result);
    });
  });
  const call = (op, args) => new Promise((resolve, reject) => {
    const id = seq++;
    pending.set(id, { resolve, reject });
    w.postMessage({ id, op, args });
  });
  return {
    id: `${name}-${threads}t`,
    label: info.label,
    detail: `${info.detail}, in its own worker thread`,
    threads,
    async prepare(args) {
      const h = await call('prepare', args);
      return {
        run: (x, m, copy) => call('run', { h, x, m }).then((y) => (copy ? y : y[0])),
        dispose: () => call('dispose', { h }),
      };
    },
    terminate: () => w.terminate(),
  };
}
