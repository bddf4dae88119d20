import { BackendError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { ScratchArena, ScratchLayout } from '../runtime/scratch.js';
import { WasmStorage, allocWasmTensor, copyToWasmPanels, panelOf, wasmPtrOf } from '../runtime/storage.js';
import { type WasmBuild, type WasmBuildChoice, type WasmRuntime, initSharedWasm, initWasm, sharedMemorySupport } from '../runtime/wasm.js';
import { COLUMN_ALIGN, THREAD_MIN_WORK, ThreadKernel, ThreadPool, chunkColumns } from '../runtime/threads.js';
import { availableCores } from '../runtime/spawn-thread.js';
import { WasmRuntimeError } from '../errors.js';
import { isQuantized, routeGroups, routePasses, type AttentionShape, type Backend, type LinearWeight, type LoRADelta, type QuantizedWeight, type Route, type UploadOptions } from './backend.js';
import { checkRoute } from './js.js';
import { toF32Tensor } from './wasm/convert.js';
import {
  type EpilogueTerm,
  type Kernels,
  epilogueBytes,
  f32Linear,
  linearScratchBytes,
  type WeightDtype,
  writeEpilogue,
  writeEpilogueHeader,
  writeEpilogueTerm,
} from './wasm/linear.js';
import { f32LoraExpand, f32LoraShrink } from './wasm/lora.js';
import { type GemvTileChoice, type GemvTuningReport, GemvTuner } from './wasm/gemv-tuner.js';
import { PANEL_SWEEP_MAX_M, type PanelSweepReport, PanelSweepTuner } from './wasm/panel-sweep.js';
import { f32QLinear, quantScratchBytes } from './wasm/quant.js';

import {
  attentionScratchBytes,
  f32AddInPlace,
  f32Attention,
  f32GeluTanh,
  f32KvWrite,
  f32LayerNorm,
  f32RmsNorm,
  f32Rope,
  f32Swiglu,
} from './wasm/transformer.js';

/** Options for `WasmBackend.create`. */
export interface WasmBackendOptions {
  /** Run the SIMD128 kernels (default) or their `__scalar` twins (for testing). */
  kernels?: Kernels;
  /**
   * Which compiled module: `auto` (default) = relaxed SIMD (FMA) where the engine has it, else SIMD128; naming one
   * gives this backend its own instance of that build. `backend.build` says which ran.
   */
  build?: WasmBuildChoice;
  /**
   * Threads for the linear kernels (columns of y split across workers on a shared memory; each output element is
   * computed by one thread exactly as one thread computes it, so results are bit-identical for any count). Default:
   * the available cores (at most 16). Falls back to 1 where shared memory is unavailable (a browser page without
   * cross-origin isolation): `backend.threads` and `backend.threadsNote` say so.
   */
  threads?: number;
  /**
   * The m = 1 GEMV tile (decode steps): 'auto' (default) times the build's tile against 8 × 2 on each large weight
   * shape's first calls and keeps the faster (the best one depends on the core); 'build' or '8x2' fixes it. Every
   * tile gives the same bits. `backend.gemvTuning()` says which runs.
   */
  gemvTile?: GemvTileChoice;
}

/**
 * The WebAssembly SIMD128 backend: f32 kernels from cpp/ over tensors in wasm linear memory.
 *
 * `upload(t)` makes a weight resident (copied into wasm memory; f16/bf16 widened to f32 once, except a bf16 base
 * weight uploaded with `keepBf16`, which `linear` reads as bf16: cpp/linear_bf16.h). Ops accept
 * inputs on cpu or wasm (cpu inputs and non-f32 inputs are staged in scratch per call) and return f32
 * tensors in wasm memory that the caller disposes. LoRA intermediates (t = s·x·A), the epilogue descriptor
 * and staged inputs live in one grow-only scratch block, so steady-state forwards allocate only the output.
 *
 * With `deltas = []` and no rowScale the call is the plain linear kernel with a bias-only epilogue:
 * the same code path a plain `linear` takes, so "adapter off" is bit-identical to the base layer.
 */
export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  readonly kernels: Kernels;
  /** The compiled module the kernels run in: 'simd128' (wasm/peftjs.wasm) or 'relaxed-simd' (wasm/peftjs-relaxed.wasm). */
  readonly build: WasmBuild;
  /** Threads the linear kernels use (1 = the calling thread only). */
  readonly threads: number;
  /** Why fewer threads run than were asked for (absent when none were refused). */
  readonly threadsNote?: string;
  /** The m = 1 GEMV tile choice (see WasmBackendOptions.gemvTile; the scalar twins have one tile: 'build'). */
  readonly gemvTile: GemvTileChoice;
  private readonly pool?: ThreadPool;
  private readonly scratch: ScratchArena;
  private readonly tuner: GemvTuner;
  private readonly panelSweep: PanelSweepTuner;

  constructor(readonly runtime: WasmRuntime, opts: WasmBackendOptions = {}, pool?: ThreadPool, threadsNote?: string) {
    this.kernels = opts.kernels ?? 'simd128';
    this.build = runtime.build;
    this.pool = pool && pool.size > 0 ? pool : undefined;
    this.threads = this.pool ? Math.min((opts.threads ?? 1), this.pool.size + 1) : 1;
    this.threadsNote = threadsNote;
    this.scratch = new ScratchArena(runtime);
    this.gemvTile = this.kernels === 'scalar' ? 'build' : (opts.gemvTile ?? 'auto');
    this.tuner = GemvTuner.of(runtime);
    this.panelSweep = PanelSweepTuner.of(runtime);
  }

  /** The m = 1 GEMV tile each large weight shape runs (or is still timing), this runtime's decode calls so far. */
  gemvTuning(): GemvTuningReport[] {
    return this.tuner.report();
  }

  /**
   * How the f32 GEMM sweeps a W in panels at 3 ≤ m ≤ 16 (cpp/linear_panel.h: the sweep is timed on the first large
   * calls, per runtime; every sweep gives the same bits): one-thread calls, then calls split across threads by m.
   */
  panelSweepTuning(): PanelSweepReport[] {
    return this.panelSweep.report();
  }

  /**
   * Initialises the wasm runtime (once) and returns a backend over it: with threads > 1 (the default where there
   * are several cores) the shared-memory build and a pool of workers, else the one-thread build.
   */
  static async create(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
    const t = opts.threads;
    if (opts.gemvTile !== undefined && !['auto', 'build', '8x2'].includes(opts.gemvTile)) {
      throw new WasmRuntimeError('bad_option', "gemvTile must be 'auto', 'build' or '8x2'", { expected: "'auto' | 'build' | '8x2'", got: opts.gemvTile, where: 'WasmBackend.create' });
    }
    if (t !== undefined && !(Number.isInteger(t) && t >= 1 && t <= 64)) {
      throw new WasmRuntimeError('bad_option', 'threads must be an integer from 1 to 64', { expected: '1 … 64', got: t, where: 'WasmBackend.create' });
    }
    const want = t ?? Math.max(1, Math.min(16, await availableCores().catch(() => 1)));
    let note: string | undefined;
    if (want > 1) {
      const sup = sharedMemorySupport();
      if (sup.ok) {
        try {
          const rt = await initSharedWasm(opts.build ?? 'auto');
          const pool = await ThreadPool.get(rt, want - 1);
          return new WasmBackend(rt, { ...opts, threads: want }, pool);
        } catch (e) {
          note = `one thread: workers could not start (${String((e as Error)?.message ?? e)})`;
        }
      } else note = `one thread: ${sup.why}`;
    }
    return new WasmBackend(await initWasm(opts.build ?? 'auto'), { ...opts, threads: 1 }, undefined, note);
  }

  /** Threads a linear of this size uses: 1 below THREAD_MIN_WORK or with the scalar twins. */
  private threadsFor(m: number, n: number, k: number): number {
    if (!this.pool || this.kernels !== 'simd128' || m * n * k < THREAD_MIN_WORK) return 1;
    return n >= 2 * COLUMN_ALIGN ? this.threads : 1;
  }

  /** Bytes held by the reusable scratch block (for leak tests). */
  get scratchBytes(): number {
    return this.scratch.byteLength;
  }

  upload(t: Tensor, opts: UploadOptions = {}): Tensor {
    const rt = this.runtime;
    const keep = t.dtype === 'bf16' && opts.keepBf16 === true;
    const kept = (t.dtype !== 'f16' && t.dtype !== 'bf16') || keep; // the dtype stays as it is
    // A linear's W, once, in the layout the kernels stream fastest: panels of 4 rows (f32: cpp/linear_panel.h, bf16:
    // cpp/linear_bf16.h). Already resident (another layer's, or a tied table): as it is.
    if (opts.linearWeight && t.ndim === 2 && (t.dtype === 'f32' || keep) && this.kernels === 'simd128') {
      if (panelOf(rt, t) !== undefined || wasmPtrOf(rt, t) !== undefined) return t;
      return copyToWasmPanels(rt, t as Tensor<'f32' | 'bf16'>);
    }
    if (opts.linearWeight && kept && panelOf(rt, t) !== undefined) return t;
    if (wasmPtrOf(rt, t) !== undefined && kept) return t;
    if (!keep && (t.dtype === 'f16' || t.dtype === 'bf16' || t.dtype === 'f64')) {
      const w = toF32Tensor(t, rt);
      if (!opts.linearWeight || t.ndim !== 2 || this.kernels !== 'simd128') return w;
      const p = copyToWasmPanels(rt, w as Tensor<'f32'>); // widened (a new tensor: nobody shares it), then in panels
      w.dispose();
      return p;
    }
    const out = allocWasmTensor(rt, t.shape, t.dtype);
    out.storage.bytes().set(t.storage.bytes());
    return out;
  }

  /** W's byte offset and row stride as the linear kernels read it in place (0: in panels), or undefined (staged per call). */
  private weightOf(w: Tensor): { ptr: number; ldw: number } | undefined {
    const panels = panelOf(this.runtime, w);
    if (panels !== undefined) return { ptr: panels, ldw: 0 };
    const ptr = wasmPtrOf(this.runtime, w);
    return ptr === undefined ? undefined : { ptr, ldw: w.shape[1] };
  }

  linear(x: Tensor, w: Tensor, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    const [n, k] = w.shape;
    const m = x.size / (x.shape[x.shape.length - 1] || 1);
    // A resident bf16 W (uploaded with keepBf16) is read as it is by the bf16 kernel; anything else as f32. A resident
    // W (either dtype) is read in place at its row stride; another W is staged per call, compact.
    const resident = w.dtype === 'bf16' || w.dtype === 'f32' ? this.weightOf(w) : undefined;
    const wBf16 = w.dtype === 'bf16' ? resident?.ptr : undefined;
    const wDtype = wBf16 === undefined ? 'f32' : 'bf16';
    const ldw = resident?.ldw ?? k;
    const T = this.threadsFor(m, n, k);
    const S = (linearScratchBytes(this.runtime, m, k, wDtype) + 15) & ~15; // one scratch block per thread
    const G = stagesRowPairs(this.runtime, m, k, T, wDtype, ldw) ? this.runtime.exports.peft_f32_row_pairs_bytes(m, k) >>> 0 : 0; // x staged once, after them
    // An f32 W in panels at 3 ≤ m ≤ 16 through the GEMM: how it sweeps the panels (cpp/tuning.h TUNE_PANEL_SWEEP; speed
    // only, same bits): timed on the first large one-thread calls, one panel at a time when split across threads.
    const sweepTimed =
      ldw === 0 && wDtype === 'f32' && m > 2 && m <= PANEL_SWEEP_MAX_M && m > this.runtime.exports.peft_panel_gemv_max_m(k, 4) && this.panelSweep.begin(m, n, k, T);
    if (!rowScale) {
      // A model's forward (every projection, every step, its LoRA deltas), operands resident: the calls `run` makes
      // for it (the same shrinks, epilogue and kernel: the same bits), without its general staging.
      const rt = this.runtime;
      const xp = x.dtype === 'f32' ? wasmPtrOf(rt, x) : undefined;
      const wp = resident?.ptr;
      const bp = bias && bias.dtype === 'f32' ? wasmPtrOf(rt, bias) : undefined;
      if (xp !== undefined && wp !== undefined && (!bias || bp !== undefined) && x.shape[x.shape.length - 1] === k && residentDeltas(rt, deltas, k, n)) {
        if (bias) this.checkShape('bias', bias.shape, [n]);
        const nt = deltas.length;
        // Scratch: [epilogue][t₀ … t_d][kernel scratch, one block per thread].
        const epBytes = bias || nt ? (epilogueBytes(nt) + 15) & ~15 : 0;
        let tBytes = 0;
        for (let i = 0; i < nt; i++) tBytes += (m * deltas[i].a.shape[1] * 4 + 15) & ~15;
        const y = allocWasmTensor(rt, [...x.shape.slice(0, -1), n], 'f32');
        const base = this.scratch.ensure(epBytes + tBytes + S * T + G);
        if (epBytes) {
          // The terms written as each t = s·x·A is computed (writeEpilogue's layout, no spec objects).
          writeEpilogueHeader(rt, base, bp ?? 0, 0, 0, nt);
          for (let i = 0, t = base + epBytes; i < nt; i++) {
            const d = deltas[i];
            const r = d.a.shape[1];
            f32LoraShrink(rt, m, k, r, xp, ptrOf(d.a), t, d.scale, this.kernels);
            writeEpilogueTerm(rt, base, i, t, ptrOf(d.b), r);
            t += (m * r * 4 + 15) & ~15;
          }
        }
        this.linearKernel(m, n, k, xp, wp, ldw, ptrOf(y), epBytes ? base : 0, base + epBytes + tBytes, S, T, wDtype, sweepTimed, G > 0);
        return y;
      }
    }
    // W resident: read in place (at its stride); else staged by `run` as a compact f32 temporary.
    return this.run('linear', x, k, n, resident ? [] : [w], bias, deltas, rowScale, S * T + G, (xp, yp, ep, mm, ptrs, sp) => {
      const [wp, ld] = resident ? [resident.ptr, ldw] : [ptrs[0], k];
      this.linearKernel(mm, n, k, xp, wp, ld, yp, ep, sp, S, T, wDtype, sweepTimed, G > 0);
    });
  }

  /**
   * The f32 or bf16 linear kernel on `T` threads (scratch blocks of S bytes from `sp`), inside the tuners' stopwatches:
   * the m = 1 GEMV tile's (a row-major W) and, when `sweepTimed`, the panel sweep's. With `stage` (stagesRowPairs), x is
   * packed in row pairs once, at sp + S·T, for every chunk (the GEMMs would each pack it again).
   */
  private linearKernel(m: number, n: number, k: number, xp: number, wp: number, ldw: number, yp: number, ep: number, sp: number,
    S: number, T: number, wDtype: WeightDtype, sweepTimed: boolean, stage: boolean): void {
    const timed = m === 1 && ldw !== 0 && this.tuner.begin(this.gemvTile, wDtype, k, n); // panels: one tile
    if (T === 1) f32Linear(this.runtime, m, n, k, xp, wp, yp, ep, sp, this.kernels, wDtype, ldw);
    else {
      const staged = stage ? sp + S * T : 0;
      if (staged) this.runtime.exports.peft_f32_stage_row_pairs(m, k, xp, staged);
      this.pool!.run(wDtype === 'bf16' ? ThreadKernel.Bf16Linear : ThreadKernel.F32Linear, [m, n, k, xp, wp, ldw, yp, ep, staged], n, chunkColumns(n, T, m * k), sp, S, T, m * n * k);
    }
    if (timed) this.tuner.end();
    if (sweepTimed) this.panelSweep.end();
  }

  quantizedLinear(x: Tensor, q: QuantizedWeight, bias: Tensor | undefined, deltas: readonly LoRADelta[], rowScale?: Tensor): Tensor {
    const { k, n, bits, groupSize } = q;
    if (k % groupSize !== 0 || k % 32 !== 0 || ![32, 64, 128].includes(groupSize) || (bits !== 4 && bits !== 8)) {
      throw new BackendError('shape_mismatch', 'unsupported quantised layout', {
        expected: 'bits 4|8, groupSize 32|64|128, k % groupSize = 0',
        got: { bits, groupSize, k },
        where: 'WasmBackend.quantizedLinear',
      });
    }
    const m = x.size / (x.shape[x.shape.length - 1] || 1);
    const T = this.threadsFor(m, n, k);
    const S = (quantScratchBytes(this.runtime, m, k) + 15) & ~15; // one scratch block per thread
    // Split across threads, the GEMM's x (m > 2) is prepared once, after the threads' blocks, for every chunk.
    const G = T > 1 && m > 2 ? this.runtime.exports.peft_f32_qlinear_staged_bytes(m, k, groupSize) >>> 0 : 0;
    return this.run('quantizedLinear', x, k, n, [q.w, q.scales, q.biases], bias, deltas, rowScale, S * T + G, (xp, yp, ep, mm, ptrs, qsp) => {
      if (T === 1) return f32QLinear(this.runtime, mm, n, k, bits, groupSize, xp, ptrs[0], ptrs[1], ptrs[2], qsp, yp, ep, this.kernels);
      const staged = G ? qsp + S * T : 0;
      if (staged) this.runtime.exports.peft_f32_qlinear_stage(mm, k, bits, groupSize, xp, staged);
      this.pool!.run(ThreadKernel.QLinear, [mm, n, k, bits, groupSize, xp, ptrs[0], ptrs[1], ptrs[2], yp, ep, staged], n, chunkColumns(n, T, mm * k), qsp, S, T, mm * n * k);
    });
  }

  /**
   * The base product once for the whole batch (the plain kernel, no epilogue), then per group of rows sharing a
   * route (SGMV-style): its x rows gathered, one shrink per adapter (t = s·x·A), and one epilogue pass over its y
   * rows (`peft_f32_epilogue_rows`: Σ t·B, lora bias, DoRA gain, bias) per route pass. The epilogue is the one the
   * plain kernel runs for m ≤ 4, so a row equals that row alone, bit for bit, in any batch. One group with one pass
   * (toggle on, or all rows off) is the plain `linear` call itself.
   */
  linearRouted(x: Tensor, w: LinearWeight, bias: Tensor | undefined, route: Route): Tensor {
    const q = isQuantized(w) ? w : undefined;
    const [n, k] = q ? [q.n, q.k] : (w as Tensor).shape;
    const xk = x.shape[x.shape.length - 1];
    if (xk !== k) throw new BackendError('shape_mismatch', 'input features do not match the weight', { expected: k, got: xk, where: 'WasmBackend.linearRouted' });
    const m = x.size / k;
    checkRoute(route, m, k, n, 'WasmBackend.linearRouted');
    if (bias) this.checkShape('bias', bias.shape, [n]);
    const base = (b: Tensor | undefined, deltas: readonly LoRADelta[], rs?: Tensor) =>
      q ? this.quantizedLinear(x, q, b, deltas, rs) : this.linear(x, w as Tensor, b, deltas, rs);
    const groups = routeGroups(route);
    if (groups.length === 1) {
      const passes = routePasses(groups[0].terms);
      if (passes.length <= 1) return base(bias, passes[0]?.deltas ?? [], passes[0]?.rowScale);
    }
    const rt = this.runtime;
    const temps: Tensor[] = [];
    const y = base(undefined, []);
    try {
      const xp = this.f32Ptr(x, temps);
      const bp = bias ? this.f32Ptr(bias, temps) : 0;
      const yp = (y.storage as WasmStorage).ptr;
      for (const { terms, rows } of groups) {
        const g = rows.length;
        const passes = routePasses(terms).map((p) => ({
          terms: p.deltas.map((d) => ({ d, a: this.f32Ptr(d.a, temps), b: this.f32Ptr(d.b, temps), bias: d.bias ? this.f32Ptr(d.bias, temps) : 0, r: d.a.shape[1] })),
          rs: p.rowScale ? this.f32Ptr(p.rowScale, temps) : 0,
        }));
        if (!passes.length && !bias) continue;
        // Scratch: [row indices][x rows of the group][epilogue][t of each term][Σ s·lora_bias].
        const L = new ScratchLayout();
        const rowsOff = L.take(g * 4);
        const xsOff = L.take(g * k * 4);
        const epOff = L.take(epilogueBytes(Math.max(1, ...passes.map((p) => p.terms.length))));
        const tOff = passes.map((p) => p.terms.map((t) => L.take(g * t.r * 4)));
        const lbOff = L.take(n * 4);
        const sp = this.scratch.ensure(L.total);
        const u32 = rt.u32;
        for (let i = 0; i < g; i++) u32[((sp + rowsOff) >>> 2) + i] = rows[i];
        if (!passes.length) {
          writeEpilogue(rt, sp + epOff, { bias: bp, rowScale: 0, loraBias: 0, terms: [] });
          rt.exports.peft_f32_epilogue_rows(g, n, sp + rowsOff, yp, sp + epOff);
          continue;
        }
        const f32 = rt.f32;
        const xs = sp + xsOff;
        for (let i = 0; i < g; i++) f32.copyWithin((xs >>> 2) + i * k, (xp >>> 2) + rows[i] * k, (xp >>> 2) + (rows[i] + 1) * k);
        passes.forEach((pass, pi) => {
          const eterms: EpilogueTerm[] = pass.terms.map((t, ti) => {
            const tp = sp + tOff[pi][ti];
            f32LoraShrink(rt, g, k, t.r, xs, t.a, tp, t.d.scale, this.kernels);
            return { t: tp, b: t.b, r: t.r };
          });
          let lb = 0;
          if (pass.terms.some((t) => t.bias)) {
            lb = sp + lbOff;
            const v = rt.f32;
            for (let j = 0; j < n; j++) {
              let acc = 0;
              for (const t of pass.terms) if (t.bias) acc += t.d.scale * v[(t.bias >>> 2) + j]; // as `run`: float64, rounded once
              v[(lb >>> 2) + j] = acc;
            }
          }
          writeEpilogue(rt, sp + epOff, { bias: pi === passes.length - 1 ? bp : 0, rowScale: pass.rs, loraBias: lb, terms: eterms });
          rt.exports.peft_f32_epilogue_rows(g, n, sp + rowsOff, yp, sp + epOff);
        });
      }
      return y;
    } catch (e) {
      y.dispose();
      throw e;
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  embedding(ids: Tensor, table: Tensor, deltas: readonly LoRADelta[]): Tensor {
    const rt = this.runtime;
    const [vocab, dim] = table.shape;
    const idv = ids.data as Int32Array | Uint32Array;
    const m = idv.length;
    const idList = Array.from(idv);
    for (let i = 0; i < m; i++) {
      if (!(idList[i] >= 0 && idList[i] < vocab)) {
        throw new BackendError('shape_mismatch', 'token id out of range', { expected: `0 ≤ id < ${vocab}`, got: idList[i], where: `WasmBackend.embedding ids[${i}]` });
      }
    }
    const temps: Tensor[] = [];
    try {
      const y = allocWasmTensor(rt, [...ids.shape, dim], 'f32');
      const yPtr = (y.storage as WasmStorage).ptr;
      const tabPanels = table.dtype === 'bf16' || table.dtype === 'f32' ? panelOf(rt, table) : undefined;
      const tabBf16 = table.dtype === 'bf16' ? wasmPtrOf(rt, table) : undefined;
      if (tabPanels !== undefined) {
        // A table in panels (uploaded as a possible tied head's W): rows gathered chunk by chunk, bf16 widened exactly.
        const idp = this.scratch.ensure(m * 4);
        rt.u32.set(idList, idp >>> 2); // ids checked above: 0 ≤ id < vocab
        rt.exports.peft_panel_gather_rows(dim, table.dtype === 'bf16' ? 2 : 4, tabPanels, idp, m, yPtr);
      } else if (tabBf16 !== undefined) {
        // A resident bf16 table (uploaded with keepBf16): each gathered row is widened (exactly) into y.
        const widen = this.kernels === 'scalar' ? rt.exports.peft_bf16_to_f32__scalar : rt.exports.peft_bf16_to_f32;
        for (let i = 0; i < m; i++) widen(dim, tabBf16 + idList[i] * dim * 2, yPtr + i * dim * 4);
      } else {
        // y = E[ids]: row gather straight between wasm (or cpu) views.
        const tab = this.f32Ptr(table, temps);
        const f32 = rt.f32;
        const yp = yPtr >>> 2;
        for (let i = 0; i < m; i++) f32.copyWithin(yp + i * dim, (tab >>> 2) + idList[i] * dim, (tab >>> 2) + (idList[i] + 1) * dim);
      }
      // y += Σ sᵢ·A_e[ids]·B_e: gather the scaled rows of A_e into t [m,r], then one expand.
      for (const d of deltas) {
        const r = d.a.shape[1];
        this.checkShape('embedding lora_A', d.a.shape, [vocab, r]);
        this.checkShape('embedding lora_B', d.b.shape, [r, dim]);
        const ap = this.f32Ptr(d.a, temps) >>> 2;
        const bp = this.f32Ptr(d.b, temps);
        const tp = this.scratch.ensure(m * r * 4);
        const v = rt.f32;
        for (let i = 0; i < m; i++) for (let q = 0; q < r; q++) v[(tp >>> 2) + i * r + q] = d.scale * v[ap + idList[i] * r + q];
        f32LoraExpand(rt, m, dim, r, tp, bp, (y.storage as WasmStorage).ptr, this.kernels);
      }
      return y;
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  dispose(): void {
    this.scratch.dispose();
  }

  // ---- transformer ops --------------------------------------------------------------------------------------
  // cpp/transformer.h and cpp/attention.h (SIMD128 or their scalar twins, per `kernels`). Outputs are new f32
  // tensors in wasm memory. Inputs that are not wasm-resident f32 (cpu tensors, f16/bf16/f64) are staged as
  // temporary f32 copies; an in-place target that is not wasm-resident is staged, updated and copied back.
  // Shapes are checked before anything is allocated or written.

  zeros(shape: readonly number[]): Tensor {
    const t = this.empty(shape);
    t.storage.bytes().fill(0);
    return t;
  }

  /** Unfilled (a freed block's old bytes, or fresh zero pages the OS maps in only when first written). */
  empty(shape: readonly number[]): Tensor {
    return allocWasmTensor(this.runtime, shape, 'f32');
  }

  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const d = w.size;
    const m = rowsOf(x, d, 'rmsNorm');
    const rt = this.runtime;
    const [xr, wr] = [residentF32(rt, x), residentF32(rt, w)];
    if (xr !== undefined && wr !== undefined) {
      // Operands resident (a model's forward): no staging, no temporaries.
      const y = allocWasmTensor(rt, x.shape, 'f32');
      f32RmsNorm(rt, m, d, xr, wr, ptrOf(y), eps, this.kernels);
      return y;
    }
    return this.withTemps((temps) => {
      const [xp, wp] = [this.f32In(x, temps, 'rmsNorm'), this.f32In(w, temps, 'rmsNorm')];
      const y = allocWasmTensor(this.runtime, x.shape, 'f32');
      f32RmsNorm(this.runtime, m, d, xp, wp, ptrOf(y), eps, this.kernels);
      return y;
    });
  }

  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
    const d = w.size;
    const m = rowsOf(x, d, 'layerNorm');
    sameSize(w, b, 'layerNorm', 'bias and weight differ in size');
    return this.withTemps((temps) => {
      const [xp, wp, bp] = [this.f32In(x, temps, 'layerNorm'), this.f32In(w, temps, 'layerNorm'), this.f32In(b, temps, 'layerNorm')];
      const y = allocWasmTensor(this.runtime, x.shape, 'f32');
      f32LayerNorm(this.runtime, m, d, xp, wp, bp, ptrOf(y), eps, this.kernels);
      return y;
    });
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, heads: number, headDim: number, start: number): void {
    if (!isCount(heads) || !isCount(headDim) || headDim % 2 !== 0 || headDim === 0 || !isCount(start)) {
      throw new BackendError('shape_mismatch', 'rope: heads, start must be non-negative integers and headDim even', {
        expected: 'heads ≥ 0, headDim even ≥ 2, start ≥ 0 (integers)', got: { heads, headDim, start }, where: 'WasmBackend.rope',
      });
    }
    const m = rowsOf(x, heads * headDim, 'rope');
    const half = headDim / 2;
    const tableOk = (t: Tensor) => t.shape.length === 2 && t.shape[1] === half && start + m <= t.shape[0];
    if (!tableOk(cos) || !tableOk(sin)) {
      throw new BackendError('shape_mismatch', 'rope: the cos/sin tables do not cover these positions', {
        expected: `[≥ ${start + m}, ${half}]`, got: { cos: cos.shape, sin: sin.shape }, where: 'WasmBackend.rope',
      });
    }
    const rt = this.runtime;
    const [xr, cr, sr] = [residentF32(rt, x), residentF32(rt, cos), residentF32(rt, sin)];
    if (xr !== undefined && cr !== undefined && sr !== undefined) return f32Rope(rt, m, heads, headDim, xr, cr, sr, start, this.kernels);
    this.withTemps((temps) => {
      const [cp, sp] = [this.f32In(cos, temps, 'rope'), this.f32In(sin, temps, 'rope')];
      this.inPlace(x, temps, 'rope', (xp) => f32Rope(this.runtime, m, heads, headDim, xp, cp, sp, start, this.kernels));
    });
  }

  addInPlace(a: Tensor, b: Tensor): void {
    sameSize(a, b, 'addInPlace', 'sizes differ');
    const [ar, br] = [residentF32(this.runtime, a), residentF32(this.runtime, b)];
    if (ar !== undefined && br !== undefined) return f32AddInPlace(this.runtime, a.size, ar, br, this.kernels);
    this.withTemps((temps) => {
      const bp = this.f32In(b, temps, 'addInPlace');
      this.inPlace(a, temps, 'addInPlace', (ap) => f32AddInPlace(this.runtime, a.size, ap, bp, this.kernels));
    });
  }

  swiglu(g: Tensor, u: Tensor): Tensor {
    sameSize(g, u, 'swiglu', 'gate and up differ in size');
    const [gr, ur] = [residentF32(this.runtime, g), residentF32(this.runtime, u)];
    if (gr !== undefined && ur !== undefined) {
      const y = allocWasmTensor(this.runtime, g.shape, 'f32');
      f32Swiglu(this.runtime, g.size, gr, ur, ptrOf(y), this.kernels);
      return y;
    }
    return this.withTemps((temps) => {
      const [gp, up] = [this.f32In(g, temps, 'swiglu'), this.f32In(u, temps, 'swiglu')];
      const y = allocWasmTensor(this.runtime, g.shape, 'f32');
      f32Swiglu(this.runtime, g.size, gp, up, ptrOf(y), this.kernels);
      return y;
    });
  }

  geluTanh(x: Tensor): Tensor {
    return this.withTemps((temps) => {
      const xp = this.f32In(x, temps, 'geluTanh');
      const y = allocWasmTensor(this.runtime, x.shape, 'f32');
      f32GeluTanh(this.runtime, x.size, xp, ptrOf(y), this.kernels);
      return y;
    });
  }

  sliceColumns(x: Tensor, start: number, width: number): Tensor {
    const c = x.shape[x.shape.length - 1];
    if (!isCount(start) || !isCount(width) || start + width > c) {
      throw new BackendError('shape_mismatch', 'sliceColumns out of range', { expected: `start + width ≤ ${c}`, got: { start, width }, where: 'WasmBackend.sliceColumns' });
    }
    const m = c ? x.size / c : 0;
    return this.withTemps((temps) => {
      const xp = this.f32In(x, temps, 'sliceColumns') >>> 2;
      const y = allocWasmTensor(this.runtime, [...x.shape.slice(0, -1), width], 'f32');
      const yp = ptrOf(y) >>> 2;
      const f = this.runtime.f32;
      for (let i = 0; i < m; i++) f.copyWithin(yp + i * width, xp + i * c + start, xp + i * c + start + width);
      return y;
    });
  }

  sliceRows(x: Tensor, start: number, count: number): Tensor {
    const c = x.shape[x.shape.length - 1];
    const m = c ? x.size / c : 0;
    if (!isCount(start) || !isCount(count) || start + count > m) {
      throw new BackendError('shape_mismatch', 'sliceRows out of range', { expected: `start + count ≤ ${m}`, got: { start, count }, where: 'WasmBackend.sliceRows' });
    }
    return this.withTemps((temps) => {
      const xp = this.f32In(x, temps, 'sliceRows') >>> 2;
      const y = allocWasmTensor(this.runtime, [count, c], 'f32');
      this.runtime.f32.copyWithin(ptrOf(y) >>> 2, xp + start * c, xp + (start + count) * c);
      return y;
    });
  }

  kvWrite(cache: Tensor, src: Tensor, start: number, kvHeads: number, headDim: number): void {
    const maxLen = cacheLength(cache, kvHeads, headDim, 'kvWrite');
    const m = rowsOf(src, kvHeads * headDim, 'kvWrite');
    if (!isCount(start) || start + m > maxLen) {
      throw new BackendError('shape_mismatch', 'kvWrite past the end of the cache', { expected: `start + m ≤ ${maxLen}`, got: { start, m }, where: 'WasmBackend.kvWrite' });
    }
    const [sr, cr] = [residentF32(this.runtime, src), residentF32(this.runtime, cache)];
    if (sr !== undefined && cr !== undefined) return f32KvWrite(this.runtime, m, kvHeads, headDim, maxLen, start, sr, cr, this.kernels);
    this.withTemps((temps) => {
      const sp = this.f32In(src, temps, 'kvWrite');
      this.inPlace(cache, temps, 'kvWrite', (cp) => f32KvWrite(this.runtime, m, kvHeads, headDim, maxLen, start, sp, cp, this.kernels));
    });
  }

  attention(q: Tensor, kCache: Tensor, vCache: Tensor, start: number, shape: AttentionShape, scale: number): Tensor {
    const { heads, kvHeads, headDim: hd } = shape;
    if (!isCount(heads) || !isCount(kvHeads) || kvHeads === 0 || heads % kvHeads !== 0 || !isCount(start)) {
      throw new BackendError('shape_mismatch', 'attention: heads must be a multiple of kvHeads', {
        expected: 'heads % kvHeads = 0, start ≥ 0 (integers)', got: { heads, kvHeads, start }, where: 'WasmBackend.attention',
      });
    }
    const maxLen = cacheLength(kCache, kvHeads, hd, 'attention');
    sameSize(kCache, vCache, 'attention', 'the K and V caches differ in size');
    const m = rowsOf(q, heads * hd, 'attention');
    if (start + m > maxLen) {
      throw new BackendError('shape_mismatch', 'attention: positions past the cache', { expected: `start + m ≤ ${maxLen}`, got: start + m, where: 'WasmBackend.attention' });
    }
    return this.withTemps((temps) => {
      const [qp, kp, vp] = [this.f32In(q, temps, 'attention'), this.f32In(kCache, temps, 'attention'), this.f32In(vCache, temps, 'attention')];
      const y = allocWasmTensor(this.runtime, q.shape, 'f32');
      const sp = this.scratch.ensure(attentionScratchBytes(this.runtime, start + m));
      f32Attention(this.runtime, m, heads, kvHeads, hd, maxLen, start, qp, kp, vp, ptrOf(y), scale, sp, this.kernels);
      return y;
    });
  }

  // ---- internals --------------------------------------------------------------------------------------------

  private checkShape(what: string, got: readonly number[], expected: readonly number[]): void {
    let same = got.length === expected.length;
    for (let i = 0; same && i < got.length; i++) same = got[i] === expected[i];
    if (!same) {
      throw new BackendError('shape_mismatch', `${what} has the wrong shape`, { expected, got, where: `WasmBackend` });
    }
  }

  /** Byte offset of `t` as a wasm-resident f32 (or u32) tensor; stages a temporary copy when needed. */
  private f32Ptr(t: Tensor, temps: Tensor[]): number {
    const p = wasmPtrOf(this.runtime, t);
    if (p !== undefined && (t.dtype === 'f32' || t.dtype === 'u32' || t.dtype === 'i32')) return p;
    const c = this.upload(t);
    temps.push(c);
    return (c.storage as WasmStorage).ptr;
  }

  /** Runs `f` with a list of temporaries that is disposed afterwards, whatever happens. */
  private withTemps<T>(f: (temps: Tensor[]) => T): T {
    const temps: Tensor[] = [];
    try {
      return f(temps);
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  /** Byte offset of `t` as wasm-resident f32 for a transformer op; anything else floating is staged as a temporary. */
  private f32In(t: Tensor, temps: Tensor[], op: string): number {
    const p = wasmPtrOf(this.runtime, t);
    if (p !== undefined && t.dtype === 'f32') return p;
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16' && t.dtype !== 'f64') {
      throw new BackendError('dtype_unsupported', `${op} takes floating-point tensors`, { expected: 'f32 (or f16, bf16, f64, widened)', got: t.dtype, where: `WasmBackend.${op}` });
    }
    const c = this.upload(t);
    temps.push(c);
    return ptrOf(c);
  }

  /** Runs the in-place kernel `f` on `t` (f32): directly when wasm-resident, else on a staged copy written back. */
  private inPlace(t: Tensor, temps: Tensor[], op: string, f: (ptr: number) => void): void {
    if (t.dtype !== 'f32') throw new BackendError('dtype_unsupported', `${op} updates an f32 tensor in place`, { expected: 'f32', got: t.dtype, where: `WasmBackend.${op}` });
    const p = wasmPtrOf(this.runtime, t);
    if (p !== undefined) return f(p);
    const c = this.upload(t);
    temps.push(c);
    f(ptrOf(c));
    t.storage.bytes().set(c.storage.bytes());
  }

  /**
   * Shared driver for linear and quantizedLinear: stages inputs, computes t = sᵢ·x·Aᵢ for each delta into
   * scratch, Σ sᵢ·biasᵢ, writes the epilogue, then calls `kernel` once. x [..., k] → y [..., n].
   */
  private run(
    op: string,
    x: Tensor,
    k: number,
    n: number,
    weights: readonly Tensor[],
    bias: Tensor | undefined,
    deltas: readonly LoRADelta[],
    rowScale: Tensor | undefined,
    extraScratch: number,
    kernel: (x: number, y: number, ep: number, m: number, weights: number[], extra: number) => void,
  ): Tensor {
    const rt = this.runtime;
    const xk = x.shape[x.shape.length - 1];
    if (xk !== k) throw new BackendError('shape_mismatch', 'input features do not match the weight', { expected: k, got: xk, where: `WasmBackend.${op}` });
    const m = x.size / k;
    const ranks = deltas.map((d) => d.a.shape[1]);
    for (let i = 0; i < deltas.length; i++) {
      const d = deltas[i];
      // Inline (a template string per check would be built on every call).
      if (d.a.shape.length !== 2 || d.a.shape[0] !== k) this.checkShape(`lora_A of delta ${i}`, d.a.shape, [k, ranks[i]]);
      if (d.b.shape.length !== 2 || d.b.shape[0] !== ranks[i] || d.b.shape[1] !== n) this.checkShape(`lora_B of delta ${i}`, d.b.shape, [ranks[i], n]);
    }
    if (bias) this.checkShape('bias', bias.shape, [n]);
    if (rowScale) this.checkShape('rowScale', rowScale.shape, [n]);

    const temps: Tensor[] = [];
    try {
      // Long-lived operands: wasm-resident already (after upload), else staged as temporaries.
      const wp = weights.map((w) => this.f32Ptr(w, temps));
      const bp = bias ? this.f32Ptr(bias, temps) : 0;
      const rp = rowScale ? this.f32Ptr(rowScale, temps) : 0;
      const ap = deltas.map((d) => this.f32Ptr(d.a, temps));
      const bbp = deltas.map((d) => this.f32Ptr(d.b, temps));
      const lbp = deltas.map((d) => (d.bias ? this.f32Ptr(d.bias, temps) : 0));
      const xWasm = x.dtype === 'f32' ? wasmPtrOf(rt, x) : undefined;

      // One scratch block: [x staged?][epilogue][t₀ … t_d][Σ s·lora_bias][kernel scratch: x panels / quant strip].
      const L = new ScratchLayout();
      const xOff = xWasm === undefined ? L.take(m * k * 4) : -1;
      const hasLoraBias = deltas.some((d) => d.bias);
      const needEp = deltas.length > 0 || bias !== undefined || rowScale !== undefined;
      const epOff = needEp ? L.take(epilogueBytes(deltas.length)) : -1;
      const tOff = ranks.map((r) => L.take(m * r * 4));
      const lbOff = hasLoraBias ? L.take(n * 4) : -1;
      const qOff = L.take(extraScratch);
      // Output first (it may grow memory), then the scratch block, then fill both through fresh views.
      const y = allocWasmTensor(rt, [...x.shape.slice(0, -1), n], 'f32');
      const base = this.scratch.ensure(L.total);

      let xp: number;
      if (xWasm !== undefined) xp = xWasm;
      else {
        xp = base + xOff;
        if (x.dtype === 'f32') rt.u8.set(x.storage.bytes(), xp);
        else {
          const cx = this.upload(x);
          temps.push(cx);
          rt.u8.copyWithin(xp, (cx.storage as WasmStorage).ptr, (cx.storage as WasmStorage).ptr + m * k * 4);
        }
      }
      const terms: EpilogueTerm[] = deltas.map((d, i) => {
        const t = base + tOff[i];
        f32LoraShrink(rt, m, k, ranks[i], xp, ap[i], t, d.scale, this.kernels);
        return { t, b: bbp[i], r: ranks[i] };
      });
      let lb = 0;
      if (hasLoraBias) {
        lb = base + lbOff;
        const f = rt.f32;
        const o = lb >>> 2;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let i = 0; i < deltas.length; i++) if (deltas[i].bias) s += deltas[i].scale * f[(lbp[i] >>> 2) + j];
          f[o + j] = s;
        }
      }
      let ep = 0;
      if (needEp) {
        ep = base + epOff;
        writeEpilogue(rt, ep, { bias: bp, rowScale: rp, loraBias: lb, terms });
      }
      kernel(xp, (y.storage as WasmStorage).ptr, ep, m, wp, base + qOff);
      return y;
    } finally {
      for (const t of temps) t.dispose();
    }
  }
}

/**
 * Whether a linear split over T threads packs x in row pairs once for every chunk: where the GEMMs that read packed x
 * run (a W in panels above peft_panel_gemv_max_m, f32 or bf16, and a row-major bf16 W from m = 3); a row-major f32
 * W's GEMM and every GEMV tile read x in place.
 */
function stagesRowPairs(rt: WasmRuntime, m: number, k: number, T: number, wDtype: WeightDtype, ldw: number): boolean {
  if (T === 1 || m <= 2) return false;
  return ldw === 0 ? m > rt.exports.peft_panel_gemv_max_m(k, wDtype === 'bf16' ? 2 : 4) : wDtype === 'bf16';
}

// ---- shape checks of the transformer ops (before anything is allocated or written) -------------------------

/**
 * Every delta a plain resident one that `linear`'s direct path can take as it is: A [k,r] and B [r,n] f32 in wasm
 * memory, no lora bias (anything else, and every shape error, goes through `run`).
 */
function residentDeltas(rt: WasmRuntime, deltas: readonly LoRADelta[], k: number, n: number): boolean {
  for (let i = 0; i < deltas.length; i++) {
    const { a, b, bias } = deltas[i];
    if (bias || a.dtype !== 'f32' || b.dtype !== 'f32' || wasmPtrOf(rt, a) === undefined || wasmPtrOf(rt, b) === undefined) return false;
    const as = a.shape, bs = b.shape;
    if (as.length !== 2 || bs.length !== 2 || as[0] !== k || bs[0] !== as[1] || bs[1] !== n) return false;
  }
  return true;
}

/** Byte offset of `t` when it is a wasm-resident f32 tensor of `rt` (the transformer ops' direct path), else undefined. */
function residentF32(rt: WasmRuntime, t: Tensor): number | undefined {
  return t.dtype === 'f32' ? wasmPtrOf(rt, t) : undefined;
}

function isCount(n: number): boolean {
  return Number.isInteger(n) && n >= 0;
}

function ptrOf(t: Tensor): number {
  return (t.storage as WasmStorage).ptr;
}

/** Rows of x [..., d]: throws unless the last dimension is d. */
function rowsOf(x: Tensor, d: number, op: string): number {
  const last = x.shape[x.shape.length - 1];
  if (last !== d || d === 0) throw new BackendError('shape_mismatch', `${op}: row width does not match`, { expected: d, got: last, where: `WasmBackend.${op}` });
  return x.size / d;
}

function sameSize(a: Tensor, b: Tensor, op: string, what: string): void {
  if (a.size !== b.size) throw new BackendError('shape_mismatch', `${op}: ${what}`, { expected: a.size, got: b.size, where: `WasmBackend.${op}` });
}

/** maxLen of a head-major cache [kvHeads, maxLen, hd]. */
function cacheLength(cache: Tensor, kvHeads: number, hd: number, op: string): number {
  const row = kvHeads * hd;
  if (!isCount(kvHeads) || !isCount(hd) || row === 0 || cache.size % row !== 0) {
    throw new BackendError('shape_mismatch', `${op}: the cache is not [kvHeads, maxLen, headDim]`, {
      expected: `a multiple of kvHeads·headDim = ${row} elements`, got: { size: cache.size, shape: cache.shape }, where: `WasmBackend.${op}`,
    });
  }
  return cache.size / row;
}
