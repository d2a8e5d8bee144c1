import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIpAddrJson } from '../../../src/runtime/netns.js';
import { parseMountPoints } from '../../../src/runtime/rootfs.js';
import { lastRuncError } from '../../../src/runtime/runc.js';
import { busyboxRecipe, recipeDigest, INIT_SCRIPT } from '../../../src/runtime/template-busybox.js';

test('ip -j addr: IPv4 CIDRs of non-loopback links', () => {
  const json = JSON.stringify([
    { ifname: 'lo', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }] },
    { ifname: 'eth0', addr_info: [{ family: 'inet', local: '10.213.0.10', prefixlen: 24 }, { family: 'inet6', local: 'fe80::1', prefixlen: 64 }] },
  ]);
  assert.deepEqual(parseIpAddrJson(json), ['10.213.0.10/24']);
  assert.deepEqual(parseIpAddrJson(''), []);
});

test('mountinfo mount points with octal escapes', () => {
  const text = '36 35 98:0 / /mnt/with\\040space rw - ext3 /dev/root rw\n37 35 0:5 / /proc rw - proc proc rw\n';
  assert.deepEqual(parseMountPoints(text), ['/mnt/with space', '/proc']);
});

test('runc json log: the last error message', () => {
  const log = '{"level":"info","msg":"x"}\n{"level":"error","msg":"container_linux.go: starting container process caused: exec: \\"/sbin/init\\": no such file"}\n';
  assert.match(lastRuncError(log), /no such file/);
  assert.equal(lastRuncError('plain text failure\n'), 'plain text failure');
});

test('template digest follows the recipe and the binary', () => {
  const r = busyboxRecipe();
  assert.equal(recipeDigest(r, 'aa'), recipeDigest(busyboxRecipe(), 'aa'));
  assert.notEqual(recipeDigest(r, 'aa'), recipeDigest(r, 'bb'));
  assert.notEqual(recipeDigest(r, 'aa'), recipeDigest({ ...r, version: r.version + 1 }, 'aa'));
  assert.ok(r.files.some((f) => f.path === 'sbin/init' && f.content === INIT_SCRIPT));
  assert.match(INIT_SCRIPT, /trap shutdown TERM INT PWR/);
});
