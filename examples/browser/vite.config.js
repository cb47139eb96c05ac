// Vite settings for dmabuf-lab: the workers are ES modules, the package is
// served as it is in dev (not pre-bundled), and the page is cross-origin
// isolated (shared memory needs it).
const isolation = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };

export default {
  worker: { format: "es" },
  optimizeDeps: { exclude: ["dmabuf-lab"] },
  server: { headers: isolation },
  preview: { headers: isolation },
};
