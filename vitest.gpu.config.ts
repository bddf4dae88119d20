import { defineConfig } from 'vitest/config';

// `npm run test:gpu`: real WebGPU through the `webgpu` npm package (Dawn). With no GPU the tests run on
// SwiftShader (test/gpu/env.ts points Vulkan at Chromium's ICD), ~10–40× slower than wasm: shapes stay small.
export default defineConfig({
  test: {
    include: ['test/gpu/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One Dawn instance per process is enough; files run one after another.
    fileParallelism: false,
  },
});
