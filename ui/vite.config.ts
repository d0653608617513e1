import { defineConfig } from 'vite';

// The ember binary embeds dist/ (host/build.rs). Asset URLs are relative:
// the server puts a <base href="<route prefix>/"> into index.html, so the
// same build works under any --web.route-prefix.
export default defineConfig({
  base: './',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1024,
    // No source maps in the binary: they would double its UI payload.
    sourcemap: false,
  },
  server: {
    // `npm run dev` proxies the API to an ember on :9090.
    proxy: { '/api': 'http://localhost:9090' },
  },
});
