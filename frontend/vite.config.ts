// Builds the tab into ONE ES module, `tb_matmul_explainer/static/index.js`, exporting `render()`.
// TensorBoard's CSP forbids external scripts, styles and fonts, so everything (d3 included, CSS as a
// string injected by src/styles.ts) is bundled into that file. The Python wheel ships it as package data,
// so build the bundle (`make frontend`) before building a wheel.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const here = import.meta.dirname;

export default defineConfig({
  build: {
    outDir: resolve(here, '../tb_matmul_explainer/static'),
    // The output folder is outside frontend/: never wipe it, only (over)write index.js.
    emptyOutDir: false,
    target: 'es2020',
    sourcemap: false,
    minify: 'oxc',
    copyPublicDir: false,
    reportCompressedSize: false,
    lib: {
      entry: resolve(here, 'src/index.ts'),
      formats: ['es'],
      fileName: () => 'index.js',
    },
    rolldownOptions: {
      output: { codeSplitting: false, minify: true },
    },
  },
});
