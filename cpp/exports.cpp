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

#define PEFT_EXPORT extern "C" EMSCRIPTEN_KEEPALIVE

using namespace peft;

// Bumped whenever a signature or the Epilogue layout changes; the TS loader checks it.
PEFT_EXPORT int32_t peft_abi_version(void) { return 6; }
// Bytes malloc'd and not yet freed (dlmalloc's mallinfo): leak tests compare it before and after.
PEFT_EXPORT size_t peft_heap_bytes_in_use(void) { return mallinfo().uordblks; }
PEFT_EXPORT int32_t peft_quant_strip_rows(void) { return (int32_t)QUANT_STRIP; }
PEFT_EXPORT size_t peft_f32_qlinear_scratch_bytes(size_t m, size_t k) { return f32_qlinear_scratch_floats(m, k) * 4; }

// ---- linear: y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ); ep: Epilogue* or 0 ----------------------------------
// scratch: peft_f32_linear_scratch_bytes(m, k) bytes (x packed into 8-row panels for m > 4).
PEFT_EXPORT size_t peft_f32_linear_scratch_bytes(size_t m, size_t k) { return f32_linear_scratch_floats(m, k) * 4; }
PEFT_EXPORT void peft_f32_linear(size_t m, size_t n, size_t k, const float* x, const float* w, float* y,
                                 const Epilogue* ep, float* scratch) {
  f32_linear<Simd128, PackedSimd128>(m, n, k, x, w, y, ep, scratch);
}
PEFT_EXPORT void peft_f32_linear__scalar(size_t m, size_t n, size_t k, const float* x, const float* w, float* y,
                                         const Epilogue* ep, float* scratch) {
  f32_linear<Scalar, PackedScalar>(m, n, k, x, w, y, ep, scratch);
}

// Applies ep to rows rows[0..m) of y [·,n] (plain sums); LoRA term t_d is [m, r_d] in that row order (a route's group).
PEFT_EXPORT void peft_f32_epilogue_rows(size_t m, size_t n, const int32_t* rows, float* y, const Epilogue* ep) {
  f32_epilogue_rows(m, n, rows, y, ep);
}

// ---- linear with a bf16 W [n,k] (linear_bf16.h): same contract; scratch: peft_f32xbf16_linear_scratch_bytes --
PEFT_EXPORT size_t peft_f32xbf16_linear_scratch_bytes(size_t m, size_t k) { return f32xbf16_linear_scratch_floats(m, k) * 4; }
PEFT_EXPORT void peft_f32xbf16_linear(size_t m, size_t n, size_t k, const float* x, const uint16_t* w, float* y,
                                      const Epilogue* ep, float* scratch) {
  f32xbf16_linear__simd128(m, n, k, x, w, y, ep, scratch);
}
PEFT_EXPORT void peft_f32xbf16_linear__scalar(size_t m, size_t n, size_t k, const float* x, const uint16_t* w,
                                              float* y, const Epilogue* ep, float* scratch) {
  f32xbf16_linear__scalar(m, n, k, x, w, y, ep, scratch);
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
