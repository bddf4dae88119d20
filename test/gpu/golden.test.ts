// Every golden fixture, layer by layer, through the WebGPU Backend: the output equals the float64 expectation
// (tolerance of the fixtures: max|y − y_exp| ≤ 1e-4·max(1, max|y_exp|)) and the js/wasm backends' output
// (max|y − y_cpu| ≤ 1e-4·max(1, max|y_cpu|)), on both kernel routes (GEMV for m ≤ 4, tiled GEMM forced).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.js';
import type { WebGPUBackend } from '../../src/backends/webgpu/index.js';
import { gpuBackend } from './env.js';
import { compare, GOLDEN_CASES, goldenTol, type LayerCase, loadGolden, runVariant } from './golden.js';
import { cpuBackends } from './reference.js';

const ROOT = resolve(import.meta.dirname, '../fixtures/golden');
const read = async (p: string) => new Uint8Array(await readFile(p));

const cases: LayerCase[] = [];
for (const name of GOLDEN_CASES) cases.push(...(await loadGolden(name, read, ROOT)));

let routes: { route: string; be: WebGPUBackend }[] = [];
let cpus: Backend[] = [];
beforeAll(async () => {
  routes = [
    { route: 'gemv', be: await gpuBackend() },
    { route: 'gemm', be: await gpuBackend({ gemvMaxM: 0 }) },
  ];
  cpus = await cpuBackends();
  console.info(`golden.test: also comparing with [${cpus.map((b) => b.name).join(', ') || 'none built yet'}]`);
});
afterAll(() => routes.forEach((r) => r.be.dispose()));

describe.each(['gemv', 'gemm'])('webgpu %s route', (route) => {
  for (const c of cases) {
    for (const v of c.variants) {
      it(`${c.title} › ${v.name} (${c.op}, m=${c.x.shape[0]}, w=[${c.w.shape}], deltas=${v.deltas.length}${v.rowScale ? ', dora' : ''})`, async () => {
        const be = routes.find((r) => r.route === route)!.be;
        const y = runVariant(be, c, v);
        expect(y.device).toBe('gpu');
        const got = await y.read();
        const bad = compare(got, v.expect, c.tol(v.expect), y.shape);
        expect(bad, `vs float64 fixture: ${bad}`).toBeUndefined();
        for (const cpu of cpus) {
          const ref = Float64Array.from(await runVariant(cpu, c, v).read());
          const badCpu = compare(got, ref, goldenTol(ref), y.shape);
          expect(badCpu, `vs ${cpu.name}: ${badCpu}`).toBeUndefined();
        }
        y.dispose();
      });
    }
  }
});
