import { describe, expect, it } from 'vitest';
import { literalizeSchemaKeys, namespaceZodImports } from '../../../lib/bundling/shaking-plugins.ts';

describe('literalizeSchemaKeys', () => {
  it('replaces computed keys naming string constants by the literal, and nothing else', () => {
    const src = [
      'const _xN = "xmlName";',
      'const _q = "say \\"hi\\"";',
      'const n0 = "com.amazonaws.ec2";',
      'export var A$ = [3, n0, "A", 0, [_xN], [[0, { [_xN]: `A`, [_q]: 1, [other]: 2 }]]];',
    ].join('\n');
    const { code, rewritten } = literalizeSchemaKeys(src);
    expect(rewritten).toBe(2);
    expect(code).toContain('{ "xmlName": `A`, "say \\"hi\\"": 1, [other]: 2 }');
    // The constants and their other uses are untouched.
    expect(code).toContain('[_xN], [[0,');
    // Same values at run time.
    const run = (js: string) => new Function(`const other = "o"; ${js.replace(/export var/g, 'var')}; return A$;`)();
    expect(run(code)).toEqual(run(src));
  });

  it('leaves a module without computed keys as it was', () => {
    const src = 'const _a = "x";\nexport var B$ = [3, _a];';
    expect(literalizeSchemaKeys(src)).toEqual({ code: src, rewritten: 0 });
  });
});

describe('namespaceZodImports', () => {
  it('turns the z binding into a namespace import and keeps the other names', () => {
    const { code, rewritten } = namespaceZodImports("import { ZodError, z } from 'zod';\nconst s = z.string();");
    expect(rewritten).toBe(1);
    expect(code).toBe("import * as z from 'zod'; import { ZodError } from 'zod';\nconst s = z.string();");
  });

  it('rewrites a lone z import', () => {
    expect(namespaceZodImports('import { z } from "zod";').code).toBe('import * as z from "zod";');
  });

  it('leaves imports without z and imports from other modules alone', () => {
    const src = "import { ZodError } from 'zod';\nimport { z } from 'zod/mini';\nimport { z as y } from 'zod';";
    expect(namespaceZodImports(src)).toEqual({ code: src, rewritten: 0 });
  });
});
