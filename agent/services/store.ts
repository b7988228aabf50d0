/**
 * The agent's state on disk: the services and the last probe verdicts, so a restart starts from
 * what the kernel was given and re-applies nothing the probes had taken out. A snapshot
 * (`services.json`, written atomically: temp file, fsync, rename, fsync of the directory) plus a
 * journal of the batches since (`services.journal`, one JSON line per batch, fsynced): a change
 * costs one small append, not a rewrite of every service. A line cut short by a crash is dropped
 * on load; the journal is folded into a new snapshot when it grows.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { type FileHandle, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { type Service, serviceKey } from './model.ts';

const FILE = 'services.json';
const JOURNAL = 'services.journal';
/** Batches in the journal before it is folded into the snapshot. */
const COMPACT_AFTER = 512;

const serviceRecord = z.record(z.string(), z.unknown());
const fileSchema = z.union([
  z.object({ version: z.literal(1), services: z.array(serviceRecord) }),
  z.object({ version: z.literal(2), services: z.array(serviceRecord), down: z.array(z.string().max(600)) }),
]);
const lineSchema = z.object({ set: z.array(serviceRecord), del: z.array(z.string().max(600)), down: z.array(z.string().max(600)).optional() }).strict();

export interface SavedState {
  services: Service[];
  /** `${serviceKey}#${endpointKey}` of endpoints the probes had marked down. */
  down: string[];
}

export class StateStore {
  private readonly dir: string;
  private readonly path: string;
  private readonly journalPath: string;
  /** What is on disk (snapshot + journal), to write only the difference. */
  private saved = new Map<string, Service>();
  private savedDown: string[] = [];
  private journalLines = 0;
  private journal: FileHandle | undefined;

  constructor(stateDir: string) {
    this.dir = stateDir;
    this.path = join(stateDir, FILE);
    this.journalPath = join(stateDir, JOURNAL);
  }

  /** Reads the state; removes temp files a killed write left behind (they are never complete states). */
  load(): SavedState {
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
    } catch {
      // no directory yet: nothing saved
    }
    for (const f of names.filter((n) => n.startsWith(`${FILE}.`) && n.endsWith('.tmp'))) rmSync(join(this.dir, f), { force: true });
    const services = new Map<string, Service>();
    let down: string[] = [];
    const snapshot = this.read(this.path);
    if (snapshot !== undefined) {
      const parsed = fileSchema.safeParse(JSON.parse(snapshot));
      if (!parsed.success) throw new Error(`${this.path} is not a loxiha state file: ${parsed.error.message}`);
      for (const s of parsed.data.services as unknown as Service[]) services.set(serviceKey(s), s);
      if ('down' in parsed.data) down = parsed.data.down;
    }
    const journal = this.read(this.journalPath) ?? '';
    const lines = journal.split('\n');
    this.journalLines = 0;
    let good = 0;
    for (const [i, line] of lines.entries()) {
      if (!line) continue;
      let record: z.infer<typeof lineSchema>;
      try {
        if (i === lines.length - 1) throw new Error('no line end');
        record = lineSchema.parse(JSON.parse(line));
      } catch (e) {
        // Only the last line can be cut short by a crash (it then has no line end): drop it, so the
        // next append starts on a line of its own. A damaged line before it is not a torn write.
        if (i >= lines.length - 2) {
          truncateSync(this.journalPath, good);
          break;
        }
        throw new Error(`${this.journalPath} line ${i + 1} is damaged: ${(e as Error).message}`);
      }
      good += Buffer.byteLength(line) + 1;
      for (const s of record.set as unknown as Service[]) services.set(serviceKey(s), s);
      for (const k of record.del) services.delete(k);
      if (record.down) down = record.down;
      this.journalLines++;
    }
    this.saved = services;
    this.savedDown = down;
    return { services: [...services.values()], down };
  }

  private read(path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Saves the state: appends what changed since the last save (or folds everything into a new snapshot). */
  async save(state: SavedState): Promise<void> {
    const next = new Map(state.services.map((s) => [serviceKey(s), s]));
    const set = state.services.filter((s) => this.saved.get(serviceKey(s)) !== s);
    const del = [...this.saved.keys()].filter((k) => !next.has(k));
    const downChanged = state.down.length !== this.savedDown.length || state.down.some((d, i) => d !== this.savedDown[i]);
    if (!set.length && !del.length && !downChanged) return;
    if (this.journalLines >= COMPACT_AFTER) await this.snapshot(state);
    else {
      mkdirSync(this.dir, { recursive: true });
      this.journal ??= await open(this.journalPath, 'a', 0o600);
      await this.journal.write(`${JSON.stringify({ set, del, ...(downChanged ? { down: state.down } : {}) })}\n`);
      await this.journal.datasync();
      this.journalLines++;
    }
    this.saved = next;
    this.savedDown = [...state.down];
  }

  /** Writes the whole state as the snapshot, then empties the journal (replaying it over the new snapshot would change nothing). */
  private async snapshot(state: SavedState): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const tmp = `${this.path}.${process.pid}.tmp`;
    const file = await open(tmp, 'w', 0o600);
    try {
      await file.writeFile(JSON.stringify({ version: 2, services: state.services, down: state.down }));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, this.path);
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    this.journal ??= await open(this.journalPath, 'a', 0o600);
    await this.journal.truncate(0);
    await this.journal.datasync();
    this.journalLines = 0;
  }

  async close(): Promise<void> {
    await this.journal?.close();
    this.journal = undefined;
  }
}
