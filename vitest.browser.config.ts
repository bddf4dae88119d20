import { defineConfig } from 'vitest/config';

// `npm run test:browser`: specs that drive a real headless Chromium (Debian `chromium`, installed by .ci/run)
// against pages served from 127.0.0.1. Nothing is excluded.
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
