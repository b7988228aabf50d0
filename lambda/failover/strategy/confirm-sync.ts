/** The first step of a planned move, for every strategy: wait until the survivor reports its session table in sync. */
import { type Clock, pollUntil } from '../clock.ts';

export async function confirmSync(clock: Clock, read: (instanceId: string) => Promise<boolean | undefined>, instanceId: string, waitMs: number, deadline: number): Promise<void> {
  await pollUntil(clock, `wait for ${instanceId} to report sessions in sync`, Math.min(deadline, clock.now() + waitMs), async () => ((await read(instanceId)) === true ? true : undefined));
}
