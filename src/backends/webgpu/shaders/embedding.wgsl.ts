/**
 * WGSL twin of cpp/linear.h `f32_embedding_gather` + the embedding LoRA delta:
 *
 *   y[i,c] = base[i,c] + s·Σ_j A_e[ids[i], j]·B_e[j, c]        ids [m] i32, E [vocab,dim], A_e [vocab,r], B_e [r,dim]
 *
 * base = E[ids[i], c] (accumulate = 0) or the y already written (accumulate = 1, for a second stacked adapter).
 * r = 0 is "adapter off": a plain gather. Ids outside [0, vocab) give a zero row. One invocation per output.
 */
export const EMBEDDING_WGSL = /* wgsl */ `
alias e_t = f32;
alias a_t = f32;
alias b_t = f32;

struct Uniforms {
  m: u32,
  dim: u32,
  vocab: u32,
  r: u32,
  accumulate: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
}

// Output features per workgroup (one per invocation); workgroup_id.y is the token.
override WORKGROUP: u32 = 64u;

@group(0) @binding(0) var<uniform> u: Uniforms;
@group(0) @binding(1) var<storage, read> ids: array<i32>;
@group(0) @binding(2) var<storage, read> table: array<e_t>;
// E[i] as f32 (bf16 storage: two per u32, see specialize in pipelines.ts).
fn load_e(i: u32) -> f32 { return f32(table[i]); }
@group(0) @binding(3) var<storage, read> a: array<a_t>;
@group(0) @binding(4) var<storage, read> b: array<b_t>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wg.x * WORKGROUP + lid;
  let i = wg.y;
  if (c >= u.dim || i >= u.m) { return; }
  let id = ids[i];
  let ok = id >= 0 && u32(id) < u.vocab;
  let row = u32(max(id, 0));
  var v = 0.0;
  if (u.accumulate != 0u) {
    v = y[i * u.dim + c];
  } else if (ok) {
    v = load_e(row * u.dim + c);
  }
  if (ok && u.r > 0u) {
    var d = 0.0;
    for (var j = 0u; j < u.r; j++) { d += f32(a[row * u.r + j]) * f32(b[j * u.dim + c]); }
    v += u.scale * d;
  }
  y[i * u.dim + c] = v;
}
`;
