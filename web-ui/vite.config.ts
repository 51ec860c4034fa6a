import { defineConfig } from "vite";

// Preact through esbuild's automatic JSX runtime: no Babel, no plugin.
export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    target: "es2020",
    // hls.js is loaded on demand, when a preview is shown.
    chunkSizeWarningLimit: 600,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8080", "/hls": "http://127.0.0.1:8080" } },
});
