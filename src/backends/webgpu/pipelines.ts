/// <reference types="@webgpu/types" />
/**
 * Shaders as data and the pipeline cache. A shader is `{name, key, wgsl, constants, dispatch(shape)}`;
 * its pipeline is compiled once and cached under `name[key]`, where the key holds only what changes the
 * source (storage types), never shapes: sizes, scales and the adapter toggle travel in uniforms.
 * Each pipeline gets an explicit bind-group layout read off its WGSL (binding 0 the uniform block, with a
 * dynamic offset into the backend's uniform ring; then storage buffers, read-only or read_write), so one
 * bind group serves every dispatch that binds the same buffers.
 */
import { BackendError } from '../../errors.js';

/**
 * Storage element type of a bound buffer: f16 only with `shader-f16`; bf16 (a weight kept as bf16, two per u32,
 * little-endian: element 2i in the low half) only where the shader reads it through a `load_*` function.
 */
export type StorageType = 'f32' | 'f16' | 'bf16';

export interface Shader<S> {
  /** Kernel name, also the label of its module, pipeline, bind groups and uniform buffers. */
  readonly name: string;
  /** What changes the source, e.g. `w=f16,b=f32`. */
  readonly key: string;
  readonly wgsl: string;
  /** Values for the shader's `override` constants (tile sizes). */
  readonly constants: Record<string, number>;
  /** Workgroup counts for a shape. */
  dispatch(shape: S): [number, number, number];
}

/** Most workgroups per dispatch dimension (WebGPU's default maxComputeWorkgroupsPerDimension). */
export const MAX_WORKGROUPS_PER_DIM = 65535;

/** Spreads `groups` workgroups over x and y (kernels linearise `wg.y · 65535 + wg.x`). */
export function spread(groups: number): [number, number, number] {
  const g = Math.max(1, groups);
  return [Math.min(g, MAX_WORKGROUPS_PER_DIM), Math.ceil(g / MAX_WORKGROUPS_PER_DIM), 1];
}

/**
 * Specialises a WGSL source's storage types: each `alias <name> = f32;` named in `types` becomes f16 (and
 * `enable f16;` is prepended), or, for bf16, u32 with the shader's loader `fn load_<x>(i: u32) -> f32 { return
 * f32(<buf>[i]); }` (x = the alias without `_t`) rewritten to unpack the upper or lower half of `<buf>[i / 2]`
 * (a bf16 is the upper 16 bits of an f32: widening is a shift, exact). The WGSL files stay plain WGSL with f32
 * defaults.
 */
export function specialize(wgsl: string, types: Record<string, StorageType>): string {
  let src = wgsl;
  let f16 = false;
  for (const [alias, type] of Object.entries(types)) {
    const line = `alias ${alias} = f32;`;
    if (!src.includes(line)) throw new Error(`shader has no "${line}"`);
    if (type === 'f16') {
      src = src.replace(line, `alias ${alias} = f16;`);
      f16 = true;
    } else if (type === 'bf16') {
      const name = alias.replace(/_t$/, '');
      const loader = new RegExp(`fn load_${name}\\(i: u32\\) -> f32 \\{ return f32\\((\\w+)\\[i\\]\\); \\}`);
      const found = loader.exec(src);
      if (!found) throw new Error(`shader has no loader "fn load_${name}(i: u32) -> f32 { return f32(<buffer>[i]); }" for bf16`);
      const buf = found[1];
      src = src
        .replace(line, `alias ${alias} = u32;`)
        .replace(
          found[0],
          `fn load_${name}(i: u32) -> f32 { let v = ${buf}[i >> 1u]; return bitcast<f32>(select(v << 16u, v & 0xffff0000u, (i & 1u) == 1u)); }`,
        );
    }
  }
  return f16 ? `enable f16;\n${src}` : src;
}

/** The key for a set of storage types: `w=f32,b=f16`. */
export function typesKey(types: Record<string, StorageType>): string {
  return Object.entries(types)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** GPUShaderStage.COMPUTE (spelled out so this module loads where the global is missing). */
const COMPUTE_STAGE = 0x4;

/** A compiled shader: its pipeline, its bind-group layout and its cache id (`name[key]`). */
export interface Compiled {
  readonly id: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/**
 * The group-0 bindings a WGSL source declares, in binding order: `uniform` (binding 0, the uniform block),
 * `read-only-storage` or `storage` (read_write).
 */
export function bindingsOf(wgsl: string): GPUBufferBindingType[] {
  const out: GPUBufferBindingType[] = [];
  for (const [, n, kind] of wgsl.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var<([^>]+)>/g)) {
    const k = kind.replace(/\s+/g, '');
    out[Number(n)] = k === 'uniform' ? 'uniform' : k === 'storage,read' ? 'read-only-storage' : 'storage';
  }
  if (out[0] !== 'uniform' || out.some((t) => t === undefined)) throw new Error('shader bindings must be 0 = uniform, then 1… without gaps');
  return out;
}

export class PipelineCache {
  private readonly pipelines = new Map<string, Compiled>();
  /** How many pipelines were compiled (a toggle or scale change must not move it). */
  compiled = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly onError: (e: BackendError) => void,
  ) {}

  get<S>(shader: Shader<S>): Compiled {
    const id = `${shader.name}[${shader.key}]`;
    let hit = this.pipelines.get(id);
    if (hit) return hit;
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ label: id, code: shader.wgsl });
    const layout = this.device.createBindGroupLayout({
      label: id,
      entries: bindingsOf(shader.wgsl).map((type, binding) => ({
        binding,
        visibility: COMPUTE_STAGE,
        buffer: { type, hasDynamicOffset: type === 'uniform' },
      })),
    });
    const pipeline = this.device.createComputePipeline({
      label: id,
      layout: this.device.createPipelineLayout({ label: id, bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main', constants: shader.constants },
    });
    void this.device.popErrorScope().then(
      (err) => {
        if (err) this.onError(new BackendError('shader_failed', 'WGSL pipeline failed to compile', { where: id, detail: err.message }));
      },
      () => undefined,
    );
    this.compiled++;
    hit = { id, pipeline, layout };
    this.pipelines.set(id, hit);
    return hit;
  }

  get size(): number {
    return this.pipelines.size;
  }

  clear(): void {
    this.pipelines.clear();
  }
}
