/**
 * WGSL twin of cpp/linear.h `f32_gemv` + the cpp/lora.h expand, for decode and small-batch shapes (m ≤ 16):
 *
 *   y = row_scale ⊙ (x·Wᵀ + t·B) + bias        x [m,k] f32, W [n,k], t [m,r] (from lora_shrink), B [r,n], y [m,n]
 *
 * Cooperative GEMV: a workgroup of WORKGROUP invocations computes ROWS output columns (ROWS rows of W) for a block
 * of MAX_M rows of x (dispatch z = the row block). The invocations split k with a stride of WORKGROUP (×4 with
 * vec4 loads) — at every step consecutive invocations read consecutive addresses of each W row (coalesced).
 * Each invocation keeps ROWS·MAX_M partial sums in registers, then the workgroup reduces them:
 *   - with `subgroups`: subgroupAdd in registers, one value per subgroup to workgroup memory, summed by the
 *     epilogue (WORKGROUP / subgroup_size values, 8 on a 32-wide GPU);
 *   - without: fold into workgroup memory and a tree (log₂ WORKGROUP barriers).
 * Workgroups walk the ⌈n/ROWS⌉ row groups with a grid stride.
 *
 * LoRA (lora_mode): 0 off, the base GEMV only (the epilogue adds nothing: off is bit-identical to the base).
 * 1: t is staged — each workgroup first sums the `ks` k-split partials of its rows of t (lora_shrink's layout
 * [ks][m][r]) into workgroup memory (r ≤ MAX_R), then the epilogue adds t·B. 2: r > MAX_R, ks = 1, t read
 * directly. f32 accumulation throughout, whatever the storage type of W (f32, f16, bf16 pairs) and B.
 */
import type { StorageType } from '../pipelines.js';
import { enables, weightDecl } from './wgsl-types.js';

export interface GemvVariant {
  /** Rows of x per dispatch z-slice (1, 2, 4 or 8). */
  maxM: number;
  /** subgroupAdd reduction (the device has `subgroups`). */
  subgroups: boolean;
  /** vec4 loads of x and W (k % 4 = 0). */
  vec: boolean;
  w: StorageType;
  b: StorageType;
}

/** Invocations per workgroup: 256, or 128 for the tree reduction at MAX_M = 8 (its scratch must fit 16 KiB). */
export function gemvWorkgroup(v: Pick<GemvVariant, 'maxM' | 'subgroups'>): number {
  return v.maxM >= 8 && !v.subgroups ? 128 : 256;
}

export function linearGemvWgsl(v: GemvVariant): string {
  const WG = gemvWorkgroup(v);
  const P = 4 * v.maxM;
  // Reduction scratch: per subgroup (≥ 4 lanes) one value per partial sum, or the upper half of the tree.
  const redLen = v.subgroups ? P * (WG / 4) : P * (WG / 2);
  const reduce = v.subgroups
    ? /* wgsl */ `
    let nsg = WORKGROUP / sg_size;
    for (var p = 0u; p < P; p++) {
      let s = subgroupAdd(acc[p]);
      if (sg_lane == 0u) { red[p * (WORKGROUP / 4u) + lid / sg_size] = s; }
    }
    workgroupBarrier();`
    : /* wgsl */ `
    let half = WORKGROUP / 2u;
    if (lid >= half) {
      for (var p = 0u; p < P; p++) { red[p * half + lid - half] = acc[p]; }
    }
    workgroupBarrier();
    if (lid < half) {
      for (var p = 0u; p < P; p++) { red[p * half + lid] += acc[p]; }
    }
    workgroupBarrier();
    for (var s = half / 2u; s > 0u; s >>= 1u) {
      if (lid < s) {
        for (var p = 0u; p < P; p++) { red[p * half + lid] += red[p * half + lid + s]; }
      }
      workgroupBarrier();
    }`;
  const reduced = v.subgroups
    ? `var v = 0.0;
        for (var q = 0u; q < nsg; q++) { v += red[p * (WORKGROUP / 4u) + q]; }`
    : `var v = red[p * half];`;
  const kLoop = v.vec
    ? /* wgsl */ `
    let k4 = u.k / 4u;
    for (var kq = lid; kq < k4; kq += WORKGROUP) {
      var xv: array<vec4f, MAX_M>;
      for (var i = 0u; i < MAX_M; i++) {
        if (mb + i < u.m) { xv[i] = x4[(mb + i) * k4 + kq]; }
      }
      for (var rr = 0u; rr < ROWS; rr++) {
        let wv = load_w4(min(row0 + rr, u.n - 1u) * k4 + kq);
        for (var i = 0u; i < MAX_M; i++) { acc[rr * MAX_M + i] += dot(xv[i], wv); }
      }
    }`
    : /* wgsl */ `
    for (var kk = lid; kk < u.k; kk += WORKGROUP) {
      var xv: array<f32, MAX_M>;
      for (var i = 0u; i < MAX_M; i++) {
        if (mb + i < u.m) { xv[i] = x[(mb + i) * u.k + kk]; }
      }
      for (var rr = 0u; rr < ROWS; rr++) {
        let wv = load_w(min(row0 + rr, u.n - 1u) * u.k + kk);
        for (var i = 0u; i < MAX_M; i++) { acc[rr * MAX_M + i] += xv[i] * wv; }
      }
    }`;
  return /* wgsl */ `${enables([v.w, v.b], v.subgroups)}
alias b_t = ${v.b === 'f16' ? 'f16' : 'f32'};

struct Uniforms {
  m: u32,
  n: u32,
  k: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  lora_mode: u32,
  ks: u32,
}

// Rows of x per z-slice of the dispatch.
const MAX_M: u32 = ${v.maxM}u;
// Largest t width (rank + lora-bias columns) the staged mode keeps in workgroup memory.
const MAX_R: u32 = 129u;
// Output columns (rows of W) per workgroup step; kernels.ts GEMV_ROWS mirrors it. Four independent row loads per
// k step keep several memory requests in flight per invocation; each x value is reused ROWS times from registers.
const ROWS: u32 = 4u;
const P: u32 = ROWS * MAX_M;
// A power of two (tree reduction), a multiple of every SIMD width (8–64).
const WORKGROUP: u32 = ${WG}u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x${v.vec ? '4: array<vec4f>' : ': array<f32>'};
${weightDecl('w', 2, v.w, v.vec)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> t_in: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<b_t>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, ${redLen}>;
var<workgroup> t_shared: array<f32, MAX_M * MAX_R>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32${v.subgroups ? ',\n        @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32' : ''}) {
  let mb = wg.z * MAX_M;  // first row of x of this block
  let rows = min(MAX_M, u.m - mb);

  // Staged LoRA: t[i, j] = Σ over the ks k-split partials (lora_shrink wrote [ks][m][r]).
  if (u.lora_mode == 1u) {
    for (var p = lid; p < rows * u.r; p += WORKGROUP) {
      let i = p / u.r;
      let j = p % u.r;
      var s = 0.0;
      for (var q = 0u; q < u.ks; q++) { s += t_in[(q * u.m + mb + i) * u.r + j]; }
      t_shared[p] = s;
    }
  }
  workgroupBarrier();

  let groups = (u.n + ROWS - 1u) / ROWS;
  let stride = nwg.x * nwg.y;
  for (var g = wg.y * 65535u + wg.x; g < groups; g += stride) {
    let row0 = g * ROWS;
    // Rows past n (tail group) re-read row n-1 and are never written, keeping the loop branch-free.
    var acc: array<f32, P>;
${kLoop}
${reduce}

    // Epilogue on the first ROWS·rows invocations (consecutive invocations → consecutive columns).
    for (var p0 = lid; p0 < ROWS * rows; p0 += WORKGROUP) {
      let i = p0 / ROWS;
      let rr = p0 % ROWS;
      let col = row0 + rr;
      let p = rr * MAX_M + i;
      if (col < u.n) {
        ${reduced}
        if (u.lora_mode == 1u) {
          for (var j = 0u; j < u.r; j++) { v += t_shared[i * u.r + j] * f32(b[j * u.n + col]); }
        } else if (u.lora_mode == 2u) {
          for (var j = 0u; j < u.r; j++) { v += t_in[(mb + i) * u.r + j] * f32(b[j * u.n + col]); }
        }
        if (u.has_row_scale != 0u) { v *= row_scale[col]; }
        if (u.has_bias != 0u) { v += bias[col]; }
        y[(mb + i) * u.n + col] = v;
      }
    }
    workgroupBarrier();  // red is reused by the next row group
  }
}
`;
}
