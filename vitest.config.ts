import { defineConfig } from 'vitest/config';

// `npm test`: everything that needs only Node and npm. Browser and GPU specs have their own configs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/browser/**', 'test/gpu/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
