import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // e2e tests share the kernel (namespaces, nftables): they run one file at a time among themselves.
    fileParallelism: true,
    reporters: ['default'],
  },
});
