/**
 * esbuild options shared by every bundle loxiha ships to Node 24 (the failover function, the
 * agent and its CLI): ES modules built from the packages' ES sources, split at dynamic imports so
 * code behind an `await import()` is not parsed until it is used.
 */
import type { BuildOptions } from 'esbuild';

export const NODE_ESM_SPLIT: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  mainFields: ['module', 'main'],
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  outExtension: { '.js': '.mjs' },
  sourcemap: true,
  // ESM output; a few bundled CommonJS modules still call require() for Node built-ins.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'error',
};
