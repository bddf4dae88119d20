import type { WasmRuntime } from '../../runtime/wasm.js';
import type { WeightDtype } from './linear.js';

/**
 * Which m = 1 GEMV tile the linear kernels run on a row-major W (cpp/tuning.h: a W not uploaded as a linear weight,
 * such as a tied head's table; a layer's W is stored in panels, which have one tile and are never timed): 'auto'
 * times the build's default tile against the 8 × 2 tile on each weight shape's first large decode calls and keeps the
 * faster; 'build' always runs the build's default; '8x2' always the alternative. Speed only: every tile gives the same
 * bits.
 */
export type GemvTileChoice = 'auto' | 'build' | '8x2';

/** What the tuner knows about one weight shape (`WasmBackend.gemvTuning()`). */
export interface GemvTuningReport {
  dtype: WeightDtype;
  k: number;
  n: number;
  /** The tile calls run ('settled') or the build's default ('timing'), as rows × k-steps per turn ('16x2', '8x2'). */
  tile: string;
  /** 'timing' while samples are taken; 'settled' after. */
  state: 'timing' | 'settled';
  /** Median call time of the build's default tile ÷ the 8 × 2 tile's (> 1: 8 × 2 is faster); absent while timing. */
  altSpeedup?: number;
}

/**
 * W bytes below which a GEMV is not timed (it runs the build's tile): at least 64 KiB, and enough bytes that a call
 * (at ≥ 10 GB/s) lasts 50 ticks of this engine's `performance.now()`: Node's ticks are ~0.1 µs (64 KiB), a
 * cross-origin-isolated page's 5 µs (2.5 MB), another page's 100 µs (50 MB: in effect only the largest layers).
 */
export const GEMV_TUNE_MIN_BYTES = 1 << 16;
const TUNE_TICKS = 50;
const TUNE_BYTES_PER_MS = 1e7;

/** Timed calls per tile before a shape settles (after one warm-up call each). */
export const GEMV_TUNE_SAMPLES = 8;
/** The 8 × 2 tile must be this much faster (median) to replace the build's default. */
const MARGIN = 1.02;
const KNOB: Record<WeightDtype, number> = { f32: 0, bf16: 1 };

interface ShapeStats {
  dtype: WeightDtype;
  k: number;
  n: number;
  /** 0 = build's tile, 1 = 8 × 2; -1 while timing. */
  choice: number;
  /** Calls made so far while timing (alternating tiles, the first pair discarded). */
  calls: number;
  times: [number[], number[]];
  altSpeedup?: number;
}

/**
 * Run-time choice of the m = 1 GEMV tile, per runtime (one wasm instance, whose tuning global every thread reads).
 * The best tile depends on the core and on the weight's shape and dtype (cpp/tuning.h has the figures), which wasm
 * cannot ask about, so the tuner measures: `begin` before a GEMV call sets the knob (only when it changes) and, while a
 * shape is still timing, notes the start; `end` records the time. A settled shape costs one Map lookup per call.
 */
export class GemvTuner {
  private static readonly byRuntime = new WeakMap<WasmRuntime, GemvTuner>();
  private readonly shapes = new Map<number, ShapeStats>();
  /** The knob values last written to wasm memory (f32, bf16). */
  private readonly knobs = [0, 0];
  private timing: ShapeStats | undefined;
  private slot = 0;
  private t0 = 0;

  /** W bytes from which a shape is timed (GEMV_TUNE_MIN_BYTES or more on a coarse timer). */
  readonly minBytes: number;

  private constructor(private readonly rt: WasmRuntime) {
    this.minBytes = Math.max(GEMV_TUNE_MIN_BYTES, Math.ceil(timerTick() * TUNE_TICKS * TUNE_BYTES_PER_MS));
  }

  static of(rt: WasmRuntime): GemvTuner {
    let t = GemvTuner.byRuntime.get(rt);
    if (!t) GemvTuner.byRuntime.set(rt, (t = new GemvTuner(rt)));
    return t;
  }

  /** The tile a knob value runs in this build, as 'NRxU' (cpp/exports.cpp peft_gemv1_tile). */
  private tileName(dtype: WeightDtype, value: number): string {
    const t = this.rt.exports.peft_gemv1_tile(KNOB[dtype], value);
    return `${t >> 8}x${t & 255}`;
  }

  /**
   * Before an m = 1 linear with W [n, k] of `dtype`: sets the tile `mode` asks for and returns true when this call is
   * to be timed (then call `end()` right after it).
   */
  begin(mode: GemvTileChoice, dtype: WeightDtype, k: number, n: number): boolean {
    if (mode !== 'auto') {
      this.set(dtype, mode === '8x2' ? 1 : 0);
      return false;
    }
    const bytes = k * n * (dtype === 'bf16' ? 2 : 4);
    if (bytes < this.minBytes || k >= 2 ** 21 || n >= 2 ** 21) {
      this.set(dtype, 0);
      return false;
    }
    const key = ((dtype === 'bf16' ? 1 : 0) * 2 ** 21 + k) * 2 ** 21 + n;
    let s = this.shapes.get(key);
    if (!s) this.shapes.set(key, (s = { dtype, k, n, choice: -1, calls: 0, times: [[], []] }));
    if (s.choice >= 0) {
      this.set(dtype, s.choice);
      return false;
    }
    // Tiles in the order 0 1 1 0 0 1 1 0 … (not 0 1 0 1): two layers of one shape that take turns (q and o, gate and
    // up) each run both tiles, so neither tile's samples are one layer's alone.
    this.slot = (s.calls ^ (s.calls >> 1)) & 1;
    this.set(dtype, this.slot);
    this.timing = s;
    this.t0 = performance.now();
    return true;
  }

  /** After a call `begin` returned true for: records its time; settles the shape once both tiles have their samples. */
  end(): void {
    const dt = performance.now() - this.t0;
    const s = this.timing;
    this.timing = undefined;
    if (!s) return;
    if (s.calls++ >= 2) s.times[this.slot].push(dt);
    if (s.times[0].length >= GEMV_TUNE_SAMPLES && s.times[1].length >= GEMV_TUNE_SAMPLES) {
      const speedup = median(s.times[0]) / median(s.times[1]);
      s.altSpeedup = speedup;
      s.choice = speedup >= MARGIN ? 1 : 0;
      s.times = [[], []];
    }
  }

  /** Every shape timed so far, with the tile it runs now. */
  report(): GemvTuningReport[] {
    return [...this.shapes.values()].map((s) => ({
      dtype: s.dtype,
      k: s.k,
      n: s.n,
      tile: this.tileName(s.dtype, Math.max(0, s.choice)),
      state: s.choice >= 0 ? 'settled' : 'timing',
      ...(s.altSpeedup !== undefined ? { altSpeedup: s.altSpeedup } : {}),
    }));
  }

  private set(dtype: WeightDtype, value: number): void {
    const i = KNOB[dtype];
    if (this.knobs[i] === value) return;
    this.rt.exports.peft_set_tuning(i, value);
    this.knobs[i] = value;
  }
}

/** The smallest step `performance.now()` takes here, in ms (measured once, over at most 2000 reads). */
function timerTick(): number {
  let tick = Infinity;
  let prev = performance.now();
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    if (t > prev && t - prev < tick) tick = t - prev;
    prev = t;
  }
  return Number.isFinite(tick) ? tick : 1;
}

function median(a: readonly number[]): number {
  const b = [...a].sort((p, q) => p - q);
  const h = b.length >> 1;
  return b.length & 1 ? b[h] : (b[h - 1] + b[h]) / 2;
}
