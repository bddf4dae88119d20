/**
 * WGSL twin of cpp/linear.h `f32_epilogue_rows`: an adapter pass on rows of a y that already holds the base
 * product (and any earlier passes): the SGMV "expand" of a route's group of rows, and each later pass of a row
 * stacking a DoRA adapter with others (each DoRA pass scales everything before it):
 *
 *   y[rows[i]] = row_scale ⊙ (y[rows[i]] + t[i]·B) + bias     i < m;  y [·,n] f32 in place, t [m,r] f32, B [r,n]
 *
 * `rows[rows_off + i]` is the group's row i's row of y (`has_rows` = 0: row i itself).
 * `t = Σᵢ sᵢ·x·Aᵢ` from `lora_shrink` (a lora bias is one more column of t holding sᵢ and one more row of B), the
 * same operations in the same order as the epilogue of `linear_gemm` / `linear_gemv`. One output per invocation.
 */
export const LORA_EPILOGUE_WGSL = /* wgsl */ `
alias b_t = f32;

struct Uniforms {
  m: u32,
  n: u32,
  r: u32,
  has_bias: u32,
  has_row_scale: u32,
  has_rows: u32,
  rows_off: u32,
  _pad0: u32,
}

override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read> row_scale: array<f32>;
@group(0) @binding(3) var<storage, read> t: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<b_t>;
fn load_b(i: u32) -> f32 { return f32(b[i]); }
@group(0) @binding(5) var<storage, read> rows: array<u32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.y * nwg.x * WORKGROUP + gid.x;
  if (i >= u.m * u.n) { return; }
  let row = i / u.n;
  let col = i % u.n;
  let yi = select(row, rows[u.rows_off + row], u.has_rows != 0u) * u.n + col;
  var acc = y[yi];
  for (var j = 0u; j < u.r; j++) {
    acc += t[row * u.r + j] * load_b(j * u.n + col);
  }
  if (u.has_row_scale != 0u) { acc *= row_scale[col]; }
  if (u.has_bias != 0u) { acc += bias[col]; }
  y[yi] = acc;
}
`;
