// exports.cpp: the C ABI seen by JavaScript — the only file that exports symbols (through PEFT_EXPORT).
//
// Uniform entry points over pointers and sizes (all i32 in wasm32; pointers are byte offsets into linear
// memory, read them in JS as `ptr >>> 0`). Each kernel family has a SIMD128 entry and its `__scalar` twin
// with the same signature, so tests can check both against the float64 reference. The only state is the
// allocator's (malloc/free are exported by the build).
#include <stddef.h>
#include <stdint.h>
#include <emscripten/emscripten.h>
#include <malloc.h>

#include "convert.h"
#include "linear.h"
#include "linear_bf16.h"
#include "lora.h"
#include "quant.h"
#include "attention.h"
#include "transformer.h"

#define PEFT_EXPORT extern "C" EMSCRIPTEN_KEEPALIVE

using namespace peft;

// Bumped whenever a signature or the Epilogue layout changes; the TS loader checks it.
PEFT_EXPORT int32_t peft_abi_version(void) { return 14; }
// Bytes malloc'd and not yet freed (dlmalloc's mallinfo): leak tests compare it before and after.
PEFT_EXPORT size_t peft_heap_bytes_in_use(void) { return mallinfo().uordblks; }
// Sets a tile choice of tuning.h (knob: TuningKnob; value 0 = the build's default tile, 1 = the alternative, and for
// TUNE_PANEL_SWEEP also 2 = x packed in row pairs); returns 0, or -1 for an unknown knob or value. Speed only: every
// choice gives the same bits.
PEFT_EXPORT int32_t peft_set_tuning(int32_t knob, int32_t value) {
  if (knob == TUNE_PANEL_SWEEP && (value == 2 || value == 3)) {
    g_tuning.panel_sweep = value;
    return 0;
  }
  if (value != 0 && value != 1) return -1;
  if (knob == TUNE_GEMV1_F32) g_tuning.gemv1_f32 = value;
  else if (knob == TUNE_GEMV1_BF16) g_tuning.gemv1_bf16 = value;
  else if (knob == TUNE_PANEL_SWEEP) g_tuning.panel_sweep = value;
  else return -1;
  return 0;
}
// The tile a knob value runs in this build: NR << 8 | U (rows, 4-wide k-steps per turn); -1 for an unknown pair.
PEFT_EXPORT int32_t peft_gemv1_tile(int32_t knob, int32_t value) {
  if (value != 0 && value != 1) return -1;
  if (knob == TUNE_GEMV1_F32) return value ? GEMV1_ALT_NR << 8 | GEMV1_ALT_U : PEFT_GEMV1_NR << 8 | PEFT_GEMV1_U;
  if (knob == TUNE_GEMV1_BF16) return value ? GEMV1_ALT_NR << 8 | GEMV1_ALT_U : PEFT_BF16_GEMV1_NR << 8 | PEFT_BF16_GEMV1_U;
  return -1;
}
PEFT_EXPORT int32_t peft_quant_strip_rows(void) { return (int32_t)QUANT_STRIP; }
PEFT_EXPORT size_t peft_f32_qlinear_scratch_bytes(size_t m, size_t k) { return f32_qlinear_scratch_floats(m, k) * 4; }

// ---- a resident W in panels of 4 rows (f32: linear_panel.h, bf16: linear_bf16.h): the linear exports read it when
// passed ldw = 0 -----------------------------------------------------------------------------------------------------
// Bytes of an [n,k] weight of elem_bytes (4: f32, 2: bf16) in panels; 0 for another size.
PEFT_EXPORT size_t peft_weight_panel_bytes(size_t n, size_t k, size_t elem_bytes) {
  return elem_bytes == 4 ? panel_elems<float>(n, k) * 4 : elem_bytes == 2 ? panel_elems<uint16_t>(n, k) * 2 : 0;
}
// The largest m that a W in panels of elem_bytes (4: f32, 2: bf16) runs through the GEMV tiles at this k (above it,
// the GEMM: it packs x in row pairs and, for f32, sweeps the panels as TUNE_PANEL_SWEEP says).
PEFT_EXPORT size_t peft_panel_gemv_max_m(size_t k, size_t elem_bytes) {
  return elem_bytes == 2 ? bf16_panel_gemv_max_m(k) : f32_panel_gemv_max_m(k);
}
// dst (peft_weight_panel_bytes(n, k, 4)) = src [n,k] (rows lds ≥ k floats apart) in panels.
PEFT_EXPORT void peft_f32_pack_panels(size_t n, size_t k, const float* src, size_t lds, float* dst) {
  pack_panels(n, k, src, lds, dst);
}
// dst [n,k] compact = the panel weight src.
PEFT_EXPORT void peft_f32_unpack_panels(size_t n, size_t k, const float* src, float* dst) { unpack_panels(n, k, src, dst); }
// y [m,k] f32 = rows ids[0 … m) (i32, each < n) of a weight in panels of `elem_bytes` (4: f32, 2: bf16, widened).
PEFT_EXPORT void peft_panel_gather_rows(size_t k, size_t elem_bytes, const void* w, const int32_t* ids, size_t m, float* y) {
  for (size_t i = 0; i < m; i++) {
    if (elem_bytes == 4) f32_panel_row__simd128(k, panel_row((const float*)w, k, (size_t)ids[i]), y + i * k);
    else bf16_widen_panel_row__simd128(k, panel_row((const uint16_t*)w, k, (size_t)ids[i]), y + i * k);
  }
}
PEFT_EXPORT void peft_bf16_pack_panels(size_t n, size_t k, const uint16_t* src, size_t lds, uint16_t* dst) {
  pack_panels(n, k, src, lds, dst);
}
PEFT_EXPORT void peft_bf16_unpack_panels(size_t n, size_t k, const uint16_t* src, uint16_t* dst) {
  unpack_panels(n, k, src, dst);
}

// ---- linear: y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ); W rows ldw ≥ k elements apart, or ldw = 0: W in panels; ep:
// Epilogue* or 0 ------
// scratch: peft_f32_linear_scratch_bytes(m, k) bytes.
PEFT_EXPORT size_t peft_f32_linear_scratch_bytes(size_t m, size_t k) { return f32_linear_scratch_floats(m, k) * 4; }
PEFT_EXPORT void peft_f32_linear(size_t m, size_t n, size_t k, const float* x, const float* w, size_t ldw, float* y,
                                 const Epilogue* ep, float* scratch) {
  f32_linear<Simd128, PackedSimd128>(m, n, k, x, w, ldw, y, ep, scratch);
}
PEFT_EXPORT void peft_f32_linear__scalar(size_t m, size_t n, size_t k, const float* x, const float* w, size_t ldw,
                                         float* y, const Epilogue* ep, float* scratch) {
  f32_linear<Scalar, PackedScalar>(m, n, k, x, w, ldw, y, ep, scratch);
}

// Applies ep to rows rows[0..m) of y [·,n] (plain sums); LoRA term t_d is [m, r_d] in that row order (a route's group).
PEFT_EXPORT void peft_f32_epilogue_rows(size_t m, size_t n, const int32_t* rows, float* y, const Epilogue* ep) {
  f32_epilogue_rows(m, n, 0, n, rows, y, ep);
}

// ---- one thread's share of a linear: columns [j0, j1) of y, bit-identical to the same columns of the whole call --
// scratch: the same bytes as the whole call needs (one block per thread). staged: 0, or x as the kernel stages it,
// done once for every thread by the stage export beside it (the same bits either way).
// Floats of x in row pairs for m rows (the f32 and bf16 GEMMs' packed x); staged = that for x [m,k].
PEFT_EXPORT size_t peft_f32_row_pairs_bytes(size_t m, size_t k) { return f32_row_pairs_floats(m, k) * 4; }
PEFT_EXPORT void peft_f32_stage_row_pairs(size_t m, size_t k, const float* x, float* staged) {
  f32_pack_row_pairs__simd128(m, k, x, staged);
}
PEFT_EXPORT void peft_f32_linear_cols(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* x,
                                      const float* w, size_t ldw, float* y, const Epilogue* ep, float* scratch,
                                      const float* staged) {
  f32_linear_cols<Simd128, PackedSimd128>(m, n, k, j0, j1, x, w, ldw, y, ep, scratch, staged);
}
PEFT_EXPORT void peft_f32xbf16_linear_cols(size_t m, size_t n, size_t k, size_t j0, size_t j1, const float* x,
                                           const uint16_t* w, size_t ldw, float* y, const Epilogue* ep, float* scratch,
                                           const float* staged) {
  f32xbf16_linear_cols__simd128(m, n, k, j0, j1, x, w, ldw, y, ep, scratch, staged);
}
// The quantised GEMM's x (m > 2): xq [m,k] in the codes' order and the group sums xs [m,k/group].
PEFT_EXPORT size_t peft_f32_qlinear_staged_bytes(size_t m, size_t k, size_t group) {
  return f32_qlinear_staged_floats(m, k, group) * 4;
}
PEFT_EXPORT void peft_f32_qlinear_stage(size_t m, size_t k, size_t bits, size_t group, const float* x, float* staged) {
  f32_qlinear_stage(m, k, bits, group, x, staged);
}
PEFT_EXPORT void peft_f32_qlinear_cols(size_t m, size_t n, size_t k, size_t bits, size_t group, size_t j0, size_t j1,
                                       const float* x, const uint32_t* wq, const float* scales, const float* biases,
                                       float* scratch, float* y, const Epilogue* ep, const float* staged) {
  f32_qlinear_cols__simd128(m, n, k, bits, group, j0, j1, x, wq, scales, biases, scratch, y, ep, staged);
}

// ---- linear with a bf16 W [n,k] (linear_bf16.h): same contract; scratch: peft_f32xbf16_linear_scratch_bytes --
PEFT_EXPORT size_t peft_f32xbf16_linear_scratch_bytes(size_t m, size_t k) { return f32xbf16_linear_scratch_floats(m, k) * 4; }
PEFT_EXPORT void peft_f32xbf16_linear(size_t m, size_t n, size_t k, const float* x, const uint16_t* w, size_t ldw,
                                      float* y, const Epilogue* ep, float* scratch) {
  f32xbf16_linear__simd128(m, n, k, x, w, ldw, y, ep, scratch);
}
PEFT_EXPORT void peft_f32xbf16_linear__scalar(size_t m, size_t n, size_t k, const float* x, const uint16_t* w,
                                              size_t ldw, float* y, const Epilogue* ep, float* scratch) {
  f32xbf16_linear__scalar(m, n, k, x, w, ldw, y, ep, scratch);
}

// ---- lora: t [m,r] = s·x·A;  y [m,n] += t·B ----------------------------------------------------------------
PEFT_EXPORT void peft_f32_lora_shrink(size_t m, size_t k, size_t r, const float* x, const float* a, float* t, float s) {
  f32_lora_shrink<LoraSimd128>(m, k, r, x, a, t, s);
}
PEFT_EXPORT void peft_f32_lora_shrink__scalar(size_t m, size_t k, size_t r, const float* x, const float* a, float* t,
                                              float s) {
  f32_lora_shrink<LoraScalar>(m, k, r, x, a, t, s);
}
PEFT_EXPORT void peft_f32_lora_expand(size_t m, size_t n, size_t r, const float* t, const float* b, float* y) {
  f32_lora_expand__simd128(m, n, r, t, b, y);
}
PEFT_EXPORT void peft_f32_lora_expand__scalar(size_t m, size_t n, size_t r, const float* t, const float* b, float* y) {
  f32_lora_expand__scalar(m, n, r, t, b, y);
}

// ---- quant: MLX affine 4/8-bit ------------------------------------------------------------------------------
PEFT_EXPORT void peft_f32_dequantize(size_t n, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                     const float* scales, const float* biases, float* out) {
  f32_dequantize__simd128(n, k, bits, group, wq, scales, biases, out);
}
PEFT_EXPORT void peft_f32_dequantize__scalar(size_t n, size_t k, size_t bits, size_t group, const uint32_t* wq,
                                             const float* scales, const float* biases, float* out) {
  f32_dequantize__scalar(n, k, bits, group, wq, scales, biases, out);
}
PEFT_EXPORT void peft_f32_qlinear(size_t m, size_t n, size_t k, size_t bits, size_t group, const float* x,
                                  const uint32_t* wq, const float* scales, const float* biases, float* scratch,
                                  float* y, const Epilogue* ep) {
  f32_qlinear<QuantSimd128>(m, n, k, bits, group, x, wq, scales, biases, scratch, y, ep);
}
PEFT_EXPORT void peft_f32_qlinear__scalar(size_t m, size_t n, size_t k, size_t bits, size_t group, const float* x,
                                          const uint32_t* wq, const float* scales, const float* biases, float* scratch,
                                          float* y, const Epilogue* ep) {
  f32_qlinear<QuantScalar>(m, n, k, bits, group, x, wq, scales, biases, scratch, y, ep);
}

// ---- convert: n elements, src → dst -------------------------------------------------------------------------
PEFT_EXPORT void peft_f16_to_f32(size_t n, const uint16_t* src, float* dst) { f16_to_f32__simd128(n, src, dst); }
PEFT_EXPORT void peft_f16_to_f32__scalar(size_t n, const uint16_t* src, float* dst) { f16_to_f32__scalar(n, src, dst); }
PEFT_EXPORT void peft_bf16_to_f32(size_t n, const uint16_t* src, float* dst) { bf16_to_f32__simd128(n, src, dst); }
PEFT_EXPORT void peft_bf16_to_f32__scalar(size_t n, const uint16_t* src, float* dst) { bf16_to_f32__scalar(n, src, dst); }
PEFT_EXPORT void peft_f32_to_f16(size_t n, const float* src, uint16_t* dst) { f32_to_f16__simd128(n, src, dst); }
PEFT_EXPORT void peft_f32_to_f16__scalar(size_t n, const float* src, uint16_t* dst) { f32_to_f16__scalar(n, src, dst); }
PEFT_EXPORT void peft_f32_to_bf16(size_t n, const float* src, uint16_t* dst) { f32_to_bf16__simd128(n, src, dst); }
PEFT_EXPORT void peft_f32_to_bf16__scalar(size_t n, const float* src, uint16_t* dst) { f32_to_bf16__scalar(n, src, dst); }

// ---- transformer ops (transformer.h, attention.h): row-major f32; see the headers for the contracts -------
PEFT_EXPORT void peft_f32_rms_norm(size_t m, size_t d, const float* x, const float* w, float* y, double eps) {
  f32_rms_norm__simd128(m, d, x, w, y, eps);
}
PEFT_EXPORT void peft_f32_rms_norm__scalar(size_t m, size_t d, const float* x, const float* w, float* y, double eps) {
  f32_rms_norm__scalar(m, d, x, w, y, eps);
}
PEFT_EXPORT void peft_f32_layer_norm(size_t m, size_t d, const float* x, const float* w, const float* b, float* y,
                                     double eps) {
  f32_layer_norm__simd128(m, d, x, w, b, y, eps);
}
PEFT_EXPORT void peft_f32_layer_norm__scalar(size_t m, size_t d, const float* x, const float* w, const float* b,
                                             float* y, double eps) {
  f32_layer_norm__scalar(m, d, x, w, b, y, eps);
}
// x [m, heads·hd] in place; cos, sin: the tables' first element (row p at p·hd/2).
PEFT_EXPORT void peft_f32_rope(size_t m, size_t heads, size_t hd, float* x, const float* cos_t, const float* sin_t,
                               size_t start) {
  f32_rope__simd128(m, heads, hd, x, cos_t, sin_t, start);
}
PEFT_EXPORT void peft_f32_rope__scalar(size_t m, size_t heads, size_t hd, float* x, const float* cos_t,
                                       const float* sin_t, size_t start) {
  f32_rope__scalar(m, heads, hd, x, cos_t, sin_t, start);
}
PEFT_EXPORT void peft_f32_add_inplace(size_t n, float* a, const float* b) { f32_add_inplace__simd128(n, a, b); }
PEFT_EXPORT void peft_f32_add_inplace__scalar(size_t n, float* a, const float* b) { f32_add_inplace__scalar(n, a, b); }
PEFT_EXPORT void peft_f32_swiglu(size_t n, const float* g, const float* u, float* y) { f32_swiglu__simd128(n, g, u, y); }
PEFT_EXPORT void peft_f32_swiglu__scalar(size_t n, const float* g, const float* u, float* y) {
  f32_swiglu__scalar(n, g, u, y);
}
PEFT_EXPORT void peft_f32_gelu_tanh(size_t n, const float* x, float* y) { f32_gelu_tanh__simd128(n, x, y); }
PEFT_EXPORT void peft_f32_gelu_tanh__scalar(size_t n, const float* x, float* y) { f32_gelu_tanh__scalar(n, x, y); }
// src [m, kvHeads·hd] → cache [kvHeads, maxLen, hd] rows start … start + m − 1.
PEFT_EXPORT void peft_f32_kv_write(size_t m, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                   const float* src, float* cache) {
  f32_kv_write__simd128(m, kv_heads, hd, max_len, start, src, cache);
}
PEFT_EXPORT void peft_f32_kv_write__scalar(size_t m, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                           const float* src, float* cache) {
  f32_kv_write__scalar(m, kv_heads, hd, max_len, start, src, cache);
}
// scratch: peft_f32_attention_scratch_bytes(start + m) bytes.
PEFT_EXPORT size_t peft_f32_attention_scratch_bytes(size_t n_keys) { return f32_attention_scratch_floats(n_keys) * 4; }
PEFT_EXPORT void peft_f32_attention(size_t m, size_t heads, size_t kv_heads, size_t hd, size_t max_len, size_t start,
                                    const float* q, const float* kc, const float* vc, float* y, float scale,
                                    float* scratch) {
  f32_attention<AttnSimd128>(m, heads, kv_heads, hd, max_len, start, q, kc, vc, y, scale, scratch);
}
PEFT_EXPORT void peft_f32_attention__scalar(size_t m, size_t heads, size_t kv_heads, size_t hd, size_t max_len,
                                            size_t start, const float* q, const float* kc, const float* vc, float* y,
                                            float scale, float* scratch) {
  f32_attention<AttnScalar>(m, heads, kv_heads, hd, max_len, start, q, kc, vc, y, scale, scratch);
}
