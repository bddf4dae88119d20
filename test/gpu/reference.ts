// The CPU backends the GPU output is also compared with (1e-4 relative): js (float64 reference) and wasm,
// through src/backends/index.ts `createBackend` once it exists; until then the JsBackend class directly.
// They are written in parallel to this backend, so a missing module is skipped (and said so by the caller).
import type { Backend } from '../../src/backends/backend.js';

async function load<T>(path: string): Promise<T | undefined> {
  try {
    return (await import(/* @vite-ignore */ path)) as T;
  } catch {
    return undefined;
  }
}

export async function cpuBackends(): Promise<Backend[]> {
  const out: Backend[] = [];
  const index = await load<{ init?: () => Promise<void>; createBackend?: (n: string) => Backend | Promise<Backend> }>('../../src/backends/index.js');
  if (index?.createBackend) {
    await index.init?.().catch(() => undefined);
    for (const name of ['js', 'wasm']) {
      try {
        out.push(await index.createBackend(name));
      } catch {
        // that backend is not built yet
      }
    }
  }
  if (!out.some((b) => b.name === 'js')) {
    const js = await load<{ JsBackend?: new () => Backend }>('../../src/backends/js.js');
    if (js?.JsBackend) out.push(new js.JsBackend());
  }
  return out;
}
