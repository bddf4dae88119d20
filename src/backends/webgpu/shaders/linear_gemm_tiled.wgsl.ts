/**
 * Register-tiled GEMM with the LoRA expand, DoRA row scale and bias in the epilogue:
 *
 *   y = row_scale ⊙ (x·Wᵀ + t·B) + bias        x [m,k] f32, W [n,k], t [m,r] f32, B [r,n], y [m,n] f32
 *
 * A workgroup computes a BM×BN tile of y (BN = 64) with (BN/4)·(BM/TM) = 256 invocations, each TM×4 outputs
 * held in registers (TM vec4 accumulators). Per BK-step the workgroup stages x[BM, BK] and W[BN, BK] in
 * workgroup memory, transposed (k-major, so the inner loop reads one vec4 of W and TM scalars of x per k and
 * does 4·TM FMAs); the next step's tiles are prefetched into registers while the current one is multiplied
 * (register double buffering: one barrier pair per step, global latency hidden behind the FMAs). Loads from
 * global are vec4 along k when k % 4 = 0 (f32: one 16-byte load; bf16: one vec2<u32> = 4 weights), scalar
 * with bounds otherwise. Rows past m / columns past n read the last valid row (never written); k past the end
 * reads zeros.
 *
 * LoRA: `t` is lora_shrink's output in its k-split layout [ks][m][r]; the epilogue stages 16 columns at a time of
 * the workgroup's BM rows of t (summing the ks partials once per workgroup, reusing the x tile's memory) and adds
 * t·B to the accumulators. r = 0 (adapter off) skips it entirely: off is bit-identical to the base kernel.
 *
 * Tiles (kernels.ts `gemmTileFor`): L = 128×64, TM 8, BK 16 (12 KiB); M = 64×64, TM 4, BK 16 (8 KiB);
 * S = 32×64, TM 2, BK 32 (12 KiB) — all within WebGPU's default 16 KiB of workgroup memory and 256 invocations.
 */
import type { StorageType } from '../pipelines.js';
import { enables, weightDecl } from './wgsl-types.js';

export interface GemmTile {
  readonly name: 'L' | 'M' | 'S';
  readonly bm: number;
  readonly tm: number;
  readonly bk: number;
}

export const GEMM_BN = 64;

export interface GemmVariant {
  tile: GemmTile;
  vec: boolean;
  w: StorageType;
  b: StorageType;
}

export function linearGemmTiledWgsl(v: GemmVariant): string {
  const { bm, tm, bk } = v.tile;
  const threads = (GEMM_BN / 4) * (bm / tm);
  const xv = (bm * bk) / 4 / threads;
  const wv = (GEMM_BN * bk) / 4 / threads;
  if (threads !== 256 || !Number.isInteger(xv) || !Number.isInteger(wv) || xv < 1 || wv < 1 || bk < 16) throw new Error(`bad GEMM tile ${JSON.stringify(v.tile)}`);
  const loadX = v.vec
    ? `if (gk < u.k) { v = x4[(gr * u.k + gk) / 4u]; }`
    : `for (var c = 0u; c < 4u; c++) { if (gk + c < u.k) { v[c] = x[gr * u.k + gk + c]; } }`;
  const loadW = v.vec
    ? `if (gk < u.k) { v = load_w4((gr * u.k + gk) / 4u); }`
    : `for (var c = 0u; c < 4u; c++) { if (gk + c < u.k) { v[c] = load_w(gr * u.k + gk + c); } }`;
  return /* wgsl */ `${enables([v.w, v.b])}
alias b_t = ${v.b === 'f16' ? 'f16' : 'f32'};

struct Uniforms {
  m: u32,
  n: u32,
  k: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  ks: u32,
  _pad0: u32,
}

const BM: u32 = ${bm}u;
const BN: u32 = ${GEMM_BN}u;
const BK: u32 = ${bk}u;
const TM: u32 = ${tm}u;
const TX: u32 = BN / 4u;
const THREADS: u32 = ${threads}u;
// vec4 loads per invocation per step: x tile, W tile.
const XV: u32 = ${xv}u;
const WV: u32 = ${wv}u;
// t columns staged per epilogue step (BM·RC ≤ BM·BK: fits in the x tile).
const RC: u32 = 16u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x${v.vec ? '4: array<vec4f>' : ': array<f32>'};
${weightDecl('w', 2, v.w, v.vec)}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> row_scale: array<f32>;
@group(0) @binding(5) var<storage, read> t: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<b_t>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

// k-major tiles: xs[kk·BM + row], ws[kk·BN/4 + col/4] (a vec4 of 4 consecutive columns).
var<workgroup> xs: array<f32, ${bm * bk}>;
var<workgroup> ws: array<vec4f, ${(GEMM_BN * bk) / 4}>;

fn fetch_x(e: u32, k0: u32, row_base: u32) -> vec4f {
  let gr = min(row_base + e / (BK / 4u), u.m - 1u);
  let gk = k0 + (e % (BK / 4u)) * 4u;
  var v = vec4f(0.0);
  ${loadX}
  return v;
}

fn fetch_w(e: u32, k0: u32, col_base: u32) -> vec4f {
  let gr = min(col_base + e / (BK / 4u), u.n - 1u);
  let gk = k0 + (e % (BK / 4u)) * 4u;
  var v = vec4f(0.0);
  ${loadW}
  return v;
}

@compute @workgroup_size(${GEMM_BN / 4}, ${bm / tm}, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid3: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let tx = lid3.x;
  let ty = lid3.y;
  let row_base = wg.y * BM;
  let col_base = wg.x * BN;

  var acc: array<vec4f, TM>;
  var xr: array<vec4f, XV>;
  var wr: array<vec4f, WV>;
  for (var q = 0u; q < XV; q++) { xr[q] = fetch_x(lid + q * THREADS, 0u, row_base); }
  for (var q = 0u; q < WV; q++) { wr[q] = fetch_w(lid + q * THREADS, 0u, col_base); }

  for (var k0 = 0u; k0 < u.k; k0 += BK) {
    // Registers → workgroup memory, transposed to k-major.
    for (var q = 0u; q < XV; q++) {
      let e = lid + q * THREADS;
      let row = e / (BK / 4u);
      let kq = (e % (BK / 4u)) * 4u;
      for (var c = 0u; c < 4u; c++) { xs[(kq + c) * BM + row] = xr[q][c]; }
    }
    for (var q = 0u; q < WV; q++) {
      let e = lid + q * THREADS;
      let col = e / (BK / 4u);
      let kq = (e % (BK / 4u)) * 4u;
      for (var c = 0u; c < 4u; c++) { ws[(kq + c) * (BN / 4u) + col / 4u][col % 4u] = wr[q][c]; }
    }
    workgroupBarrier();
    // Prefetch the next step while this one is multiplied.
    let k1 = k0 + BK;
    if (k1 < u.k) {
      for (var q = 0u; q < XV; q++) { xr[q] = fetch_x(lid + q * THREADS, k1, row_base); }
      for (var q = 0u; q < WV; q++) { wr[q] = fetch_w(lid + q * THREADS, k1, col_base); }
    }
    for (var kk = 0u; kk < BK; kk++) {
      let bv = ws[kk * (BN / 4u) + tx];
      for (var i = 0u; i < TM; i++) { acc[i] = fma(vec4f(xs[kk * BM + ty * TM + i]), bv, acc[i]); }
    }
    workgroupBarrier();
  }

  let col0 = col_base + tx * 4u;
  // LoRA expand: + t·B, RC columns of t at a time staged in xs (r = 0: skipped).
  for (var j0 = 0u; j0 < u.r; j0 += RC) {
    workgroupBarrier();
    for (var e = lid; e < BM * RC; e += THREADS) {
      let gr = row_base + e / RC;
      let j = j0 + e % RC;
      var s = 0.0;
      if (gr < u.m && j < u.r) {
        for (var q = 0u; q < u.ks; q++) { s += t[(q * u.m + gr) * u.r + j]; }
      }
      xs[e] = s;
    }
    workgroupBarrier();
    let jn = min(RC, u.r - j0);
    for (var jj = 0u; jj < jn; jj++) {
      var bv = vec4f(0.0);
      for (var c = 0u; c < 4u; c++) { bv[c] = f32(b[(j0 + jj) * u.n + min(col0 + c, u.n - 1u)]); }
      for (var i = 0u; i < TM; i++) { acc[i] = fma(vec4f(xs[(ty * TM + i) * RC + jj]), bv, acc[i]); }
    }
  }

  for (var i = 0u; i < TM; i++) {
    let row = row_base + ty * TM + i;
    if (row < u.m) {
      for (var c = 0u; c < 4u; c++) {
        let col = col0 + c;
        if (col < u.n) {
          var v = acc[i][c];
          if (u.has_row_scale != 0u) { v *= row_scale[col]; }
          if (u.has_bias != 0u) { v += bias[col]; }
          y[row * u.n + col] = v;
        }
      }
    }
  }
}
`;
}
