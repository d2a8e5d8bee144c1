// The shipped example manifests: every document validates against its CRD without pruning, the
// VETemplates turn into runtime recipes, and the Debian ones carry the init they promise.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { compileCrd, loadCrds, type VETemplate } from '../../../src/api/index.js';
import { recipeFromSpec } from '../../../src/node-agent/template-reconciler.js';
import { templateDigest } from '../../../src/runtime/index.js';

const dir = fileURLToPath(new URL('../../../../manifests/examples/', import.meta.url));
const validators = new Map(loadCrds().map((c) => [c.spec.names.kind, compileCrd(c).get('v1alpha1')!]));
const docs = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => ({ file: f, obj: d.toJS() as { kind: string; metadata: { name: string }; spec: unknown } })));
const templates = docs.filter((d) => d.obj.kind === 'VETemplate').map((d) => d.obj as unknown as VETemplate);

test('every example validates against its CRD, nothing pruned', () => {
  assert.ok(docs.length >= 6);
  for (const { file, obj } of docs) {
    const v = validators.get(obj.kind);
    assert.ok(v, `${file}: kind ${obj.kind} has a CRD`);
    const res = v(obj);
    assert.deepEqual(res.errors, [], `${file}: ${JSON.stringify(res.errors)}`);
    assert.deepEqual(res.pruned, [], `${file}: unknown fields`);
  }
});

test('example templates: Debian 12 systemd and sysvinit, busybox; each VE names a declared or built-in template', () => {
  const byName = new Map(templates.map((t) => [t.metadata.name, t]));
  assert.deepEqual([...byName.keys()].sort(), ['busybox', 'busybox-httpd', 'debian-12-systemd', 'debian-12-sysvinit', 'debian-12-web']);
  assert.ok(byName.get('debian-12-systemd')?.spec.debootstrap?.include?.includes('systemd-sysv'));
  assert.ok(byName.get('debian-12-sysvinit')?.spec.debootstrap?.include?.includes('sysvinit-core'));
  assert.equal(byName.get('debian-12-systemd')?.spec.debootstrap?.mirror, undefined, 'the node\'s own mirror; no host name in the repository');
  const digests = new Set(templates.map((t) => templateDigest(recipeFromSpec(t.metadata.name, t.spec))));
  assert.equal(digests.size, templates.length);
  for (const { obj } of docs.filter((d) => d.obj.kind === 'VirtualEnvironment')) {
    const tpl = (obj.spec as { template: string }).template;
    assert.ok(byName.has(tpl) || tpl === 'busybox', `${obj.metadata.name} uses ${tpl}`);
  }
});

test('the Debian web example carries what test/integration/examples-debian.test.ts exercises: systemd, lighttpd, iptables, a page, a VE with a memory limit', () => {
  const web = templates.find((t) => t.metadata.name === 'debian-12-web');
  assert.ok(web, 'vet-debian-12-web.yaml declares debian-12-web');
  for (const pkg of ['systemd-sysv', 'lighttpd', 'iptables', 'procps']) assert.ok(web.spec.debootstrap?.include?.includes(pkg), `debian-12-web includes ${pkg}`);
  assert.match(web.spec.postInstall ?? '', /> \/var\/www\/html\/index\.html/, 'it writes the page the VE serves');
  assert.equal(web.spec.debootstrap?.mirror, undefined, 'the node\'s own mirror');
  const ve = docs.find((d) => d.obj.kind === 'VirtualEnvironment' && (d.obj.spec as { template: string }).template === 'debian-12-web');
  assert.ok(ve, 'a shipped VE uses debian-12-web');
  const spec = ve.obj.spec as { powerState?: string; resources?: { memory?: { limit?: string } }; network?: { addresses?: string[] } };
  assert.equal(spec.powerState, 'Stopped', 'applying the examples starts no debootstrap');
  assert.ok(spec.resources?.memory?.limit, 'a memory limit (free -m inside shows it)');
  assert.equal(spec.network?.addresses?.length, 1);
});
