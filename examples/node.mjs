// Node example: load a base checkpoint and a PEFT adapter, apply, run with the adapter on and off.
// Run after `npm run build`:  node examples/node.mjs [base.safetensors] [adapter-dir]
import { readFile } from 'node:fs/promises';
import { init, LoRAContainer, modelFromWeights, SafetensorsReader, setLoRAEnabled, Tensor } from '../dist/index.js';

const here = new URL('../test/fixtures/golden/basic/', import.meta.url).pathname;
const basePath = process.argv[2] ?? `${here}base.safetensors`;
const adapterDir = process.argv[3] ?? `${here}adapter`;

await init();
const reader = SafetensorsReader.fromBytes(new Uint8Array(await readFile(basePath)), { file: basePath });
const tensors = new Map();
for (const [name, info] of reader.tensors) {
  tensors.set(name, Tensor.from(new Float32Array(await reader.typed(name)), info.shape, 'f32'));
}
const model = modelFromWeights(tensors);
const adapter = await LoRAContainer.fromPEFT(adapterDir);
console.log(adapter.report.toString());
adapter.apply(model);

const [path, layer] = [...model.namedModules()].find(([, m]) => m.loraEnabled !== undefined);
const x = Tensor.from(Float32Array.from({ length: 3 * layer.k }, (_, i) => Math.sin(i)), [3, layer.k], 'f32');
const on = layer.forward(x).toCpu().data;
setLoRAEnabled(model, false);
const off = layer.forward(x).toCpu().data;
let diff = 0;
for (let i = 0; i < on.length; i++) diff = Math.max(diff, Math.abs(on[i] - off[i]));
console.log(`${path}: ${layer}  max |on − off| = ${diff.toExponential(3)}`);
