/**
 * The failover function, locally: its bundle exactly as `cdk synth` stages it, run by a small
 * Lambda-like runtime (sim/programs/lambda-runtime.mjs) in its own Node process, with the
 * environment the CDK app gives it and AWS calls going to the emulator behind the behaviour layer.
 * Invocations arrive from the agents (Lambda's Invoke API on the proxy), from the alarm evaluator
 * and from the demo itself (placement, planned moves).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleHandler } from '../lib/bundling/bundle-handler.ts';
import { freePort } from './moto.ts';

const ROOT = join(import.meta.dirname, '..');

/** A line the runtime printed: its own framing ({runtime: …}) or one of the handler's log records. */
export type RuntimeLine = Record<string, unknown> & { at?: number };

export class FailoverRuntime {
  private readonly child: ChildProcess;
  private readonly port: number;
  onLine: (l: RuntimeLine) => void = () => {};

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
  }

  /** Bundles the handler (`entry`, the failover function's unless given) into `dir` and starts the runtime with `env` (plus what every Lambda has). */
  static async start(opts: { dir: string; env: Record<string, string>; functionArn: string; timeoutSeconds: number; entry?: string }): Promise<FailoverRuntime> {
    bundleHandler(join(ROOT, opts.entry ?? 'lambda/failover/handler.ts'), opts.dir);
    const port = await freePort();
    const child = spawn(process.execPath, [join(ROOT, 'sim/programs/lambda-runtime.mjs'), opts.dir, String(port), opts.functionArn, String(opts.timeoutSeconds)], {
      env: { PATH: process.env.PATH ?? '', AWS_LAMBDA_FUNCTION_NAME: opts.functionArn.split(':').at(-1)!, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const rt = new FailoverRuntime(child, port);
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the function's runtime (${opts.entry ?? 'failover'}) exited (${code}): ${stderr}`)));
      // Powertools writes INFO to stdout and WARN/ERROR to stderr, as Lambda captures both.
      for (const stream of [child.stdout!, child.stderr!]) {
        createInterface({ input: stream }).on('line', (line) => {
          let o: RuntimeLine;
          try {
            o = JSON.parse(line) as RuntimeLine;
          } catch {
            if (stream === child.stderr) stderr = `${stderr}${line}\n`.slice(-4000);
            return;
          }
          if (o.runtime === 'ready') resolve();
          else rt.onLine(o);
        });
      }
    });
    return rt;
  }

  /** One invocation; resolves with the handler's result or its error, as Lambda's Invoke API reports it. */
  async invoke(payload: unknown, qualifier?: string): Promise<{ result?: unknown; errorType?: string; errorMessage?: string }> {
    const r = await fetch(`http://127.0.0.1:${this.port}/invoke`, { method: 'POST', body: JSON.stringify({ payload, qualifier, id: randomUUID() }) });
    return (await r.json()) as { result?: unknown; errorType?: string; errorMessage?: string };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
