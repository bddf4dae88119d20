import type { WasmRuntime } from '../../runtime/wasm.js';

/**
 * cpp/tuning.h's knob for how the f32 GEMM sweeps a W in panels at 3 ≤ m ≤ PANEL_SWEEP_MAX_M (0: 8 panels per k-block,
 * 1: one panel, 2: x packed in row pairs, the form every larger m takes, 3: the first row pair over four streams of
 * panels, the other pairs from L2; rows shorter than 2048 take 2 for 3).
 */
export const TUNE_PANEL_SWEEP = 2;
/** The largest m that sweeps panels this way: from cpp/linear.h's PEFT_F32_PACKED_MIN_M = 17 on, x is packed. */
export const PANEL_SWEEP_MAX_M = 16;
/** Calls timed per sweep before choosing (after one untimed call each, in the order 0 1 2 3 3 2 1 0 …). */
export const PANEL_SWEEP_SAMPLES = 6;
/** Multiply-adds (m·n·k) from which a call is timed: ≥ ~0.1 ms even at 60 GFLOP/s, many timer ticks in Node. */
export const PANEL_SWEEP_MIN_WORK = 1 << 22;
/** The sweep a call split across threads takes while too small to time (m·n·k < PANEL_SWEEP_MIN_WORK) and its m unsettled. */
export const PANEL_SWEEP_THREADED_UNTIMED = 2;
const ORDER = [0, 1, 2, 3, 3, 2, 1, 0];
const SWEEPS = 4;
/**
 * Another sweep must be this much faster (median) to replace 8 panels per block. The timed calls may find W warm (the
 * first calls after loading) where real decode finds it cold: Node 20, m = 8, W in L3, 8 panels 47.3 and one panel
 * 45.6 GFLOP/s (m = 16: 48.8 and 51.7), W cold 43.0 and 34.9; on Deno's V8 one panel wins by 1.3–1.45× either way.
 */
const MARGIN = 1.1;

/** The sweeps by knob value, as `panelSweepTuning()` names them. */
export const PANEL_SWEEP_NAMES = ['8 panels', 'one panel', 'x packed', 'pair streams'] as const;
export type PanelSweepName = (typeof PANEL_SWEEP_NAMES)[number];

/** Which sweep one stopwatch's calls take: one-thread calls (`m` absent) or calls of m rows split across threads. */
export interface PanelSweepReport {
  /** Absent: one-thread calls of every m; else calls of m rows split across threads. */
  m?: number;
  state: 'timing' | 'settled';
  /** The sweep calls run once settled. */
  sweep?: PanelSweepName;
  /** Median time per multiply-add of each sweep ÷ the fastest's, by name; once settled. */
  relative?: Partial<Record<PanelSweepName, number>>;
}

/** One stopwatch: the sweeps' timed calls until it settles. */
class SweepTimes {
  /** 0 … SWEEPS − 1 once settled; -1 while timing. */
  choice = -1;
  calls = 0;
  readonly times: number[][] = Array.from({ length: SWEEPS }, () => []);

  /** The sweep the next call takes, and whether it is timed. */
  next(): { sweep: number; timed: boolean } {
    if (this.choice >= 0) return { sweep: this.choice, timed: false };
    const c = this.calls++;
    return { sweep: ORDER[c % ORDER.length], timed: c >= SWEEPS }; // the first call of each untimed: compile tiers, fault pages in
  }

  add(sweep: number, perWork: number): void {
    this.times[sweep].push(perWork);
    if (this.times.every((t) => t.length >= PANEL_SWEEP_SAMPLES)) {
      const med = this.times.map((a) => a.slice().sort((p, q) => p - q)[a.length >> 1]);
      let best = 1;
      for (let s = 2; s < SWEEPS; s++) if (med[s] < med[best]) best = s;
      this.choice = med[best] * MARGIN < med[0] ? best : 0;
      const fastest = Math.min(...med);
      this.relative = Object.fromEntries(med.map((t, i) => [PANEL_SWEEP_NAMES[i], t / fastest]));
    }
  }

  /** Medians ÷ the fastest's, once settled. */
  relative?: Partial<Record<PanelSweepName, number>>;

  report(m?: number): PanelSweepReport {
    return {
      ...(m !== undefined ? { m } : {}),
      state: this.choice >= 0 ? 'settled' : 'timing',
      ...(this.choice >= 0 ? { sweep: PANEL_SWEEP_NAMES[this.choice], relative: this.relative } : {}),
    };
  }
}

/**
 * Which sweep the f32 GEMM takes over a W in panels at 3 ≤ m ≤ PANEL_SWEEP_MAX_M (cpp/linear_panel.h
 * f32_gemm_dot_panels), per runtime. The fastest depends on the engine, not the core: on one thread 8 panels per
 * k-block ran 1.13× the one-panel sweep in Node 20 (V8 11.3) and 0.69× of it in Deno 2.9 (a newer V8) on the same
 * machine and weights; x packed in row pairs ran 0.88–1.01× 8 panels in Node, 1.33× at m = 24 in Deno. So the backend
 * times the four on the first large calls and keeps 8 per block unless another is faster by MARGIN (medians per unit
 * of work, so calls of any shape count alike): one stopwatch for one-thread calls (any m), and one per m for calls
 * split across threads, where the best sweep moves with m. Measured (Zen 5, Node 20, two threads, k = n = 4096, ÷ one
 * thread in one process; 8 panels / one / packed): m = 3 1.66 / 1.65 / 1.59×, m = 4 1.48 / 1.64 / 1.85×, m = 5 1.56 /
 * 1.64 / 1.81×, m = 6 1.86 / 1.63 / 1.78×, m = 8 1.78 / 1.50 / 1.60×, m = 12 1.72 / 1.58 / 1.62×, m = 16 1.69 / 1.59 /
 * 1.69×; k 896 n 4864 m = 8 1.99 / 1.77 / 1.80×. (Always packed there had been the rule: two threads at m = 8 ran
 * 1.56–1.65× one thread in bench/threads.mjs.) The fourth, the first row pair over streams (a later session), beat the
 * fastest of the three by 1.05–1.12× at m = 4 … 8 on one thread in Node (k = n = 4096; linear_panel.h). Speed only:
 * every sweep gives the same bits.
 */
export class PanelSweepTuner {
  private static readonly byRuntime = new WeakMap<WasmRuntime, PanelSweepTuner>();
  private readonly one = new SweepTimes();
  private readonly threaded = new Map<number, SweepTimes>();
  private knob = 0;
  private t0 = 0;
  private work = 0;
  private timing: { times: SweepTimes; sweep: number } | undefined;

  private constructor(private readonly rt: WasmRuntime) {}

  static of(rt: WasmRuntime): PanelSweepTuner {
    let t = PanelSweepTuner.byRuntime.get(rt);
    if (!t) PanelSweepTuner.byRuntime.set(rt, (t = new PanelSweepTuner(rt)));
    return t;
  }

  /** Before a GEMM call on a panel W (3 ≤ m ≤ PANEL_SWEEP_MAX_M) split over `threads`: sets the knob; true if `end()` must follow. */
  begin(m: number, n: number, k: number, threads: number): boolean {
    let times = this.one;
    if (threads > 1) {
      let t = this.threaded.get(m);
      if (!t) this.threaded.set(m, (t = new SweepTimes()));
      times = t;
    }
    if (times.choice < 0 && m * n * k < PANEL_SWEEP_MIN_WORK) {
      this.set(threads > 1 ? PANEL_SWEEP_THREADED_UNTIMED : 0); // too small to time, until a larger call of this m settles it
      return false;
    }
    const { sweep, timed } = times.next();
    this.set(sweep);
    if (!timed) return false;
    this.timing = { times, sweep };
    this.work = m * n * k;
    this.t0 = performance.now();
    return true;
  }

  /** After the call `begin` returned true for. */
  end(): void {
    const t = this.timing;
    if (!t) return;
    this.timing = undefined;
    t.times.add(t.sweep, (performance.now() - this.t0) / this.work);
  }

  /** The settled sweep of one-thread calls (0: 8 panels per k-block, 1: one panel, 2: x packed, 3: pair streams), or undefined while timing. */
  get settled(): number | undefined {
    return this.one.choice >= 0 ? this.one.choice : undefined;
  }

  /** Every stopwatch that has seen a call: one-thread calls first, then split calls by m. */
  report(): PanelSweepReport[] {
    const out: PanelSweepReport[] = [];
    if (this.one.calls > 0) out.push(this.one.report());
    for (const [m, t] of [...this.threaded].sort((a, b) => a[0] - b[0])) if (t.calls > 0) out.push(t.report(m));
    return out;
  }

  /** The same for calls of m rows split across threads. */
  settledThreaded(m: number): number | undefined {
    const c = this.threaded.get(m)?.choice ?? -1;
    return c >= 0 ? c : undefined;
  }

  private set(value: number): void {
    if (this.knob === value) return;
    this.rt.exports.peft_set_tuning(TUNE_PANEL_SWEEP, value);
    this.knob = value;
  }
}
