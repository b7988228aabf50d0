/** The test-only fixture programs (Lambda and CloudWatch stand-ins, an nft that kills its caller, the probe fuzzer). */
import { join, resolve } from 'node:path';

export const FIX = join(resolve(import.meta.dirname, '../..'), 'test/e2e/fixtures');
