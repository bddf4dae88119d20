// Loads peftjs the way a user does: the built package (../../dist/index.js, made by `npm run build`).
// PEFTJS_DIST=/path/to/index.js points it at another build (e.g. a branch built elsewhere).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const DIST = process.env.PEFTJS_DIST ? pathToFileURL(process.env.PEFTJS_DIST) : new URL('../../dist/index.js', import.meta.url);

/** The built library, or `{ error }` saying why it is not there. */
export async function loadLib() {
  if (!existsSync(fileURLToPath(DIST))) return { error: `${fileURLToPath(DIST)} is missing: run \`npm run build\` in the repo root` };
  try {
    return { lib: await import(DIST.href) };
  } catch (e) {
    return { error: `importing ${fileURLToPath(DIST)} failed: ${e.message}` };
  }
}

export function libVersion(lib) {
  return lib.VERSION ?? lib.version ?? '0.1.0';
}

/** f32 values → bf16 bit patterns, round to nearest even (the bench's W is bf16-representable, so exact there). */
function toBf16Bits(f) {
  const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
  return Uint16Array.from(u, (x) => ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff);
}

/**
 * A peftjs backend as a peer (same prepare/run/dispose interface as lib/peers.mjs). `bf16W`: W kept as bf16
 * (`upload(W, { keepBf16: true })`, what `weightDtype: 'bf16'` does), everything else f32.
 */
export async function oursPeer(lib, backendName = 'wasm', { bf16W = false, threads = 1 } = {}) {
  let be;
  if (backendName === 'wasm') {
    // An explicit thread count (the default backend takes every core): the peers here run on one thread.
    be = await lib.createBackend('wasm', { threads });
  } else {
    be = await lib.createBackend(backendName);
  }
  const { Tensor } = lib;
  const f32 = (data, shape) => Tensor.from(data, shape, 'f32');
  return {
    id: (backendName === 'wasm' ? 'ours' : `ours-${backendName}`) + (bf16W ? '-bf16' : '') + ((be.threads ?? 1) > 1 ? `-t${be.threads}` : ''),
    label: `peftjs ${libVersion(lib)} (${be.name}${be.build ? ` ${be.build}` : ''}${(be.threads ?? 1) > 1 ? `, ${be.threads} threads` : ''}${bf16W ? ', bf16 W' : ''})`,
    detail: `backend ${be.name}${be.build ? `, build ${be.build}` : ''}${be.threads ? `, ${be.threads} thread(s)` : ''}${bf16W ? ', W stored as bf16' : ''}`,
    backend: be,
    lib,
    async prepare({ k, n, w, bias, lora }) {
      // W stored as a Linear stores it (`linearWeight`: on wasm, rows of 4 KiB or more padded for the GEMV).
      const W = bf16W
        ? be.upload(Tensor.from(toBf16Bits(w), [n, k], 'bf16'), { keepBf16: true, linearWeight: true })
        : be.upload(f32(w, [n, k]), { linearWeight: true });
      if (bf16W && W.dtype !== 'bf16') throw new Error(`backend ${be.name} did not keep W as bf16 (got ${W.dtype})`);
      const b = be.upload(f32(bias, [n]));
      const deltas = lora
        ? [{ a: be.upload(f32(lora.a, [k, lora.r])), b: be.upload(f32(lora.b, [lora.r, n])), scale: lora.scale }]
        : [];
      const self = {
        deltas,
        /** `deltasOverride = []` runs the same resident weights with the adapter off. */
        run(x, m, copy, deltasOverride) {
          const xt = f32(x, [m, k]);
          const y = be.linear(xt, W, b, deltasOverride ?? deltas);
          // Always the whole y, copied out of wasm memory into a JS-owned array (the peers hand back the same).
          const out = new Float32Array(y.data);
          y.dispose();
          xt.dispose();
          return out;
        },
        dispose() {
          for (const t of [W, b, ...deltas.flatMap((d) => [d.a, d.b])]) t.dispose();
        },
      };
      return self;
    },
    /**
     * The layer API on one set of weights: a `Linear`, and two `LoRALinear` wrapping that same Linear (so all
     * three read the same resident W), one with `loraEnabled = false`. Undefined if the package does not export them.
     */
    layers({ k, n, w, bias, lora }) {
      if (bf16W) return undefined;
      if (!lib.Linear || !lib.LoRALinear) return undefined;
      const linear = new lib.Linear(f32(w, [n, k]), f32(bias, [n]), { backend: be });
      const init = () => ({ name: 'default', a: f32(lora.a, [k, lora.r]), b: f32(lora.b, [lora.r, n]), scale: lora.scale });
      const on = lib.LoRALinear.fromBase(linear, init());
      const off = lib.LoRALinear.fromBase(linear, init());
      off.loraEnabled = false;
      const call = (layer) => (x, m) => {
        const xt = f32(x, [m, k]);
        const y = layer.forward(xt);
        const out = new Float32Array(y.data);
        y.dispose();
        return out;
      };
      return { base: call(linear), on: call(on), off: call(off), describe: `${linear} / ${on} / ${off}` };
    },
  };
}

/**
 * Calls `call` (one layer call of the shape about to be timed) until every tuner the wasm backend `be` started has
 * settled, at most `max` times: the m = 1 GEMV tile (`gemvTuning()`) and the f32 GEMM's panel sweep at m = 3 … 16
 * (`panelSweepTuning()`) are timed on a shape's first calls, trying each choice in turn, so calls timed before they
 * settle measure the trials, not the kernel every later call runs. Returns the calls made.
 */
export async function settleTuning(be, call, max = 64) {
  const timing = () =>
    (be.gemvTuning?.() ?? []).some((t) => t.state === 'timing') || (be.panelSweepTuning?.() ?? []).some((t) => t.state === 'timing');
  let calls = 0;
  while (calls < max && timing()) await call(), calls++;
  return calls;
}
