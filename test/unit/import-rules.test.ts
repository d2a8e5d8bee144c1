// Keeps the folder import rules of ARCHITECTURE.md: each src folder may import only the
// folders listed for it, and other folders only through their public face (index.ts).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const src = join(root, 'src');

const allowed: Record<string, string[]> = {
  api: [],
  core: ['api'],
  apiserver: ['api', 'core'],
  controller: ['api', 'core'],
  'node-agent': ['api', 'core', 'runtime'],
  runtime: ['core'],
  sources: ['api', 'core', '*'],
  cli: ['api', 'core', '*'],
  bin: ['api', 'core', 'cli', '*'],
};
/** Files of core the runtime may use: nothing that knows Kubernetes. */
const runtimeCoreFiles = new Set(['errors', 'logger', 'revert']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    out.push((m[1] ?? m[2])!);
  }
  return out;
}

function violations(src: string): string[] {
  const problems: string[] = [];
  for (const file of tsFiles(src)) {
    const folder = relative(src, file).split('/')[0]!;
    const rules = allowed[folder];
    if (!rules) {
      problems.push(`${relative(src, file)}: folder src/${folder} has no import rule in ARCHITECTURE.md`);
      continue;
    }
    for (const spec of importsOf(file)) {
      if (folder === 'runtime' && spec === '@kubernetes/client-node') problems.push(`${relative(src, file)}: runtime must not import ${spec}`);
      if (!spec.startsWith('.')) continue;
      const target = relative(src, resolve(dirname(file), spec));
      const targetFolder = target.split('/')[0]!;
      if (targetFolder === folder) continue;
      const via = target.slice(targetFolder.length + 1).replace(/\.js$/, '');
      const ok =
        rules.includes(targetFolder) ||
        (rules.includes('*') && via === 'index');
      if (!ok) problems.push(`${relative(src, file)}: src/${folder} may not import ${spec}`);
      if (folder === 'runtime' && targetFolder === 'core' && !runtimeCoreFiles.has(via)) {
        problems.push(`${relative(src, file)}: runtime may use only core's errors, logger and revert, not ${spec}`);
      }
    }
  }
  return problems;
}

test('src folders import only what ARCHITECTURE.md allows', () => {
  assert.deepEqual(violations(src), []);
});

test('the rule checker catches forbidden imports', () => {
  // Guard against a checker that passes whatever the code does: a tree with known violations.
  const dir = mkdtempSync(join(tmpdir(), 'kvz-imports-'));
  try {
    const write = (path: string, text: string) => {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    write('api/types.ts', 'export const x = 1;\n');
    write('runtime/a.ts', "import { x } from '../api/types.js';\nimport * as k from '@kubernetes/client-node';\n");
    write('cli/b.ts', "import { y } from '../runtime/runc.js';\nimport { z } from '../runtime/index.js';\n");
    const found = violations(dir);
    assert.equal(found.length, 3, found.join('\n'));
    assert.ok(found.some((v) => v.includes('runtime/a.ts') && v.includes('../api/types.js')));
    assert.ok(found.some((v) => v.includes('@kubernetes/client-node')));
    assert.ok(found.some((v) => v.includes('cli/b.ts') && v.includes('runc.js')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
