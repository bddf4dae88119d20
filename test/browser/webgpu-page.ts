// Entry of test/browser/webgpu.html (bundled by webgpu.test.ts with esbuild into test/artifacts/): runs every
// golden case through the WebGPU backend on navigator.gpu, both kernel routes, and the toggle checks.
import { createWebGPUBackend } from '../../src/backends/webgpu/index.js';
import { Tensor } from '../../src/tensor.js';
import { compare, GOLDEN_CASES, loadGolden, runVariant } from '../gpu/golden.js';

export interface PageResult {
  adapter?: string;
  checked?: number;
  failures?: string[];
  offBitIdentical?: boolean;
  flipsAllocated?: number;
  flipsCompiled?: number;
  ms?: number;
  error?: string;
}

export async function run(): Promise<PageResult> {
  const t0 = performance.now();
  const read = async (p: string) => new Uint8Array(await (await fetch(p)).arrayBuffer());
  const bes = [await createWebGPUBackend(), await createWebGPUBackend({ gemvMaxM: 0 })];
  const failures: string[] = [];
  let checked = 0;
  for (const name of GOLDEN_CASES) {
    for (const c of await loadGolden(name, read, '/test/fixtures/golden')) {
      for (const v of c.variants) {
        for (const be of bes) {
          const y = runVariant(be, c, v);
          const bad = compare(await y.read(), v.expect, c.tol(v.expect), y.shape);
          if (bad) failures.push(`${be.gemvMaxM ? 'gemv' : 'gemm'} ${c.title} › ${v.name}: ${bad}`);
          y.dispose();
          checked++;
        }
      }
    }
  }
  // Toggle: off bit-identical after flips; 1,000 flips with a live scale allocate and compile nothing.
  const be = bes[0];
  const f = (shape: number[], s: number) => Tensor.f32(Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(s * 100 + i)), shape);
  const x = f([1, 37], 1), W = be.upload(f([29, 37], 2));
  const d = { a: be.upload(f([37, 8], 3)), b: be.upload(f([8, 29], 4)), scale: 1 };
  const base = new Uint32Array((await be.linear(x, W, undefined, []).read()).buffer);
  for (let i = 0; i < 4; i++) be.linear(x, W, undefined, i % 2 ? [] : [d]).dispose();
  const bytes = be.pool.buffersCreated, compiled = be.pipelines.compiled;
  for (let i = 0; i < 1000; i++) be.linear(x, W, undefined, i % 2 ? [] : [{ ...d, scale: i / 100 }]).dispose();
  const off = new Uint32Array((await be.linear(x, W, undefined, []).read()).buffer);
  const result: PageResult = {
    adapter: String(be),
    checked,
    failures,
    offBitIdentical: off.length === base.length && off.every((b, i) => b === base[i]),
    flipsAllocated: be.pool.buffersCreated - bytes,
    flipsCompiled: be.pipelines.compiled - compiled,
    ms: Math.round(performance.now() - t0),
  };
  bes.forEach((b) => b.dispose());
  return result;
}
