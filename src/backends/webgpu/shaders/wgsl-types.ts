/**
 * WGSL snippets shared by the generated kernels (linear_gemm_tiled, linear_gemv): the `enable` lines and the
 * weight loaders for each storage type. A bf16 weight is two per u32, little-endian (element 2i in the low
 * half); widening a bf16 is a shift (it is the upper 16 bits of an f32), so it is exact.
 */
import type { StorageType } from '../pipelines.js';

/** `enable` directives for a kernel's storage types and features (each extension named once). */
export function enables(types: readonly StorageType[], subgroups = false): string {
  const out: string[] = [];
  if (types.includes('f16')) out.push('enable f16;');
  if (subgroups) out.push('enable subgroups;');
  return out.join('\n');
}

/**
 * The declaration of a read-only weight buffer `name` at `binding`, with a scalar loader `load_<name>(i) -> f32`
 * and, when `vec`, a four-wide loader `load_<name>4(q) -> vec4f` reading elements 4q … 4q+3 (the caller
 * guarantees 4-alignment: k % 4 = 0).
 */
export function weightDecl(name: string, binding: number, type: StorageType, vec: boolean): string {
  if (type === 'bf16') {
    return [
      `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${vec ? 'vec2<u32>' : 'u32'}>;`,
      vec
        ? `fn bf2(v: u32) -> vec2f { return vec2f(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u)); }
fn load_${name}4(q: u32) -> vec4f { let v = ${name}[q]; return vec4f(bf2(v.x), bf2(v.y)); }`
        : `fn load_${name}(i: u32) -> f32 { let v = ${name}[i >> 1u]; return bitcast<f32>(select(v << 16u, v & 0xffff0000u, (i & 1u) == 1u)); }`,
    ].join('\n');
  }
  const el = type === 'f16' ? 'f16' : 'f32';
  if (vec) {
    return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<${el}>>;
fn load_${name}4(q: u32) -> vec4f { return vec4f(${name}[q]); }`;
  }
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${el}>;
fn load_${name}(i: u32) -> f32 { return f32(${name}[i]); }`;
}
