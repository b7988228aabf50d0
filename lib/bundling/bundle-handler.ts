/**
 * Bundles a Lambda handler into `<outdir>/index.mjs` (+ `index.mjs.map`) with esbuild, locally, as
 * `cdk synth` stages it. It does what NodejsFunction's local bundling does, plus the two
 * rewrites of ./shaking-plugins.ts — NodejsFunction runs the esbuild CLI, which takes no plugins
 * (aws/aws-cdk#18470) — and options chosen for the failover path's cold start:
 *
 * - split at dynamic imports: the SDK's credential providers that Lambda never reaches (SSO, STS,
 *   process, …) become chunks that a cold start does not parse;
 * - minified whitespace and syntax, but names kept: stack traces in the logs name the functions
 *   without `--enable-source-maps`, which costs ≈ 80 ms of cold start on this bundle (measured with
 *   `npm run bench:failover`); the source map still ships beside the bundle for offline decoding.
 * - the SDK is bundled (pinned, tested versions rather than whatever the runtime ships).
 *
 * CDK's local bundling is synchronous and esbuild plugins need the asynchronous API, so the build
 * runs in a child Node process: this same file, run as a script.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { NODE_ESM_SPLIT } from './node-esm.ts';
import { shakingPlugins } from './shaking-plugins.ts';

const SELF = fileURLToPath(import.meta.url);

export interface HandlerBundle {
  /** The entry module, `<outdir>/index.mjs`. */
  outfile: string;
  /** Bytes of JavaScript shipped: the entry and every chunk (source maps excluded). */
  bytes: number;
  schemaKeys: number;
  zodImports: number;
}

/**
 * Bundles `entry` into `outdir`; throws (failing the synth) on any error or when a rewrite found
 * nothing to do. `plain` leaves the rewrites out: the benchmark's baseline, never shipped.
 */
export function bundleHandler(entry: string, outdir: string, options: { plain?: boolean } = {}): HandlerBundle {
  const r = spawnSync(process.execPath, [SELF, entry, outdir, ...(options.plain ? ['--plain'] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bundling ${entry} failed:\n${r.stderr || r.stdout}`);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as HandlerBundle;
}

async function main(entry: string, outdir: string, plain: boolean): Promise<void> {
  const outfile = path.join(outdir, 'index.mjs');
  const { plugins, counts } = plain ? { plugins: [], counts: { schemaKeys: 0, zodImports: 0 } } : shakingPlugins();
  const result = await build({
    ...NODE_ESM_SPLIT,
    entryPoints: { index: entry },
    outdir,
    minifyWhitespace: true,
    minifySyntax: true,
    // Class names are kept: the EC2 adapter keys its request limiter on the command's name.
    keepNames: true,
    metafile: true,
    plugins,
  });
  const inputs = Object.keys(result.metafile.inputs);
  const problems: string[] = [];
  if (inputs.some((i) => /@aws-sdk[\\/]client-[^\\/]+[\\/]dist-es[\\/]schemas[\\/]/.test(i)) && counts.schemaKeys === 0)
    problems.push('the SDK schema modules have no computed trait keys any more: update lib/bundling/shaking-plugins.ts');
  if (inputs.some((i) => /@aws-lambda-powertools[\\/]parser[\\/]/.test(i)) && counts.zodImports === 0)
    problems.push("Powertools' parser no longer imports { z } from 'zod': update lib/bundling/shaking-plugins.ts");
  if (problems.length > 0 && !plain) throw new Error(problems.join('\n'));
  const outputs = result.metafile.outputs;
  const bytes = Object.keys(outputs)
    .filter((o) => o.endsWith('.mjs'))
    .reduce((sum, o) => sum + outputs[o]!.bytes, 0);
  process.stdout.write(`${JSON.stringify({ outfile, bytes, ...counts } satisfies HandlerBundle)}\n`);
}

if (import.meta.main) {
  const [entry, outdir, flag] = process.argv.slice(2);
  if (!entry || !outdir || (flag !== undefined && flag !== '--plain')) {
    process.stderr.write('usage: node lib/bundling/bundle-handler.ts <entry.ts> <outdir> [--plain]\n');
    process.exit(2);
  }
  main(path.resolve(entry), path.resolve(outdir), flag === '--plain').catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
