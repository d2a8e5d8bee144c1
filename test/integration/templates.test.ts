// Template caches against the real host (root): the built-in busybox, a busybox recipe whose
// init starts a web server, tarball imports in every supported compression, failed builds that
// leave nothing, and one Debian 12 systemd template from the node's own mirror that boots to
// `running` and serves HTTP to the host. Everything lives under a temp state dir with unique
// bridge and VE names; `after` removes it all.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, teardownNode, type TemplateProgress, type TemplateRecipe, type VEConfig, type VERuntime } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { execCapture } from '../helpers/ve-host.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'tar', 'zstd', 'xz', 'gzip', 'unshare'] };
const debPrereqs = { root: true, binaries: [...prereqs.binaries, 'debootstrap', 'criu'] };
const skip = missingPrereqs(prereqs).length > 0;

const suffix = uniqueSuffix();
const bridge = `kvzv${suffix}`.slice(0, 15);
const net = 100 + ((process.pid + 37) % 100);
const subnet = `10.213.${net}.0/24`;
const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-tpl-'));
const scratch = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-tpl-files-'));
const templatesDir = join(stateDir, 'templates');
const stop = { timeoutMs: 10_000 };
const uids: string[] = [];
let rt: VERuntime;

before(() => {
  if (skip) return;
  rt = createRuntime({ stateDir, bridge: { name: bridge, subnet }, log: silentLogger });
});

after(async () => {
  if (skip) return;
  for (const uid of uids) await rt.destroy(uid, stop).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

function guard(t: TestContext, p = prereqs): boolean {
  return requirePrereqs(t, p);
}

function veConfig(template: string, host: number): VEConfig {
  const uid = randomUUID();
  uids.push(uid);
  return { uid, name: `test/${template}-${suffix}`, hostname: `${template}-${suffix}`.slice(0, 60), template, addresses: [`10.213.${net}.${host}/24`], limits: { pids: 512 } };
}

function execOut(uid: string, argv: string[]): Promise<{ code: number; out: string }> {
  return execCapture(rt, uid, argv);
}

/** GET from the host to the VE's address (a netns this test made). */
function httpGet(address: string, timeoutMs = 2000, agent?: Agent): Promise<{ status: number; body: string; localPort?: number }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: address, port: 80, path: '/', timeout: timeoutMs, agent }, (res) => {
      const chunks: Buffer[] = [];
      const localPort = res.socket.localPort;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), localPort }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Nothing half-made: no build dirs, no tree for the name. */
function assertNoLeftovers(name: string): void {
  const entries = existsSync(templatesDir) ? readdirSync(templatesDir) : [];
  assert.deepEqual(entries.filter((e) => e.startsWith('.build-')), [], 'no build directory left');
  assert.ok(!entries.includes(name), `no cache for ${name}`);
}

test('the built-in busybox template: packed cache, tree, meta; the same recipe is unchanged', async (t) => {
  if (!guard(t)) return;
  const a = await rt.ensureTemplate('busybox');
  assert.equal(a.result, 'created');
  assert.equal(a.init.flavor, 'busybox');
  assert.equal(a.init.stopSignal, 'TERM');
  assert.match(a.digest, /^[0-9a-f]{64}$/);
  assert.ok(a.sizeBytes > 100_000 && a.unpackedBytes > a.sizeBytes, `sizes ${a.sizeBytes}/${a.unpackedBytes}`);
  assert.ok(existsSync(join(templatesDir, 'busybox', 'cache.tar.zst')));
  assert.ok(existsSync(join(a.rootfs, 'bin', 'busybox')));
  const b = await rt.ensureTemplate('busybox');
  assert.equal(b.result, 'unchanged');
  assert.equal(b.digest, a.digest);
  assert.deepEqual((await rt.listTemplates()).map((x) => x.name), ['busybox']);
  t.diagnostic(`busybox build ${a.buildMs} ms, ${a.sizeBytes} B packed, ${a.unpackedBytes} B unpacked`);
});

const httpdRecipe: TemplateRecipe = {
  source: { kind: 'busybox' },
  postInstall: `mkdir -p /srv/www
echo "busybox-httpd-${suffix}" > /srv/www/index.html
printf '#!/bin/sh\\ncase "$1" in start) httpd -p 80 -h /srv/www ;; stop) killall httpd ;; esac\\n' > /etc/init.d/S50httpd
chmod 755 /etc/init.d/S50httpd
`,
};

test('a busybox recipe with a postInstall service: the VE\'s init starts it, the host reaches it', async (t) => {
  if (!guard(t)) return;
  const progress: TemplateProgress[] = [];
  const info = await rt.ensureTemplate('bb-httpd', httpdRecipe, { onProgress: (p) => progress.push(p) });
  assert.equal(info.result, 'created');
  assert.deepEqual([...new Set(progress.map((p) => p.stage))], ['Installing', 'Preparing', 'Packing', 'Ready']);
  assert.notEqual(info.digest, (await rt.ensureTemplate('busybox')).digest, 'a script changes the digest');
  assert.equal((await rt.ensureTemplate('bb-httpd', httpdRecipe)).result, 'unchanged');
  const cfg = veConfig('bb-httpd', 21);
  await rt.ensureRunning(cfg);
  const res = await eventually('httpd', async () => httpGet(`10.213.${net}.21`), 5000);
  assert.equal(res.status, 200);
  assert.equal(res.body.trim(), `busybox-httpd-${suffix}`);
  assert.equal((await execOut(cfg.uid, ['cat', '/etc/hostname'])).out.trim(), cfg.hostname, 'the VE has its own /etc/hostname');

  await assert.rejects(rt.removeTemplate('bb-httpd'), (err: Error & { code?: string }) => err.code === 'Conflict' && err.message.includes(cfg.name));
  assert.equal(await rt.destroy(cfg.uid, stop), 'deleted');
  assert.equal(await rt.removeTemplate('bb-httpd'), 'deleted');
  assertNoLeftovers('bb-httpd');
});

test('tarball imports: .tar, .tar.gz, .tar.xz, .tar.zst give the same tree; a VE boots from one', async (t) => {
  if (!guard(t)) return;
  const src = (await rt.ensureTemplate('busybox')).rootfs;
  const files: Record<string, string> = {};
  for (const [ext, flag] of [['tar', ''], ['tar.gz', '--gzip'], ['tar.xz', '--xz'], ['tar.zst', '--zstd']] as const) {
    files[ext] = join(scratch, `rootfs.${ext}`);
    execFileSync('tar', ['--create', '--file', files[ext]!, ...(flag ? [flag] : []), '--numeric-owner', '-C', src, '.']);
  }
  const digests = new Set<string>();
  for (const [ext, file] of Object.entries(files)) {
    const name = `imp-${ext.replace('.', '-')}`;
    const info = await rt.ensureTemplate(name, { source: { kind: 'tarball', url: ext === 'tar.zst' ? `file://${file}` : file } });
    assert.equal(info.result, 'created', ext);
    assert.equal(info.init.flavor, 'busybox', `${ext}: init detected from the tree`);
    assert.equal(readFileSync(join(info.rootfs, 'etc/os-release'), 'utf8'), readFileSync(join(src, 'etc/os-release'), 'utf8'));
    digests.add(info.digest);
  }
  assert.equal(digests.size, 4, 'different bytes, different digests');
  const cfg = veConfig('imp-tar-zst', 22);
  await rt.ensureRunning(cfg);
  const r = await execOut(cfg.uid, ['cat', '/etc/os-release']);
  assert.equal(r.code, 0);
  assert.match(r.out, /kubevz busybox/);
  await rt.destroy(cfg.uid, stop);
});

test('failed builds leave nothing and say why', async (t) => {
  if (!guard(t)) return;
  const garbage = join(scratch, 'garbage.tar.gz');
  writeFileSync(garbage, Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8]));
  await assert.rejects(rt.ensureTemplate('bad-tar', { source: { kind: 'tarball', url: garbage } }), /cannot unpack template tarball .*garbage\.tar\.gz \(gzip\)/);
  assertNoLeftovers('bad-tar');

  const good = join(scratch, 'rootfs.tar');
  await assert.rejects(rt.ensureTemplate('bad-sha', { source: { kind: 'tarball', url: good, sha256: '0'.repeat(64) } }), /spec\.tarball\.sha256/);
  assertNoLeftovers('bad-sha');

  await assert.rejects(rt.ensureTemplate('bad-script', { ...httpdRecipe, postInstall: 'echo about to fail; exit 7' }), /spec\.postInstall failed \(exit 7\)[\s\S]*about to fail/);
  assertNoLeftovers('bad-script');

  await assert.rejects(rt.ensureTemplate('no-such', undefined), (err: Error & { code?: string }) => err.code === 'NotFound' && /declare a VETemplate/.test(err.message));
});

test('Debian 12 with systemd from the node\'s mirror: boots to running in a user namespace, serves HTTP, suspend/resume keeps a keep-alive connection, stops with SIGRTMIN+3', async (t) => {
  if (!guard(t, debPrereqs)) return;
  const recipe: TemplateRecipe = {
    source: { kind: 'debootstrap', suite: 'bookworm', include: ['systemd-sysv', 'dbus', 'iproute2', 'procps', 'lighttpd'] },
    postInstall: `echo "debian-web-${suffix}" > /var/www/html/index.html\n`,
  };
  const progress: TemplateProgress[] = [];
  const t0 = performance.now();
  const info = await rt.ensureTemplate('deb12-web', recipe, { onProgress: (p) => progress.push(p) });
  const buildMs = Math.round(performance.now() - t0);
  t.diagnostic(`debootstrap build ${buildMs} ms; packed ${info.sizeBytes} B, unpacked ${info.unpackedBytes} B`);
  assert.equal(info.init.flavor, 'systemd');
  assert.equal(info.init.stopSignal, '37');
  const stages = [...new Set(progress.map((p) => p.stage))];
  assert.deepEqual(stages, ['Downloading', 'Installing', 'Preparing', 'Packing', 'Ready']);
  const percents = progress.map((p) => p.percent);
  assert.deepEqual([...percents].sort((a, b) => a - b), percents, 'progress never goes back');
  // Hygiene in the shared tree.
  assert.equal(readFileSync(join(info.rootfs, 'etc/hostname'), 'utf8'), 'localhost\n');
  assert.equal(readFileSync(join(info.rootfs, 'etc/machine-id'), 'utf8'), '');
  assert.deepEqual(readdirSync(join(info.rootfs, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock'), []);
  assert.deepEqual(readdirSync(join(info.rootfs, 'var/cache/apt/archives')).filter((f) => f.endsWith('.deb')), []);

  // The default isolation: a user namespace (systemd gets its cgroup tree delegated).
  const cfg: VEConfig = veConfig('deb12-web', 23);
  const s0 = performance.now();
  await rt.ensureRunning(cfg);
  const state = await eventually('systemd to finish booting', async () => {
    const r = await execOut(cfg.uid, ['systemctl', 'is-system-running']);
    return /^(running|degraded)$/m.test(r.out) ? r.out.trim() : undefined;
  }, 30_000);
  t.diagnostic(`create → systemd ${state}: ${Math.round(performance.now() - s0)} ms`);
  const failed = await execOut(cfg.uid, ['systemctl', '--failed', '--no-legend', '--plain']);
  assert.equal(failed.out.trim(), '', 'no failed units');
  assert.equal(state, 'running');
  assert.equal((await rt.inspect(cfg.uid)).security?.userNamespace, true, 'systemd runs in a user namespace');
  assert.equal((await execOut(cfg.uid, ['systemctl', 'show', 'systemd-logind', '-p', 'ProtectHostname', '--value'])).out.trim(), 'no', 'checkpoint drop-in applies');
  assert.equal((await execOut(cfg.uid, ['hostname'])).out.trim(), cfg.hostname);
  const res = await eventually('lighttpd', async () => httpGet(`10.213.${net}.23`), 10_000);
  assert.equal(res.body.trim(), `debian-web-${suffix}`);

  // Checkpointing a full distribution (PLATFORM-NOTES "Checkpointing full distributions", ADR 004),
  // with a keep-alive HTTP connection held across it (same client port = same socket). The
  // overlay's xino=on lets CRIU resolve systemd's inotify watch on /etc/localtime; the user
  // namespace lets it read the non-root services' rlimits on a host without CAP_SYS_RESOURCE.
  // lighttpd ends a keep-alive connection idle for 5 s, which suspend + resume can take on a busy host.
  const idle = await execOut(cfg.uid, ['sh', '-c', 'echo "server.max-keep-alive-idle = 300" > /etc/lighttpd/conf-enabled/99-idle.conf && systemctl restart lighttpd']);
  assert.equal(idle.code, 0, idle.out);
  await eventually('lighttpd after its restart', async () => httpGet(`10.213.${net}.23`).catch(() => undefined), 10_000);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
  const first = await httpGet(`10.213.${net}.23`, 2000, keepAlive);
  const c0 = performance.now();
  assert.equal(await rt.suspend(cfg.uid), 'updated');
  assert.equal((await rt.inspect(cfg.uid)).state, 'suspended');
  assert.equal(await rt.resume(cfg), 'updated');
  t.diagnostic(`systemd VE suspend + resume ${Math.round(performance.now() - c0)} ms`);
  assert.equal((await execOut(cfg.uid, ['systemctl', 'is-system-running'])).out.trim(), 'running', 'systemd is still running after the restore');
  assert.equal((await execOut(cfg.uid, ['systemctl', '--failed', '--no-legend', '--plain'])).out.trim(), '', 'no failed units after the restore');
  const again = await httpGet(`10.213.${net}.23`, 5000, keepAlive);
  keepAlive.destroy();
  assert.equal(again.body.trim(), `debian-web-${suffix}`);
  assert.equal(again.localPort, first.localPort, 'the keep-alive connection is the same');

  const k0 = performance.now();
  await rt.ensureStopped(cfg.uid, stop);
  const stopMs = Math.round(performance.now() - k0);
  t.diagnostic(`graceful stop ${stopMs} ms`);
  assert.ok(stopMs < stop.timeoutMs - 1000, 'systemd shut down on its signal, not by SIGKILL after the timeout');
  await rt.destroy(cfg.uid, stop);
  assert.equal((await rt.ensureTemplate('deb12-web', recipe)).result, 'unchanged');
});
