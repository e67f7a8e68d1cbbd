import { defineConfig } from 'vitest/config';

// Browser tests: headless Debian Chromium (playwright-core) against a real TensorBoard serving log
// directories written by tb_matmul_explainer's own writer. See README.md (Tests): screenshots and figures go to
// e2e/out/, or to docs/ with UPDATE_DOCS=1.
export default defineConfig({
  test: {
    include: ['e2e/**/*.e2e.ts'],
    environment: 'node',
    globalSetup: ['e2e/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
