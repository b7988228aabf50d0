/**
 * Maintenance: compares the committed field-name extract (test/agent/fixtures/spec-fields.json),
 * which the tests check the API's answers against, with LoxiLB's full swagger file.
 *   node scripts/check-swagger-fields.ts PATH/TO/loxilb-swagger.yml [--write]
 * Prints the differences and exits 1 when there are any; --write updates the extract.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [specPath, flag] = process.argv.slice(2);
if (!specPath) {
  process.stderr.write('usage: node scripts/check-swagger-fields.ts PATH/TO/loxilb-swagger.yml [--write]\n');
  process.exit(2);
}
const extractPath = join(import.meta.dirname, '../test/agent/fixtures/spec-fields.json');
const fields = JSON.parse(readFileSync(extractPath, 'utf8')) as Record<string, string[]>;
const spec = readFileSync(specPath, 'utf8');

/** Every key named inside a definition of the spec (properties at any depth). */
export function keysInSpec(text: string, definition: string): string[] {
  const start = text.indexOf(`\n  ${definition}:\n`);
  if (start < 0) throw new Error(`no definition ${definition} in ${specPath}`);
  const rest = text.slice(start + definition.length + 5);
  const end = rest.search(/\n  [A-Za-z]+:\n/);
  const block = end < 0 ? rest : rest.slice(0, end);
  return [...new Set([...block.matchAll(/^\s+([A-Za-z][\w-]*):\s*$/gm)].map((m) => m[1]!))].sort();
}

let differences = 0;
const next: Record<string, string[]> = {};
for (const [definition, known] of Object.entries(fields)) {
  const now = keysInSpec(spec, definition);
  next[definition] = now;
  const added = now.filter((k) => !known.includes(k));
  const removed = known.filter((k) => !now.includes(k));
  if (added.length || removed.length) {
    differences++;
    process.stdout.write(`${definition}: ${added.length ? `new in the spec: ${added.join(', ')}` : ''}${added.length && removed.length ? '; ' : ''}${removed.length ? `gone from the spec: ${removed.join(', ')}` : ''}\n`);
  }
}
if (flag === '--write') writeFileSync(extractPath, `${JSON.stringify(next, null, 2)}\n`);
process.stdout.write(differences ? `${differences} definition(s) differ\n` : 'the extract matches the spec\n');
process.exit(differences && flag !== '--write' ? 1 : 0);
