/**
 * Two esbuild plugins that let esbuild drop code the failover function never runs. Both are
 * rewrites that keep the meaning of the code; they exist because esbuild's side-effect analysis is
 * more cautious than these two libraries' generated code expects:
 *
 * - `literalSchemaKeys`: the SDK's generated schema modules (`@aws-sdk/client-*` ≥ 3.9xx,
 *   `dist-es/schemas/schemas_0.js`) write trait objects with computed keys, `{ [_xN]: "..." }`,
 *   where `_xN` is a string constant of the same module. esbuild treats a computed key as a possible
 *   side effect (`toString` could run), so it keeps every schema of the service: for EC2 that is
 *   555 KB of the function's 1.5 MB and most of its cold start. Replacing `[_xN]:` by the constant's
 *   literal (`"xmlName":`) lets esbuild keep only the schemas of the operations we call (56 KB).
 * - `namespaceZodImports`: `import { z } from 'zod'` binds zod's re-exported namespace object,
 *   which esbuild cannot shake, so the whole of zod comes in — every locale included (454 KB).
 *   `import * as z from 'zod'` is the same object for property access, and esbuild shakes it
 *   (102 KB). Powertools' parser schemas use the first form.
 *
 * Each plugin counts what it rewrote; `bundleHandler` fails when a plugin that was expected to act
 * did not (a library changed its layout), instead of silently shipping the large bundle.
 */
import { readFile } from 'node:fs/promises';
import type { Plugin } from 'esbuild';

export interface RewriteCounts {
  /** Computed keys turned into literal keys, over all schema modules. */
  schemaKeys: number;
  /** `import { z }` turned into namespace imports. */
  zodImports: number;
}

const SCHEMA_MODULE = /[\\/]@aws-sdk[\\/]client-[a-z0-9-]+[\\/]dist-es[\\/]schemas[\\/]schemas_\d+\.js$/;
const STRING_CONST = /^const (_[A-Za-z0-9_]+) = ("(?:[^"\\\n]|\\.)*");$/gm;
const COMPUTED_KEY = /\[(_[A-Za-z0-9_]+)\]:/g;

/** `{ [_a]: x }` → `{ "value-of-_a": x }` for every top-level string constant `_a` of the module. */
export function literalizeSchemaKeys(source: string): { code: string; rewritten: number } {
  const constants = new Map<string, string>();
  for (const m of source.matchAll(STRING_CONST)) constants.set(m[1]!, m[2]!);
  let rewritten = 0;
  const code = source.replace(COMPUTED_KEY, (whole, name: string) => {
    const literal = constants.get(name);
    if (literal === undefined) return whole;
    rewritten++;
    return `${literal}:`;
  });
  return { code, rewritten };
}

const NAMED_ZOD_IMPORT = /^import \{([^}]*)\} from (['"])zod\2;?$/gm;

/** `import { z, ZodError } from 'zod'` → `import * as z from 'zod'; import { ZodError } from 'zod';` */
export function namespaceZodImports(source: string): { code: string; rewritten: number } {
  let rewritten = 0;
  const code = source.replace(NAMED_ZOD_IMPORT, (whole, names: string, quote: string) => {
    const list = names.split(',').map((n) => n.trim()).filter(Boolean);
    if (!list.includes('z')) return whole;
    rewritten++;
    const rest = list.filter((n) => n !== 'z');
    const from = `${quote}zod${quote}`;
    return `import * as z from ${from};${rest.length > 0 ? ` import { ${rest.join(', ')} } from ${from};` : ''}`;
  });
  return { code, rewritten };
}

/** The plugins, and the counts they fill in while esbuild runs. */
export function shakingPlugins(): { plugins: Plugin[]; counts: RewriteCounts } {
  const counts: RewriteCounts = { schemaKeys: 0, zodImports: 0 };
  const plugins: Plugin[] = [
    {
      name: 'loxiha-literal-schema-keys',
      setup(build) {
        build.onLoad({ filter: SCHEMA_MODULE }, async (args) => {
          const { code, rewritten } = literalizeSchemaKeys(await readFile(args.path, 'utf8'));
          counts.schemaKeys += rewritten;
          return { contents: code, loader: 'js' };
        });
      },
    },
    {
      name: 'loxiha-namespace-zod-imports',
      setup(build) {
        // Powertools is where the pattern lives; other packages are left for esbuild to read itself.
        build.onLoad({ filter: /[\\/]node_modules[\\/]@aws-lambda-powertools[\\/].*\.js$/ }, async (args) => {
          const source = await readFile(args.path, 'utf8');
          if (!source.includes('zod')) return undefined;
          const { code, rewritten } = namespaceZodImports(source);
          if (rewritten === 0) return undefined;
          counts.zodImports += rewritten;
          return { contents: code, loader: 'js' };
        });
      },
    },
  ];
  return { plugins, counts };
}
