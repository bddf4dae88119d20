/**
 * The kernel table: one factory per WGSL file, returning the shader as data for a set of storage types.
 * Workgroup sizes and tiles are named here with their reasons; they reach the WGSL as `override` values.
 */
import { ATTENTION_WGSL } from './shaders/attention.wgsl.js';
import { ACTIVATION_WGSL, ADD_INPLACE_WGSL } from './shaders/elementwise.wgsl.js';
import { EMBEDDING_WGSL } from './shaders/embedding.wgsl.js';
import { LINEAR_GEMM_WGSL } from './shaders/linear_gemm.wgsl.js';
import { GEMM_BN, type GemmTile, linearGemmTiledWgsl } from './shaders/linear_gemm_tiled.wgsl.js';
import { gemvWorkgroup, linearGemvWgsl } from './shaders/linear_gemv.wgsl.js';
import { SGMV_EXPAND_WGSL, SGMV_SHRINK_WGSL } from './shaders/sgmv.wgsl.js';
import { LORA_PACK_WGSL } from './shaders/lora_pack.wgsl.js';
import { LORA_SHRINK_WGSL } from './shaders/lora_shrink.wgsl.js';
import { ADD_NORM_WGSL, NORM_WGSL } from './shaders/norm.wgsl.js';
import { QUANTIZED_LINEAR_WGSL } from './shaders/quantized_linear.wgsl.js';
import { ROPE_KV_WGSL, ROPE_WGSL } from './shaders/rope.wgsl.js';
import { SPLIT_QKV_WGSL, STRIDED_COPY_WGSL } from './shaders/strided_copy.wgsl.js';
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

/** Largest m the GEMV route may take (`gemvMaxM` is clamped to it): two row blocks of 8 (W streamed twice). */
export const GEMV_MAX_M = 16;

/**
 * Default largest m on the GEMV route: up to one row block of 8, the GEMV streams W once at full bandwidth, where
 * the smallest GEMM tile (32 rows) would waste ≥ 3/4 of its rows and give n/64 workgroups.
 */
export const GEMV_DEFAULT_M = 8;

/** Rows of x a GEMV dispatch slice holds (its `MAX_M`): the next power of two ≥ m, at most 8. */
export function gemvBlock(m: number): number {
  return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : 8;
}

/**
 * Invocations per workgroup of the cooperative GEMV (its `WORKGROUP`, a power of two): they split k with a
 * stride of 256, so each step reads 256 consecutive elements of a W row (coalesced); WebGPU's default max.
 */
export const GEMV_WORKGROUP = 256;

/** Output columns (rows of W) per GEMV workgroup step (its `ROWS`, a WGSL const). */
export const GEMV_ROWS = 4;

/** Widest t (rank plus lora-bias columns) the GEMV stages in workgroup memory (its `MAX_R`); wider: ks = 1, t read directly. */
export const FUSED_MAX_R = 129;

/**
 * Target workgroups of the k-split shrink (m·ks): enough to spread a small-m shrink over a large GPU, and at most
 * SHRINK_MAX_KS partials (each consumer sums ks values per t entry) of at least SHRINK_MIN_CHUNK k each.
 */
export const SHRINK_TARGET_GROUPS = 256;
export const SHRINK_MAX_KS = 8;
export const SHRINK_MIN_CHUNK = 256;

/** The k split of lora_shrink for m rows: ks partials of kchunk (ks = 1 when `split` is false). */
export function shrinkSplit(m: number, k: number, split: boolean): { ks: number; kchunk: number } {
  if (!split || k <= 0) return { ks: 1, kchunk: Math.max(1, k) };
  const want = Math.max(1, Math.min(SHRINK_MAX_KS, Math.ceil(k / SHRINK_MIN_CHUNK), Math.ceil(SHRINK_TARGET_GROUPS / Math.max(1, m))));
  const kchunk = Math.ceil(k / want);
  return { ks: Math.ceil(k / kchunk), kchunk };
}

/** Rows per workgroup of the quantised kernel (its `ROWS`). */
export const QUANT_ROWS = 4;

const cache = new Map<string, Shader<never>>();
function memoKey<S>(name: string, key: string, make: () => Shader<S>): Shader<S> {
  const id = `${name}[${key}]`;
  let s = cache.get(id) as Shader<S> | undefined;
  if (!s) cache.set(id, (s = make()) as Shader<never>);
  return s;
}
function memo<S>(name: string, types: Record<string, StorageType>, make: (key: string) => Shader<S>): Shader<S> {
  const key = typesKey(types);
  const id = `${name}[${key}]`;
  let s = cache.get(id) as Shader<S> | undefined;
  if (!s) cache.set(id, (s = make(key)) as Shader<never>);
  return s;
}

/** `y = rs ⊙ (x·Wᵀ + t·B) + bias`, the 16×16 one-output-per-invocation GEMM (kept for reference/tests); shape {m, n}. */
export function linearGemm(types: { w_t: StorageType; b_t: StorageType }): Shader<{ m: number; n: number }> {
  return memo('linear_gemm', types, (key) => ({
    name: 'linear_gemm',
    key,
    wgsl: specialize(LINEAR_GEMM_WGSL, types),
    constants: { TILE_M: GEMM_TILE, TILE_N: GEMM_TILE, TILE_K: GEMM_TILE },
    dispatch: ({ m, n }) => [Math.ceil(n / GEMM_TILE), Math.ceil(m / GEMM_TILE), 1],
  }));
}

export type GemmTileT = GemmTile;

/** GEMM tiles (see linear_gemm_tiled.wgsl.ts): rows per workgroup, rows per invocation, k per step. */
export const GEMM_TILES: Record<GemmTile['name'], GemmTile> = {
  L: { name: 'L', bm: 128, tm: 8, bk: 16 },
  M: { name: 'M', bm: 64, tm: 4, bk: 16 },
  S: { name: 'S', bm: 32, tm: 2, bk: 32 },
};

/**
 * Workgroups that fill a large GPU: about one per SM of a 132-SM part (H200). Fewer leave SMs idle in proportion.
 */
export const GEMM_FULL_GROUPS = 132;

/**
 * Each tile's GFLOP/s at full occupancy and no padded rows (f32, k = n = 4096, H200 via Dawn/Vulkan, GPU time from
 * timestamps): bigger tiles reuse each loaded x and W value more, so they run faster once there is enough work.
 */
const GEMM_TILE_PEAK: Record<GemmTile['name'], number> = { S: 15_000, M: 26_500, L: 33_000 };

/**
 * The tile with the best predicted throughput for `x: [m, k] · Wᵀ: [k, n]`:
 *   peak(t) · m / (⌈m / bm⌉ · bm) · min(1, ⌈m / bm⌉ · ⌈n / 64⌉ / GEMM_FULL_GROUPS),
 * that is, the tile's own speed × the rows that are not padding × the share of the GPU its workgroups occupy.
 * Over 54 shapes measured on an H200 (k, n from 896 to 8192 and the 151,936-row LM head, m 16 … 2048) it picks
 * tiles at a geometric mean of 97 % of the best tile's speed; the former rule (L from 256 groups, M from 128)
 * reached 91 %, and 57 % on the LM head at m = 16.
 */
export function gemmTileFor(m: number, n: number): GemmTile {
  let best: GemmTile = GEMM_TILES.S;
  let bestScore = -1;
  for (const t of [GEMM_TILES.S, GEMM_TILES.M, GEMM_TILES.L]) {
    const blocks = Math.ceil(m / t.bm);
    const score = GEMM_TILE_PEAK[t.name] * (m / (blocks * t.bm)) * Math.min(1, (blocks * Math.ceil(n / GEMM_BN)) / GEMM_FULL_GROUPS);
    if (score > bestScore) {
      best = t;
      bestScore = score;
    }
  }
  return best;
}

/** Register-tiled GEMM (linear_gemm_tiled); shape {m, n}. `vec`: k % 4 = 0, vec4 loads. */
export function linearGemmTiled(v: { tile: GemmTile; vec: boolean; w: StorageType; b: StorageType }): Shader<{ m: number; n: number }> {
  const types = { tile: v.tile.name, vec: v.vec ? 'v4' : 's', w: v.w, b: v.b };
  const key = Object.entries(types).map(([k, x]) => `${k}=${x}`).join(',');
  return memoKey('linear_gemm_tiled', key, () => ({
    name: 'linear_gemm_tiled',
    key,
    wgsl: linearGemmTiledWgsl(v),
    constants: {},
    dispatch: ({ m, n }) => [Math.ceil(n / GEMM_BN), Math.ceil(m / v.tile.bm), 1],
  }));
}

/**
 * Decode / small-batch GEMV (m ≤ GEMV_MAX_M): a workgroup per GEMV_ROWS output columns, z = row blocks of
 * `maxM`; subgroupAdd reduction when `subgroups`; shape {n, m}.
 */
export function linearGemv(v: { maxM: number; subgroups: boolean; vec: boolean; w: StorageType; b: StorageType }): Shader<{ n: number; m: number }> {
  const key = `mb=${v.maxM},${v.subgroups ? 'sg' : 'tree'},${v.vec ? 'v4' : 's'},w=${v.w},b=${v.b}`;
  return memoKey('linear_gemv', key, () => ({
    name: 'linear_gemv',
    key,
    wgsl: linearGemvWgsl(v),
    constants: {},
    dispatch: ({ n, m }) => {
      const [x, y] = spread(Math.ceil(n / GEMV_ROWS));
      return [x, y, Math.ceil(m / v.maxM)];
    },
  }));
}

/** Invocations per GEMV workgroup for a variant (reported by kernelFor). */
export const gemvThreads = gemvWorkgroup;

/** Invocations per lora_shrink workgroup (one workgroup per row and k chunk). */
export const SHRINK_WORKGROUP = 256;

/** t[s, :, off..off+r(+1)] = scale·x·A over k chunk s (+ scale); shape {groups} = m·ks. */
export function loraShrink(types: { a_t: StorageType }): Shader<{ groups: number }> {
  return memo('lora_shrink', types, (key) => ({
    name: 'lora_shrink',
    key,
    wgsl: specialize(LORA_SHRINK_WGSL, types),
    constants: { WORKGROUP: SHRINK_WORKGROUP },
    dispatch: ({ groups }) => spread(groups),
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

/** Routed rows' adapters, batched: one workgroup per (row, adapter) pair (see shaders/sgmv.wgsl.ts). */
export function sgmvShrink(): Shader<{ pairs: number }> {
  return memo('sgmv_shrink', {}, (key) => ({
    name: 'sgmv_shrink',
    key,
    wgsl: SGMV_SHRINK_WGSL,
    constants: { WORKGROUP: SHRINK_WORKGROUP },
    dispatch: ({ pairs }) => spread(pairs),
  }));
}

/** Routed rows' adapters, batched: one invocation per output, each row's adapters in route order. */
export function sgmvExpand(): Shader<{ count: number }> {
  return memo('sgmv_expand', {}, (key) => ({
    name: 'sgmv_expand',
    key,
    wgsl: SGMV_EXPAND_WGSL,
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

/** `x += o`, then RMSNorm (mode 0) or LayerNorm (mode 1), a workgroup per row; shape {m}. */
export function addNorm(): Shader<{ m: number }> {
  return memo('add_norm', {}, (key) => ({
    name: 'add_norm',
    key,
    wgsl: ADD_NORM_WGSL,
    constants: { WORKGROUP: NORM_WORKGROUP },
    dispatch: ({ m }) => spread(m),
  }));
}

/** Rotary embedding in place; shape {count} = m·heads·hd/2 pairs. */
export const rope = (): Shader<{ count: number }> => flat('rope', ROPE_WGSL);

/** rope(q) in place, rope(k) and v into the KV cache; shape {count} = m·(heads + kvHeads)·hd/2 + m·kvHeads·hd. */
export const ropeKv = (): Shader<{ count: number }> => flat('rope_kv', ROPE_KV_WGSL);

/** `a += b`; shape {count}. */
export const addInPlace = (): Shader<{ count: number }> => flat('add_inplace', ADD_INPLACE_WGSL);

/** SwiGLU (mode 0) or GELU-tanh (mode 1); shape {count}. */
export const activation = (): Shader<{ count: number }> => flat('activation', ACTIVATION_WGSL);

/** Strided copy (slices, kvWrite); shape {count} = na·nb·nt. */
export const stridedCopy = (): Shader<{ count: number }> => flat('strided_copy', STRIDED_COPY_WGSL);

/** q|k|v split: q out, k and v into the caches; shape {count} = m·(heads + 2·kvHeads)·hd. */
export const splitQkv = (): Shader<{ count: number }> => flat('split_qkv', SPLIT_QKV_WGSL);

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
