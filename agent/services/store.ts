/**
 * The agent's state on disk: the services and the last probe verdicts, written atomically (temp
 * file, fsync, rename, fsync of the directory), so a restart starts from what the kernel was
 * given and re-applies nothing that probes had taken out.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Service } from './model.ts';

const FILE = 'services.json';
const fileSchema = z.union([
  z.object({ version: z.literal(1), services: z.array(z.record(z.string(), z.unknown())) }),
  z.object({ version: z.literal(2), services: z.array(z.record(z.string(), z.unknown())), down: z.array(z.string().max(600)) }),
]);

export interface SavedState {
  services: Service[];
  /** `${serviceKey}#${endpointKey}` of endpoints the probes had marked down. */
  down: string[];
}

export class StateStore {
  private readonly dir: string;
  private readonly path: string;

  constructor(stateDir: string) {
    this.dir = stateDir;
    this.path = join(stateDir, FILE);
  }

  /** Reads the state; removes temp files a killed write left behind (they are never complete states). */
  load(): SavedState {
    let leftovers: string[] = [];
    try {
      leftovers = readdirSync(this.dir).filter((f) => f.startsWith(`${FILE}.`) && f.endsWith('.tmp'));
    } catch {
      // no directory yet: nothing saved
    }
    for (const f of leftovers) rmSync(join(this.dir, f), { force: true });
    let raw: string;
    try {
      raw = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { services: [], down: [] };
      throw e;
    }
    const parsed = fileSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new Error(`${this.path} is not a loxiha state file: ${parsed.error.message}`);
    return { services: parsed.data.services as unknown as Service[], down: 'down' in parsed.data ? parsed.data.down : [] };
  }

  save(state: SavedState): void {
    mkdirSync(this.dir, { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify({ version: 2, services: state.services, down: state.down }));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
