import type { WasmRuntime } from '../../runtime/wasm.js';

/**
 * cpp/tuning.h's knob for how the f32 GEMM sweeps a W in panels at 3 ≤ m ≤ PANEL_SWEEP_MAX_M (0: 8 panels per k-block,
 * 1: one panel, 2: x packed in row pairs, the form every larger m takes).
 */
export const TUNE_PANEL_SWEEP = 2;
/** The largest m that sweeps panels this way: from cpp/linear.h's PEFT_F32_PACKED_MIN_M = 17 on, x is packed. */
export const PANEL_SWEEP_MAX_M = 16;
/** Calls timed per sweep before choosing (after one untimed call each, in the order 0 1 2 2 1 0 …). */
export const PANEL_SWEEP_SAMPLES = 6;
/** Multiply-adds (m·n·k) from which a call is timed: ≥ ~0.1 ms even at 60 GFLOP/s, many timer ticks in Node. */
export const PANEL_SWEEP_MIN_WORK = 1 << 22;
/** The sweep a call split across threads takes (speed only). */
export const PANEL_SWEEP_THREADED = 2;
const ORDER = [0, 1, 2, 2, 1, 0];
const SWEEPS = 3;
/**
 * Another sweep must be this much faster (median) to replace 8 panels per block. The timed calls may find W warm (the
 * first calls after loading) where real decode finds it cold: Node 20, m = 8, W in L3, 8 panels 47.3 and one panel
 * 45.6 GFLOP/s (m = 16: 48.8 and 51.7), W cold 43.0 and 34.9; on Deno's V8 one panel wins by 1.3–1.45× either way.
 */
const MARGIN = 1.1;

/**
 * Which sweep the f32 GEMM takes over a W in panels at 3 ≤ m ≤ PANEL_SWEEP_MAX_M (cpp/linear_panel.h
 * f32_gemm_dot_panels), per runtime. The fastest depends on the engine, not the core: on one thread 8 panels per
 * k-block ran 1.13× the one-panel sweep in Node 20 (V8 11.3) and 0.69× of it in Deno 2.9 (a newer V8) on the same
 * machine and weights; x packed in row pairs ran 0.88–1.01× 8 panels in Node, 1.33× at m = 24 in Deno. So the backend
 * times the three on the first large one-thread calls and keeps 8 per block unless another is faster by MARGIN
 * (medians per unit of work, so calls of any shape count alike). A call split across threads always takes the packed
 * form (1.03–1.09× one panel, which beat 8 panels per block there). Speed only: every sweep gives the same bits.
 */
export class PanelSweepTuner {
  private static readonly byRuntime = new WeakMap<WasmRuntime, PanelSweepTuner>();
  /** 0, 1 or 2 once settled; -1 while timing. */
  private choice = -1;
  private calls = 0;
  private readonly times: number[][] = [[], [], []];
  private knob = 0;
  private t0 = 0;
  private work = 0;
  private timingSweep = -1;

  private constructor(private readonly rt: WasmRuntime) {}

  static of(rt: WasmRuntime): PanelSweepTuner {
    let t = PanelSweepTuner.byRuntime.get(rt);
    if (!t) PanelSweepTuner.byRuntime.set(rt, (t = new PanelSweepTuner(rt)));
    return t;
  }

  /** Before a GEMM call on a panel W (3 ≤ m ≤ PANEL_SWEEP_MAX_M) split over `threads`: sets the knob; true if `end()` must follow. */
  begin(m: number, n: number, k: number, threads: number): boolean {
    if (threads > 1) {
      this.set(PANEL_SWEEP_THREADED);
      return false;
    }
    if (this.choice >= 0 || m * n * k < PANEL_SWEEP_MIN_WORK) {
      this.set(Math.max(0, this.choice));
      return false;
    }
    const c = this.calls++;
    const sweep = ORDER[c % ORDER.length];
    this.set(sweep);
    if (c < SWEEPS) return false; // the first call of each: compile tiers, fault pages in
    this.timingSweep = sweep;
    this.work = m * n * k;
    this.t0 = performance.now();
    return true;
  }

  /** After the call `begin` returned true for. */
  end(): void {
    this.times[this.timingSweep].push((performance.now() - this.t0) / this.work);
    if (this.times.every((t) => t.length >= PANEL_SWEEP_SAMPLES)) {
      const med = this.times.map((a) => a.slice().sort((p, q) => p - q)[a.length >> 1]);
      const best = med[1] < med[2] ? 1 : 2;
      this.choice = med[best] * MARGIN < med[0] ? best : 0;
    }
  }

  /** The settled sweep (0: 8 panels per k-block, 1: one panel, 2: x packed), or undefined while timing. */
  get settled(): number | undefined {
    return this.choice >= 0 ? this.choice : undefined;
  }

  private set(value: number): void {
    if (this.knob === value) return;
    this.rt.exports.peft_set_tuning(TUNE_PANEL_SWEEP, value);
    this.knob = value;
  }
}
