/** The tree sum over a workgroup both norm kernels use (same order, so the same bits for the same row). */
const REDUCE_SUM = /* wgsl */ `
var<workgroup> red: array<f32, WORKGROUP>;

// Sum of v over the workgroup; every invocation gets it.
fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WORKGROUP / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

/**
 * WGSL twin of cpu-ops.ts `rmsNorm` / `layerNorm`, one workgroup per row (x [m,d] → y [m,d]):
 *
 *   mode 0 (RMSNorm):   y = x / √(Σx²/d + eps) ⊙ w
 *   mode 1 (LayerNorm): μ = Σx/d;  y = (x − μ) / √(Σ(x − μ)²/d + eps) ⊙ w + b      (biased variance, two passes)
 *
 * The invocations stride over the row (coalesced), then tree-reduce in workgroup memory: the summation order
 * depends only on d, never on m, so a row's output is the same whatever batch it rides in. f32 accumulation.
 */
export const NORM_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  d: u32,
  mode: u32,
  eps: f32,
}

// Invocations per row; a power of two (tree reduction).
override WORKGROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

${REDUCE_SUM}
@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= u.m) { return; }
  let base = row * u.d;
  var mean = 0.0;
  if (u.mode == 1u) {
    var s = 0.0;
    for (var j = lid; j < u.d; j += WORKGROUP) { s += x[base + j]; }
    mean = reduce_sum(lid, s) / f32(u.d);
  }
  var ss = 0.0;
  for (var j = lid; j < u.d; j += WORKGROUP) {
    let c = x[base + j] - mean;
    ss += c * c;
  }
  let inv = 1.0 / sqrt(reduce_sum(lid, ss) / f32(u.d) + u.eps);
  for (var j = lid; j < u.d; j += WORKGROUP) {
    var v = (x[base + j] - mean) * inv * w[j];
    if (u.mode == 1u) { v += b[j]; }
    y[base + j] = v;
  }
}
`;

/**
 * The residual step and the norm after it, one workgroup per row (x, o [m,d] → x updated in place, y [m,d]):
 *
 *   x ← x + o;   mode 0: y = x / √(Σx²/d + eps) ⊙ w;   mode 1: y = (x − μ) / √(Σ(x − μ)²/d + eps) ⊙ w + b
 *
 * Each invocation writes back the elements of x it summed, so the norm reads only what it wrote itself. The
 * reductions are the norm kernel's (same strides, same tree), so a row's output never depends on m.
 */
export const ADD_NORM_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  d: u32,
  mode: u32,
  eps: f32,
}

override WORKGROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

${REDUCE_SUM}
@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= u.m) { return; }
  let base = row * u.d;
  var s = 0.0;
  for (var j = lid; j < u.d; j += WORKGROUP) {
    let v = x[base + j] + o[base + j];
    x[base + j] = v;
    if (u.mode == 1u) { s += v; }
  }
  var mean = 0.0;
  if (u.mode == 1u) { mean = reduce_sum(lid, s) / f32(u.d); }
  var ss = 0.0;
  for (var j = lid; j < u.d; j += WORKGROUP) {
    let c = x[base + j] - mean;
    ss += c * c;
  }
  let inv = 1.0 / sqrt(reduce_sum(lid, ss) / f32(u.d) + u.eps);
  for (var j = lid; j < u.d; j += WORKGROUP) {
    var v = (x[base + j] - mean) * inv * w[j];
    if (u.mode == 1u) { v += b[j]; }
    y[base + j] = v;
  }
}
`;
