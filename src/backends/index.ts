import { BackendError } from '../errors.js';
import { initWasm } from '../runtime/wasm.js';
import type { Backend } from './backend.js';
import { JsBackend } from './js.js';
import { WasmBackend, type WasmBackendOptions } from './wasm.js';
import type { AutoOptions } from './webgpu/auto.js';

/**
 * Picking a backend. `init()` is the one call a user needs: it compiles the wasm module (once) and makes
 * the WasmBackend the default that layers use.
 */

/** Names `createBackend` accepts. */
export type CreatableBackend = 'wasm' | 'js' | 'webgpu' | 'auto';

/** Every name `createBackend` knows, for error messages. */
const BACKEND_NAMES: readonly CreatableBackend[] = ['wasm', 'js', 'webgpu', 'auto'];

let current: Backend | undefined;
let initializing: Promise<Backend> | undefined;

/**
 * Creates a backend by name. 'wasm' initialises the runtime first; 'js' is the float64 reference;
 * 'webgpu' needs WebGPU (BackendError 'no_webgpu' otherwise; in Node pass `{gpu}` from the `webgpu` package);
 * 'auto' takes WebGPU on a hardware adapter when the work is large enough, else wasm, and says which:
 * `backend.name`, plus `backend.fallbackReason` and one console.warn when it fell back.
 */
export async function createBackend(name: CreatableBackend, opts?: AutoOptions & WasmBackendOptions): Promise<Backend> {
  switch (name) {
    case 'wasm':
      return WasmBackend.create({ kernels: opts?.kernels, build: opts?.build, threads: opts?.threads, gemvTile: opts?.gemvTile });
    case 'js':
      return new JsBackend();
    case 'webgpu': {
      const { createWebGPUBackend } = await import('./webgpu/index.js');
      return createWebGPUBackend(opts);
    }
    case 'auto': {
      const { createAutoBackend } = await import('./webgpu/index.js');
      return createAutoBackend(opts ?? {}, () => createBackend('wasm'));
    }
    default:
      throw new BackendError('unknown_backend', 'unknown backend', { expected: BACKEND_NAMES.join(' | '), got: name, where: 'createBackend' });
  }
}

/** Makes `b` the backend layers use when none is passed explicitly. */
export function setDefaultBackend(b: Backend): void {
  current = b;
}

/** The default backend; throws `not_initialized`-style guidance when `init()` has not run. */
export function defaultBackend(): Backend {
  if (!current) {
    throw new BackendError('not_initialized', 'no default backend is set', {
      detail: 'call `await init()` first (or setDefaultBackend(await createBackend("js")))',
      where: 'defaultBackend',
    });
  }
  return current;
}

/**
 * Initialises wasm (idempotent, concurrency-safe), sets it as the default backend and returns it. The one-thread
 * runtime (`wasmRuntime()`, used by the conversion helpers) is initialised too, also when the default backend runs
 * on the threads build.
 */
export function init(): Promise<Backend> {
  if (current) return Promise.resolve(current);
  initializing ??= Promise.all([createBackend('wasm'), initWasm()]).then(
    ([b]) => (current ??= b),
    (e) => {
      initializing = undefined; // let a later call retry
      throw e;
    },
  );
  return initializing;
}

export { JsBackend, WasmBackend };
export type { Backend };
