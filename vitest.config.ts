/**
 * One vitest run for everything (`npm test`, what CI runs), split into three projects that can
 * also run alone:
 * - unit (`npm run test:unit`): pure code, SDK mocks, CDK assertions, golden rulesets — no root
 *   needed except where a test loads a ruleset into a namespace of its own;
 * - integration (`npm run test:integration`): `*.integration.test.ts`, against moto (the AWS
 *   emulator) behind the AWS-behaviour proxy;
 * - e2e (`npm run test:e2e`, root): `test/e2e`, real agents and traffic in network namespaces.
 * Files run in parallel processes (forks); e2e files share the kernel's namespaces and tables
 * only by ids of their own.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: ['test/**/*.integration.test.ts', 'test/e2e/**'] } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.integration.test.ts'] } },
      { extends: true, test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'] } },
    ],
  },
});
