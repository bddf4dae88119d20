/**
 * Batched adapters for routed rows (SGMV, as Punica / S-LoRA run many LoRA adapters in one batch): after the base
 * product y = x·Wᵀ (one dispatch for the whole batch), two dispatches apply every row's own adapters, however many
 * distinct adapters the batch holds. The adapters' A's and B's (+ lora-bias rows) are stacked in two f32 banks;
 * small tables say which rows use which parts of them.
 *
 * sgmv_shrink, one workgroup per (row, adapter) pair p:
 *   t[pair.t + j] = pair.scale·Σ_k x[pair.row, k]·A_bank[pair.a + k·r + j]   (j < r)
 *   t[pair.t + r] = pair.scale                                              (pair.bias = 1: the lora-bias column)
 * sgmv_expand, one invocation per output (i, j) of the table's rows, each row's adapters in route order:
 *   y[row.y, j] = row_scale[j]·(y[row.y, j] + Σ_terms Σ_q t[row.t + c]·B_bank[term.b + q·n + j] (+ the bias row at
 *   term.b + r·n)) + bias[j]
 * the operations and order of the fused epilogue of `linear_gemm` / `linear_gemv` (a base row: + bias only). The
 * table names the rows of y a call touches: all of them for a batch, one group's for a later pass of a row that
 * stacks a DoRA adapter (its gain as row_scale).
 */
export const SGMV_SHRINK_WGSL = /* wgsl */ `
struct Uniforms {
  pairs: u32,
  k: u32,
  pair_off: u32,
  _pad0: u32,
}

// Pair p at tab[pair_off + 8p]: [row of x, a offset, r, t offset, scale (f32 bits), lora bias (0/1), 0, 0].
override WORKGROUP: u32 = 256u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> tab: array<u32>;
@group(0) @binding(4) var<storage, read_write> t: array<f32>;

var<workgroup> red: array<f32, WORKGROUP>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let p = wg.y * 65535u + wg.x;
  if (p >= u.pairs) { return; }
  let e = u.pair_off + 8u * p;
  let row = tab[e];
  let ao = tab[e + 1u];
  let r = tab[e + 2u];
  let to = tab[e + 3u];
  let scale = bitcast<f32>(tab[e + 4u]);
  let cols = max(1u, min(r, WORKGROUP));
  let slices = WORKGROUP / cols;
  let jl = lid % cols;
  let sl = lid / cols;
  for (var j0 = 0u; j0 < r; j0 += cols) {
    let j = j0 + jl;
    var acc = 0.0;
    if (sl < slices && j < r) {
      for (var kk = sl; kk < u.k; kk += slices) { acc += x[row * u.k + kk] * a[ao + kk * r + j]; }
    }
    red[lid] = acc;
    workgroupBarrier();
    if (lid < cols && j < r) {
      var sum = 0.0;
      for (var q = 0u; q < slices; q++) { sum += red[q * cols + lid]; }
      t[to + j] = scale * sum;
    }
    workgroupBarrier();
  }
  if (tab[e + 5u] != 0u && lid == 0u) { t[to + r] = scale; }
}
`;

export const SGMV_EXPAND_WGSL = /* wgsl */ `
struct Uniforms {
  m: u32,
  n: u32,
  has_bias: u32,
  term_off: u32,
  has_row_scale: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

// Table row i at tab[4i]: [t offset, first term, terms, row of y]. Term e at tab[term_off + 4e]: [B offset, r, lora
// bias, 0].
override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read> row_scale: array<f32>;
@group(0) @binding(3) var<storage, read> t: array<f32>;
@group(0) @binding(4) var<storage, read> b: array<f32>;
@group(0) @binding(5) var<storage, read> tab: array<u32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.y * nwg.x * WORKGROUP + gid.x;
  if (i >= u.m * u.n) { return; }
  let row = i / u.n;
  let col = i % u.n;
  var c = tab[4u * row];
  let first = tab[4u * row + 1u];
  let count = tab[4u * row + 2u];
  let yi = tab[4u * row + 3u] * u.n + col;
  var acc = y[yi];
  for (var e = first; e < first + count; e++) {
    let te = u.term_off + 4u * e;
    let bo = tab[te];
    let r = tab[te + 1u] + tab[te + 2u];  // the lora-bias row follows B
    for (var q = 0u; q < r; q++) {
      acc += t[c] * b[bo + q * u.n + col];
      c++;
    }
  }
  if (u.has_row_scale != 0u) { acc *= row_scale[col]; }
  if (u.has_bias != 0u) { acc += bias[col]; }
  y[yi] = acc;
}
`;
