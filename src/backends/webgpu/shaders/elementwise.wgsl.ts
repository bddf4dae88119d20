/**
 * WGSL twins of cpu-ops.ts `addInPlace`, `swiglu` and `geluTanh`, one invocation per element (flat index over
 * x and y of the dispatch grid, see `spread` in pipelines.ts).
 */

/** `a += b` in place (the residual stream). */
export const ADD_INPLACE_WGSL = /* wgsl */ `
struct Uniforms {
  count: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.y * nwg.x * WORKGROUP + gid.x;
  if (i >= u.count) { return; }
  a[i] = a[i] + b[i];
}
`;

/**
 * mode 0, SwiGLU: `y = silu(g) ⊙ u`, silu(g) = g / (1 + e^−g).
 * mode 1, GELU tanh approximation (GPT-2's gelu_new): `y = ½g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`, the
 * second input unused.
 * Exponents are clamped to ±80 (e^80 is finite in f32, and past it the results are already exact to f32):
 * WGSL leaves infinities implementation-defined, and a built-in tanh computed as a ratio of exponentials gives
 * NaN for large |z|, so tanh(z) is written as 1 − 2/(e^{2z} + 1).
 */
export const ACTIVATION_WGSL = /* wgsl */ `
struct Uniforms {
  count: u32,
  mode: u32,
  _pad0: u32,
  _pad1: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.y * nwg.x * WORKGROUP + gid.x;
  if (i >= u.count) { return; }
  let v = g[i];
  if (u.mode == 0u) {
    y[i] = v / (1.0 + exp(min(-v, 80.0))) * up[i];
  } else {
    let z = 0.7978845608028654 * (v + 0.044715 * v * v * v);
    let t = 1.0 - 2.0 / (exp(clamp(2.0 * z, -80.0, 80.0)) + 1.0);
    y[i] = 0.5 * v * (1.0 + t);
  }
}
`;
