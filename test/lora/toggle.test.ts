import { describe, expect, test } from 'vitest';
import type { LoRADelta } from '../../src/backends/backend.js';
import { JsBackend } from '../../src/backends/js.js';
import { DoRALinear } from '../../src/lora/dora-linear.js';
import { LoRALinear } from '../../src/lora/lora-linear.js';
import { setLoRAEnabled } from '../../src/lora/set-enabled.js';
import { Linear } from '../../src/nn/linear.js';
import { Module } from '../../src/nn/module.js';
import { Tensor } from '../../src/tensor.js';
import { backendCases } from './backends.js';
import { prng, randomTensor } from './helpers.js';

const rand = prng(11);
const bits = (t: Tensor) => Buffer.from((t.data as Float32Array).slice().buffer);

describe.each(backendCases)('toggle on $name', ({ make }) => {
  test('10,000 flips with forwards in between: two cached delta arrays, off bit-identical', async () => {
    const backend = await make();
    const base = new Linear(randomTensor(rand, [13, 9]), randomTensor(rand, [13]), { backend });
    const layer = LoRALinear.fromBase(base, { name: 'a', a: randomTensor(rand, [9, 3]), b: randomTensor(rand, [3, 13]), scale: 2 });
    const x = backend.upload(randomTensor(rand, [2, 9]));
    const yBase = bits(base.forward(x));
    const yOn = bits(layer.forward(x));
    expect(yOn.equals(yBase)).toBe(false);
    const seen = new Set<readonly LoRADelta[]>();
    const memory = (backend as { runtime?: { memory: WebAssembly.Memory } }).runtime?.memory;
    const bytesBefore = memory?.buffer.byteLength;
    for (let i = 0; i < 10_000; i++) {
      layer.loraEnabled = i % 2 === 1;
      seen.add(layer.activeDeltas);
      const y = layer.forward(x);
      if (i % 1000 === 0) expect(bits(y).equals(i % 2 ? yOn : yBase)).toBe(true);
      y.dispose();
    }
    expect(seen.size).toBe(2);
    if (memory) expect(memory.buffer.byteLength).toBe(bytesBefore);
  });
});

describe('layers', () => {
  const backend = new JsBackend();

  test('several adapters add; per-adapter toggles and scales', () => {
    const base = new Linear(randomTensor(rand, [5, 4]), undefined, { backend });
    const a = { name: 'a', a: randomTensor(rand, [4, 2]), b: randomTensor(rand, [2, 5]), scale: 1 };
    const b = { name: 'b', a: randomTensor(rand, [4, 1]), b: randomTensor(rand, [1, 5]), scale: 3 };
    const layer = LoRALinear.fromBase(base, a);
    layer.addAdapter(b);
    const x = randomTensor(rand, [1, 4]);
    const only = (name: string, k = 1) => {
      const l = LoRALinear.fromBase(base, name === 'a' ? a : b);
      l.setScale(k);
      return Array.from(l.forward(x).data as Float32Array);
    };
    const y0 = Array.from(base.forward(x).data as Float32Array);
    const both = Array.from(layer.forward(x).data as Float32Array);
    both.forEach((v, i) => expect(v).toBeCloseTo(only('a')[i] + only('b')[i] - y0[i], 5));
    layer.setAdapterEnabled('b', false);
    expect(layer.forward(x).data).toEqual(Float32Array.from(only('a')));
    layer.setAdapterEnabled('b', true);
    layer.setScale(0.5, 'a');
    Array.from(layer.forward(x).data as Float32Array).forEach((v, i) => expect(v).toBeCloseTo(only('a', 0.5)[i] + only('b')[i] - y0[i], 5));
    expect(String(layer)).toMatchInlineSnapshot(`"LoRALinear(k=4, n=5, adapters=[a r=2 scale=0.5, b r=1 scale=3], on)"`);
    const model = new Module().set('proj', layer);
    expect(setLoRAEnabled(model, false, { adapter: 'a' })).toBe(1);
    expect(layer.adapter('a')!.enabled).toBe(false);
    expect(layer.loraEnabled).toBe(true);
  });

  test('DoRA: scale 0 is not off; off is the base; rescaling refreshes the cached norm', () => {
    const base = new Linear(randomTensor(rand, [6, 5]), randomTensor(rand, [6]), { backend });
    const layer = DoRALinear.fromBase(base, { name: 'd', a: randomTensor(rand, [5, 2]), b: randomTensor(rand, [2, 6]), scale: 2, magnitude: randomTensor(rand, [6], 3) });
    const x = randomTensor(rand, [2, 5]);
    const gain = layer.magnitudeScale;
    layer.setScale(0);
    expect(layer.magnitudeScale).not.toBe(gain);
    expect(layer.forward(x).data).not.toEqual(base.forward(x).data);
    layer.loraEnabled = false;
    expect(bits(layer.forward(x)).equals(bits(base.forward(x)))).toBe(true);
    layer.loraEnabled = true;
    // Scale 0: y = (m/‖W‖) ⊙ (x·Wᵀ) + b.
    const W = Array.from(base.weight.data as Float32Array);
    const m = layer.adapter('d')!.host.magnitude!.data as Float32Array;
    const y = layer.forward(x).data as Float32Array;
    const noBias = new Linear(base.weight, undefined, { backend }).forward(x).data as Float32Array;
    for (let i = 0; i < 6; i++) {
      const norm = Math.hypot(...W.slice(i * 5, i * 5 + 5));
      expect(y[i]).toBeCloseTo((m[i] / norm) * noBias[i] + (base.bias!.data as Float32Array)[i], 5);
    }
  });
});
