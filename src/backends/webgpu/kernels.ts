/**
 * The kernel table: one factory per WGSL file, returning the shader as data for a set of storage types.
 * Workgroup sizes and tiles are named here with their reasons; they reach the WGSL as `override` values.
 */
import { ATTENTION_WGSL } from './shaders/attention.wgsl.js';
import { ACTIVATION_WGSL, ADD_INPLACE_WGSL } from './shaders/elementwise.wgsl.js';
import { EMBEDDING_WGSL } from './shaders/embedding.wgsl.js';
import { LINEAR_GEMM_WGSL } from './shaders/linear_gemm.wgsl.js';
import { LINEAR_GEMV_WGSL } from './shaders/linear_gemv.wgsl.js';
import { LORA_PACK_WGSL } from './shaders/lora_pack.wgsl.js';
import { LORA_SHRINK_WGSL } from './shaders/lora_shrink.wgsl.js';
import { NORM_WGSL } from './shaders/norm.wgsl.js';
import { QUANTIZED_LINEAR_WGSL } from './shaders/quantized_linear.wgsl.js';
import { ROPE_WGSL } from './shaders/rope.wgsl.js';
import { STRIDED_COPY_WGSL } from './shaders/strided_copy.wgsl.js';
import { type Shader, type StorageType, specialize, spread, typesKey } from './pipelines.js';

/**
 * Invocations per workgroup for the one-output-per-invocation kernels: 64 is a multiple of every SIMD width
 * (NVIDIA 32, AMD 64, Intel 8–32, Apple 32) and within WebGPU's default 256 (as onnxruntime-web's
 * `WORKGROUP_SIZE` in js/web/lib/wasm/jsep/webgpu/ops/common.ts).
 */
export const WORKGROUP_SIZE = 64;

/** GEMM tile: 16×16 outputs and 16 k per step → 256 invocations (WebGPU's default max) and 2 KiB of tiles. */
export const GEMM_TILE = 16;

/** x values staged in workgroup memory per step of the GEMV kernels (4 rows × 256 × 4 B = 4 KiB). */
export const GEMV_CHUNK_K = 256;

/** Rows per dispatch the GEMV kernel holds (its `MAX_M`); larger m goes to the tiled GEMM. */
export const GEMV_MAX_M = 4;

/**
 * Invocations per workgroup of the cooperative GEMV (its `WORKGROUP`, a power of two): they split k with a
 * stride of 256, so each step reads 256 consecutive elements of a W row (coalesced); WebGPU's default max.
 */
export const GEMV_WORKGROUP = 256;

/** Output columns (rows of W) per GEMV workgroup step (its `ROWS`, a WGSL const). */
export const GEMV_ROWS = 4;

/**
 * Most workgroups of the fused (lora_mode 1) GEMV: every workgroup recomputes t = s·x·A (m·r·k MACs, A read
 * from cache), so the fused dispatch caps its workgroups and each walks several row groups (grid stride).
 * 256 is ~2 per SM on the largest current GPUs (132 SMs) — enough to spread the W stream over the chip while
 * bounding the redundant shrink to 256·m·r·k MACs per layer. Unmeasured on real hardware: a tuning knob.
 */
export const FUSED_GEMV_GROUPS = 256;

/** Largest rank (plus a lora-bias column) the fused GEMV keeps in workgroup memory (its `MAX_R`). */
export const FUSED_MAX_R = 129;

/** Rows per workgroup of the quantised kernel (its `ROWS`). */
export const QUANT_ROWS = 4;

const cache = new Map<string, Shader<never>>();
function memo<S>(name: string, types: Record<string, StorageType>, make: (key: string) => Shader<S>): Shader<S> {
  const key = typesKey(types);
  const id = `${name}[${key}]`;
  let s = cache.get(id) as Shader<S> | undefined;
  if (!s) cache.set(id, (s = make(key)) as Shader<never>);
  return s;
}

/** `y = rs ⊙ (x·Wᵀ + t·B) + bias`, tiled; shape {m, n}. */
export function linearGemm(types: { w_t: StorageType; b_t: StorageType }): Shader<{ m: number; n: number }> {
  return memo('linear_gemm', types, (key) => ({
    name: 'linear_gemm',
    key,
    wgsl: specialize(LINEAR_GEMM_WGSL, types),
    constants: { TILE_M: GEMM_TILE, TILE_N: GEMM_TILE, TILE_K: GEMM_TILE },
    dispatch: ({ m, n }) => [Math.ceil(n / GEMM_TILE), Math.ceil(m / GEMM_TILE), 1],
  }));
}

/**
 * Decode GEMV (m ≤ 4), cooperative (a workgroup per GEMV_ROWS output columns), with the fused shrink+expand;
 * shape {n, fused} (fused: lora_mode 1, whose workgroup count is capped at FUSED_GEMV_GROUPS).
 */
export function linearGemv(types: { w_t: StorageType; a_t: StorageType; b_t: StorageType }): Shader<{ n: number; fused: boolean }> {
  return memo('linear_gemv', types, (key) => ({
    name: 'linear_gemv',
    key,
    wgsl: specialize(LINEAR_GEMV_WGSL, types),
    constants: { WORKGROUP: GEMV_WORKGROUP },
    dispatch: ({ n, fused }) => {
      const groups = Math.ceil(n / GEMV_ROWS);
      return spread(fused ? Math.min(groups, FUSED_GEMV_GROUPS) : groups);
    },
  }));
}

/** t[:, off..off+r(+1)] = s·x·A (+ s); shape {count} = m·(r + loraBias). */
export function loraShrink(types: { a_t: StorageType }): Shader<{ count: number }> {
  return memo('lora_shrink', types, (key) => ({
    name: 'lora_shrink',
    key,
    wgsl: specialize(LORA_SHRINK_WGSL, types),
    constants: { WORKGROUP: WORKGROUP_SIZE },
    dispatch: ({ count }) => spread(Math.ceil(count / WORKGROUP_SIZE)),
  }));
}

/** MLX affine quantised linear with the expand epilogue; shape {m, n}. */
export function quantizedLinear(types: { sb_t: StorageType; b_t: StorageType }): Shader<{ m: number; n: number }> {
  return memo('quantized_linear', types, (key) => ({
    name: 'quantized_linear',
    key,
    wgsl: specialize(QUANTIZED_LINEAR_WGSL, types),
    constants: { WORKGROUP: WORKGROUP_SIZE, CHUNK_K: GEMV_CHUNK_K },
    dispatch: ({ m, n }) => [Math.ceil(n / WORKGROUP_SIZE), Math.ceil(m / QUANT_ROWS), 1],
  }));
}

/** Embedding gather + one adapter's delta; shape {m, dim}. */
export function embedding(types: { e_t: StorageType; a_t: StorageType; b_t: StorageType }): Shader<{ m: number; dim: number }> {
  return memo('embedding', types, (key) => ({
    name: 'embedding',
    key,
    wgsl: specialize(EMBEDDING_WGSL, types),
    constants: { WORKGROUP: WORKGROUP_SIZE },
    dispatch: ({ m, dim }) => [Math.ceil(dim / WORKGROUP_SIZE), m, 1],
  }));
}

/** Packs a B part into the stacked f32 B; shape {count}. */
export function loraPack(types: { src_t: StorageType }): Shader<{ count: number }> {
  return memo('lora_pack', types, (key) => ({
    name: 'lora_pack',
    key,
    wgsl: specialize(LORA_PACK_WGSL, types),
    constants: { WORKGROUP: WORKGROUP_SIZE },
    dispatch: ({ count }) => spread(Math.ceil(count / WORKGROUP_SIZE)),
  }));
}

// ── transformer ops ─────────────────────────────────────────────────────────────────────────────────

/** Invocations per row of the norms: a row of d ≤ 8192 is ≤ 32 strided loads per invocation, then one tree. */
export const NORM_WORKGROUP = 256;

/** Widest head_dim the attention kernel takes (its `MAX_HD`: q in workgroup memory, 4 accumulators each). */
export const ATTENTION_MAX_HEAD_DIM = 256;

/** A one-invocation-per-element kernel over `count` elements (spread over x and y). */
function flat(name: string, wgsl: string): Shader<{ count: number }> {
  return memo(name, {}, (key) => ({
    name,
    key,
    wgsl,
    constants: { WORKGROUP: WORKGROUP_SIZE },
    dispatch: ({ count }) => spread(Math.ceil(count / WORKGROUP_SIZE)),
  }));
}

/** RMSNorm (mode 0) or LayerNorm (mode 1), a workgroup per row; shape {m}. */
export function norm(): Shader<{ m: number }> {
  return memo('norm', {}, (key) => ({
    name: 'norm',
    key,
    wgsl: NORM_WGSL,
    constants: { WORKGROUP: NORM_WORKGROUP },
    dispatch: ({ m }) => spread(m),
  }));
}

/** Rotary embedding in place; shape {count} = m·heads·hd/2 pairs. */
export const rope = (): Shader<{ count: number }> => flat('rope', ROPE_WGSL);

/** `a += b`; shape {count}. */
export const addInPlace = (): Shader<{ count: number }> => flat('add_inplace', ADD_INPLACE_WGSL);

/** SwiGLU (mode 0) or GELU-tanh (mode 1); shape {count}. */
export const activation = (): Shader<{ count: number }> => flat('activation', ACTIVATION_WGSL);

/** Strided copy (slices, kvWrite); shape {count} = na·nb·nt. */
export const stridedCopy = (): Shader<{ count: number }> => flat('strided_copy', STRIDED_COPY_WGSL);

/** Causal GQA attention, a workgroup per (row, head); shape {pairs} = m·heads. */
export function attention(): Shader<{ pairs: number }> {
  return memo('attention', {}, (key) => ({
    name: 'attention',
    key,
    wgsl: ATTENTION_WGSL,
    constants: {},
    dispatch: ({ pairs }) => spread(pairs),
  }));
}
