import { defineConfig } from 'vitest/config';

// Unit tests: pure data transforms run in Node; DOM-building tests opt into jsdom per file.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
