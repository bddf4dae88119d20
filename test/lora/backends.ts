import type { Backend } from '../../src/backends/backend.js';
import { JsBackend } from '../../src/backends/js.js';

/** One case table, every CPU backend: the float64 reference and wasm (when its module is built). */
export const backendCases: { name: string; make: () => Promise<Backend> }[] = [
  { name: 'js', make: async () => new JsBackend() },
  {
    name: 'wasm',
    make: async () => {
      const mod = await import('../../src/backends/index.js');
      await mod.init?.();
      return await mod.createBackend('wasm');
    },
  },
];
