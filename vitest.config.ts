/**
 * One vitest run for everything (`npm test`, what CI runs), split into projects that can also run
 * alone:
 * - unit (`npm run test:unit`): pure code, SDK mocks, CDK assertions, golden rulesets — no root
 *   needed except where a test loads a ruleset into a namespace of its own;
 * - integration (`npm run test:integration`): `*.integration.test.ts`, against moto (the AWS
 *   emulator) behind the AWS-behaviour proxy;
 * - e2e and e2e-demo (`npm run test:e2e`, root): `test/e2e`, real agents and traffic in network
 *   namespaces; e2e-demo is the demo's runs (`npm run demo`, one at a time).
 * Two groups, one after the other: first unit, integration and the demo's runs, two files at a time
 * (the demo's runs mostly wait on simulated AWS and traffic; the CDK synths mostly compute), then the
 * other e2e files one at a time (their timings are tighter). Every file's namespaces, tables and
 * ports are its own, by id.
 */
import { defineConfig } from 'vitest/config';

const parallel = { sequence: { groupOrder: 0 }, maxWorkers: 2 };
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: ['test/**/*.integration.test.ts', 'test/e2e/**'], ...parallel } },
      { extends: true, test: { name: 'integration', include: ['test/**/*.integration.test.ts'], ...parallel } },
      { extends: true, test: { name: 'e2e-demo', include: ['test/e2e/demo.e2e.test.ts'], ...parallel } },
      { extends: true, test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], exclude: ['test/e2e/demo.e2e.test.ts'], sequence: { groupOrder: 1 }, maxWorkers: 1 } },
    ],
  },
});
