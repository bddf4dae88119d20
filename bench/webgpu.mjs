// Question: how does the WebGPU backend compare to wasm, and how many dispatches does one forward take?
// In Node through the `webgpu` package (Dawn); with no GPU, Dawn runs on SwiftShader (set below), a software
// Vulkan whose timings are not meaningful. Browser twin: webgpu.html.
// VK_ICD_FILENAMES must be set before Dawn's instance is created (the Vulkan loader reads it once).
process.env.VK_ICD_FILENAMES ??= '/usr/lib/chromium/vk_swiftshader_icd.json';
import { createRequire } from 'node:module';
import { args, machine } from './lib/common.mjs';
import { loadLib } from './lib/ours.mjs';
import { runWebGPU, webgpuTable } from './lib/webgpu-core.mjs';

/** Resolves `webgpu` from the repo root (a root devDependency, so the bench does not install it twice). */
async function nodeGpu() {
  const require = createRequire(new URL('../package.json', import.meta.url));
  const { create, globals } = await import(require.resolve('webgpu'));
  Object.assign(globalThis, globals);
  return create([]);
}

export async function runGpu({ quick = false, log = console.error } = {}) {
  const { lib, error } = await loadLib();
  if (!lib) return { error };
  let gpu;
  try {
    gpu = await nodeGpu();
  } catch (e) {
    return { error: `the \`webgpu\` package did not load (${e.message}); run \`npm install\` in the repo root` };
  }
  try {
    return await runWebGPU({ lib, gpu, log, quick });
  } catch (e) {
    return { error: `the WebGPU backend did not run: ${e.message.split('\n')[0]}` };
  }
}

export function gpuTables(r) {
  return r.error ? `#### WebGPU backend\n\nNot measured: ${r.error}.` : webgpuTable(r);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const a = args();
  const r = await runGpu({ quick: a.quick });
  console.log(`Machine: ${machine()}\n\n${gpuTables(r)}`);
  process.exit(0); // Dawn keeps the event loop alive
}
