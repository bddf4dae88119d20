import type { WasmRuntime } from '../../runtime/wasm.js';

/** Which twin of a kernel family to run: the SIMD128 kernels (default) or their scalar references. */
export type Kernels = 'simd128' | 'scalar';

/** One LoRA term of the epilogue: `t [m,r]` (already scaled by s) and `B [r,n]`, both byte offsets. */
export interface EpilogueTerm {
  t: number;
  b: number;
  r: number;
}

/** The epilogue of cpp/linear.h (`struct Epilogue`): every pointer optional (0 = absent). */
export interface EpilogueSpec {
  bias: number;
  rowScale: number;
  loraBias: number;
  terms: readonly EpilogueTerm[];
}

/** Bytes `writeEpilogue` needs for `nterms` terms: 5 words of header + 4 words per term. */
export function epilogueBytes(nterms: number): number {
  return 20 + 16 * nterms;
}

/** Writes `struct Epilogue` (+ its LoraTerm array right after it) at `ptr` (4-byte aligned). */
export function writeEpilogue(rt: WasmRuntime, ptr: number, e: EpilogueSpec): void {
  writeEpilogueHeader(rt, ptr, e.bias, e.rowScale, e.loraBias, e.terms.length);
  for (let d = 0; d < e.terms.length; d++) writeEpilogueTerm(rt, ptr, d, e.terms[d].t, e.terms[d].b, e.terms[d].r);
}

/** `struct Epilogue`'s header at `ptr`: its term array (`nterms` of them, `writeEpilogueTerm`) follows it. */
export function writeEpilogueHeader(rt: WasmRuntime, ptr: number, bias: number, rowScale: number, loraBias: number, nterms: number): void {
  const u32 = rt.u32;
  const w = ptr >>> 2;
  u32[w] = bias;
  u32[w + 1] = rowScale;
  u32[w + 2] = loraBias;
  u32[w + 3] = nterms;
  u32[w + 4] = nterms ? ptr + 20 : 0;
}

/** LoraTerm `d` of the epilogue at `ptr`: t [m, r] and B [r, n] (byte offsets). */
export function writeEpilogueTerm(rt: WasmRuntime, ptr: number, d: number, t: number, b: number, r: number): void {
  const u32 = rt.u32;
  const o = ((ptr + 20) >>> 2) + 4 * d;
  u32[o] = t;
  u32[o + 1] = b;
  u32[o + 2] = r;
  u32[o + 3] = 0;
}

/** The storage of W a linear kernel reads: f32 (cpp/linear.h) or bf16 (cpp/linear_bf16.h). */
export type WeightDtype = 'f32' | 'bf16';

/** Scratch bytes `f32Linear` needs for m rows of k features with a `wDtype` W. */
export function linearScratchBytes(rt: WasmRuntime, m: number, k: number, wDtype: WeightDtype = 'f32'): number {
  const ex = rt.exports;
  return (wDtype === 'bf16' ? ex.peft_f32xbf16_linear_scratch_bytes(m, k) : ex.peft_f32_linear_scratch_bytes(m, k)) >>> 0;
}

/**
 * `y [m,n] = epilogue(x [m,k] · W [n,k]ᵀ)` (cpp/linear.h; W bf16: cpp/linear_bf16.h, same contract), W's rows `ldw`
 * ≥ k elements apart (default k). `ep` = 0: plain `x·Wᵀ`; `scratch`: at least `linearScratchBytes(m, k, wDtype)`
 * bytes. Pointers are byte offsets into wasm memory.
 */
export function f32Linear(
  rt: WasmRuntime, m: number, n: number, k: number, x: number, w: number, y: number, ep: number, scratch: number,
  kernels: Kernels = 'simd128', wDtype: WeightDtype = 'f32', ldw: number = k,
): void {
  const ex = rt.exports;
  const f = wDtype === 'bf16'
    ? (kernels === 'scalar' ? ex.peft_f32xbf16_linear__scalar : ex.peft_f32xbf16_linear)
    : (kernels === 'scalar' ? ex.peft_f32_linear__scalar : ex.peft_f32_linear);
  f(m, n, k, x, w, ldw, y, ep, scratch);
}
