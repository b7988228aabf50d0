/** Services persisted to disk atomically (write to a temp file, fsync, rename), so they survive restarts. */
import { mkdirSync, openSync, readFileSync, renameSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { Service } from './model.ts';

const FILE = 'services.json';
const fileSchema = z.object({ version: z.literal(1), services: z.array(z.record(z.string(), z.unknown())) });

export class ServiceStore {
  private readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, FILE);
  }

  load(): Service[] {
    let raw: string;
    try {
      raw = readFileSync(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const parsed = fileSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new Error(`${this.path} is not a loxiha services file: ${parsed.error.message}`);
    return parsed.data.services as unknown as Service[];
  }

  save(services: Service[]): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify({ version: 1, services }));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
  }
}
