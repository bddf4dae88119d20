// tuning.h: tile choices that change a kernel's speed and never its bits, set at run time.
//
// The row-major m = 1 GEMV's best tile depends on the core (and somewhat on the shape and dtype), not on anything wasm
// can ask. (A layer's resident W is stored in panels, linear_panel.h, whose GEMV has one tile; this is for any other W.)
// W cold, one thread, GB/s of W with the 8 × 2 tile ÷ the build's default tile (f32 16 × 2, bf16 8 × 4), same run:
//   2-core Intel Xeon:           f32 0.88×, bf16 0.84×
//   2-core AMD EPYC, Zen 3:      f32 1.31–1.39× (k = 896, n = 4864: 1.28×; k = 4864, n = 896: 1.51×), bf16 1.14–1.19×
//   2-core AMD EPYC, Zen 5:      f32 1.11–1.14× in a bare loop, 0.93× in bench/gemv-bandwidth.mjs; bf16 0.83–1.10×
// On Zen 3 sixteen f32 accumulators spill around the k-loop (16 + 2 x + the product exceed V8's 15 xmm registers)
// and the spills cost more than the extra rows in flight gain; on the Xeon more rows hide the power-of-two row
// stride better. So the JS backend times both tiles on each large weight shape's first decode calls and keeps the
// faster (src/backends/wasm/gemv-tuner.ts). Every tile computes each output in the dot form's one order (linear.h), so
// the choice never shows in the results.
#pragma once
#include <stdint.h>

namespace peft {

// 0 = the build's default tile, 1 = the alternative; a global in linear memory, so the threads of a shared-memory
// build see what the calling thread set.
struct Tuning {
  int32_t gemv1_f32;
  int32_t gemv1_bf16;
  int32_t panel_sweep;  // linear_panel.h f32_gemm_dot_panels below PEFT_F32_PACKED_MIN_M: 0 = 8 panels per k-block,
                        // 1 = one panel, 2 = x packed in row pairs (the form from PEFT_F32_PACKED_MIN_M on), 3 = the
                        // first row pair through the m = 2 streams tile, the other pairs from L2 (long rows; short
                        // rows take 2)
};
inline Tuning g_tuning = {0, 0, 0};

// The alternative tile (value 1) of both knobs: 8 rows × 2 k-steps per turn.
constexpr int GEMV1_ALT_NR = 8, GEMV1_ALT_U = 2;

// Which knob `peft_set_tuning(knob, value)` sets.
// TUNE_PANEL_SWEEP: how the f32 GEMM sweeps a W in panels at 3 ≤ m < PEFT_F32_PACKED_MIN_M; the backend times the
// four (the fastest depends on the engine, and across threads on m): on one thread for every m, split across threads
// per m (linear_panel.h has the measurements).
enum TuningKnob : int32_t { TUNE_GEMV1_F32 = 0, TUNE_GEMV1_BF16 = 1, TUNE_PANEL_SWEEP = 2 };

}  // namespace peft
