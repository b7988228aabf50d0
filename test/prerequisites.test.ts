/** In CI every prerequisite must be there: a suite that skipped its emulator, linter or kernel tests is not green. */
import { describe, expect, it } from 'vitest';
import { missingLines, type Prerequisite, prerequisites } from './harness/prerequisites.ts';

describe('prerequisites', () => {
  it('turns a missing prerequisite into one clear line: an error in CI, a reason to skip elsewhere', () => {
    const found: Prerequisite[] = [
      { name: 'moto_server (the AWS emulator)', available: false, fix: 'run bash scripts/setup' },
      { name: 'cfn-lint', available: true, fix: 'x' },
    ];
    expect(missingLines(found, true)).toEqual(['CI requires moto_server (the AWS emulator): run bash scripts/setup']);
    expect(missingLines(found, false)).toEqual(['SKIPPED tests that need moto_server (the AWS emulator): run bash scripts/setup']);
    expect(missingLines([{ ...found[0]!, available: true }], true)).toEqual([]);
  });

  it.runIf(process.env.CI === 'true')('finds everything the suite needs on this CI machine', () => {
    expect(missingLines(prerequisites(), true)).toEqual([]);
  });
});
