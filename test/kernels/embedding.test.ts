import { describe, expect, it } from 'vitest';
import { JsBackend, refEmbedding } from '../../src/backends/js.js';
import { WasmBackend } from '../../src/backends/wasm.js';
import { Tensor } from '../../src/tensor.js';
import { EPS32, expectClose, randomF32, rng } from './helpers.js';

/**
 * embedding: y = E[ids] + Σ sᵢ·A_e[ids]·B_e against the float64 reference.
 * Tolerance: the gather is exact; each delta adds an r-term f32 dot product: (Σr + 4)·2⁻²³·ref_abs.
 */
for (const kernels of ['simd128', 'scalar', 'js'] as const) {
  describe(`embedding (${kernels})`, () => {
    for (const [m, vocab, dim, ranks] of [
      [1, 10, 7, []],
      [5, 33, 130, [8]],
      [64, 50, 37, [1, 64]],
    ] as [number, number, number, number[]][]) {
      it(`m=${m} vocab=${vocab} dim=${dim} r=[${ranks}]`, async () => {
        const be = kernels === 'js' ? new JsBackend() : await WasmBackend.create({ kernels });
        const rand = rng(m + dim);
        const ids = Int32Array.from({ length: m }, () => Math.floor(rand() * vocab));
        const E = randomF32(rand, vocab * dim);
        const ds = ranks.map((r, i) => ({ a: randomF32(rand, vocab * r), b: randomF32(rand, r * dim), r, scale: 1 + i }));
        const ref = refEmbedding(ids, E, dim, ds);
        const abs = (a: ArrayLike<number>) => Float64Array.from(a, Math.abs);
        const refAbs = refEmbedding(ids, abs(E), dim, ds.map((d) => ({ ...d, a: abs(d.a), b: abs(d.b) })));
        const y = be.embedding(
          Tensor.from(ids, [m], 'i32'),
          be.upload(Tensor.from(E, [vocab, dim], 'f32')),
          ds.map((d) => ({ a: be.upload(Tensor.from(d.a, [vocab, d.r], 'f32')), b: be.upload(Tensor.from(d.b, [d.r, dim], 'f32')), scale: d.scale })),
        );
        expect(y.shape).toEqual([m, dim]);
        const sumR = ranks.reduce((a, b) => a + b, 0);
        expectClose(y.data, ref, (j) => (sumR + 4) * EPS32 * refAbs[j], `[${m}]→[${m},${dim}]`);
        y.dispose();
      });
    }
    if (kernels === 'simd128') {
      it('rejects an out-of-range id', async () => {
        const be = await WasmBackend.create();
        expect(() => be.embedding(Tensor.from(Int32Array.from([3]), [1], 'i32'), Tensor.zeros([3, 2], 'f32'), [])).toThrowError(/token id out of range/);
      });
    }
  });
}
