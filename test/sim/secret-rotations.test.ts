import { describe, expect, it } from 'vitest';
import { SecretRotations } from '../../sim/secret-rotations.ts';

const body = (o: unknown) => Buffer.from(JSON.stringify(o));

describe('the behaviour layer’s Secrets Manager rotation', () => {
  it('runs the four steps in order, refuses a second rotation while one runs, and takes a failed rotation up again with its version', async () => {
    const calls: string[] = [];
    let failSet = true;
    const r = new SecretRotations(async (e) => {
      calls.push(`${e.Step}:${e.ClientRequestToken}`);
      if (e.Step === 'setSecret' && failSet) return { errorType: 'Error', errorMessage: 'not confirmed' };
      return { result: 'ok' };
    });
    const first = r.answer(body({ SecretId: 'arn:s' }));
    expect(first.status).toBe(200);
    const token = JSON.parse(first.body).VersionId as string;
    expect(JSON.parse(r.answer(body({ SecretId: 'arn:s' })).body).__type).toBe('InvalidRequestException');
    const [failed] = await r.idle();
    expect(failed).toMatchObject({ ok: false, failed: { step: 'setSecret' } });
    expect(calls).toEqual([`createSecret:${token}`, `setSecret:${token}`]);
    failSet = false;
    const again = JSON.parse(r.answer(body({ SecretId: 'arn:s' })).body).VersionId;
    expect(again).toBe(token);
    expect((await r.idle())[0]).toMatchObject({ ok: true, token });
    expect(calls.slice(2)).toEqual(['createSecret', 'setSecret', 'testSecret', 'finishSecret'].map((s) => `${s}:${token}`));
    // After a rotation that finished, the next one is a new version.
    expect(JSON.parse(r.answer(body({ SecretId: 'arn:s' })).body).VersionId).not.toBe(token);
    await r.idle();
    expect(r.answer(body({})).status).toBe(400);
  });
});
