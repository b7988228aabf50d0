import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { synthStack } from '../helpers/stack.ts';
import { cfnLint, need } from '../harness/prerequisites.ts';

const available = need(cfnLint());

const dir = mkdtempSync(join(tmpdir(), 'loxiha-cfnlint-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!available)('cfn-lint', () => {
  const cases: [string, string, Record<string, unknown>][] = [
    ['production', 'production', {}],
    ['sim', 'sim', {}],
    ['sim with strategy route, three VIP groups over two slots in each of three zones', 'sim', { strategy: 'route', vip: '100.127.0.10', availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'], lbSubnetCidrs: ['100.64.218.0/24', '100.64.228.0/24', '100.64.238.0/24'], slotsPerAz: 2, groups: [{ name: 'g1', vip: '100.127.1.10' }, { name: 'g2', vip: '100.127.2.10' }] }],
  ];
  for (const [name, profile, overrides] of cases) {
    it(`finds no errors in the ${name} template`, () => {
      const { template } = synthStack(overrides, profile);
      const file = join(dir, `${name.replace(/ /g, '-')}.template.json`);
      writeFileSync(file, JSON.stringify(template.toJSON()));
      // Errors only: warnings (e.g. W3010 hard-coded AZs, which the config asks for) do not fail.
      const r = spawnSync('cfn-lint', ['--format', 'parseable', file], { encoding: 'utf8' });
      const errors = r.stdout.split('\n').filter((l) => /:E\d{4}:/.test(l));
      expect(errors, r.stdout + r.stderr).toEqual([]);
      expect(r.status === 0 || r.status === 4 || r.status === 8 || r.status === 12, `cfn-lint exit ${r.status}: ${r.stderr}`).toBe(true);
    });
  }
});
