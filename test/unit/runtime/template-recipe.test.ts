// Template recipes without root or binaries: digests, init profiles, apt sources, debootstrap
// arguments and progress, archive formats, and the preparation of fixture trees in a temp dir.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync, existsSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { STOP_SIGNAL_ANNOTATION, buildOciSpec, type OciSpecInput } from '../../../src/runtime/oci-spec.js';
import { compressionFromMagic, tarballPath } from '../../../src/runtime/template-archive.js';
import { DebootstrapProgress, debootstrapArgs, mirrorFromAptSources, nodeMirror } from '../../../src/runtime/template-debootstrap.js';
import { cleanTree, detectInit, prepareTree, resolveInTree, vzInittab } from '../../../src/runtime/template-prepare.js';
import { canonicalRecipe, initProfile, templateDigest, type TemplateRecipe } from '../../../src/runtime/template-recipe.js';

const tmp = mkdtempSync(join(tmpdir(), 'kvz-tpl-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const deb = (over: Partial<Extract<TemplateRecipe['source'], { kind: 'debootstrap' }>> = {}): TemplateRecipe => ({
  source: { kind: 'debootstrap', suite: 'bookworm', include: ['systemd-sysv', 'dbus'], ...over },
});

test('digest: the same recipe gives the same digest; order, duplicates, defaults and the mirror do not matter', () => {
  const a = templateDigest(deb());
  assert.match(a, /^[0-9a-f]{64}$/);
  assert.equal(templateDigest(deb()), a);
  assert.equal(templateDigest(deb({ include: ['dbus', 'systemd-sysv', 'dbus'] })), a);
  assert.equal(templateDigest(deb({ variant: 'minbase', components: ['main'] })), a);
  assert.equal(templateDigest(deb({ mirror: 'http://mirror.example/debian' })), a, 'the mirror is transport, not content');
  assert.equal(templateDigest({ ...deb(), init: { flavor: 'auto' } }), a);
});

test('digest: anything that changes the tree changes it', () => {
  const a = templateDigest(deb());
  const others = [
    templateDigest(deb({ suite: 'trixie' })),
    templateDigest(deb({ include: ['systemd-sysv'] })),
    templateDigest(deb({ variant: 'buildd' })),
    templateDigest(deb({ exclude: ['e2fsprogs'] })),
    templateDigest({ ...deb(), postInstall: 'echo hi' }),
    templateDigest({ ...deb(), preInstall: 'echo hi' }),
    templateDigest({ ...deb(), init: { stopSignal: 'TERM' } }),
    templateDigest(deb(), { extra: 'x' }),
  ];
  assert.equal(new Set([a, ...others]).size, others.length + 1);
  // Inputs are the content of what a recipe reads: another busybox binary, another tarball.
  const bb: TemplateRecipe = { source: { kind: 'busybox' } };
  assert.notEqual(templateDigest(bb, { busybox: 'aa' }), templateDigest(bb, { busybox: 'bb' }));
  const tb = (url: string): TemplateRecipe => ({ source: { kind: 'tarball', url } });
  assert.equal(templateDigest(tb('/a/x.tar'), { tarball: 'h' }), templateDigest(tb('/b/y.tar'), { tarball: 'h' }), 'a moved file is the same template');
  assert.deepEqual(canonicalRecipe(tb('/a/x.tar')), { source: { kind: 'tarball' } });
});

test('init profiles: systemd stops with 37 and container=oci, sysvinit with PWR, others TERM; overrides win', () => {
  assert.deepEqual(initProfile('systemd'), { flavor: 'systemd', command: ['/sbin/init'], env: ['container=oci'], stopSignal: '37' });
  assert.equal(initProfile('sysvinit').stopSignal, 'PWR');
  assert.equal(initProfile('busybox').stopSignal, 'TERM');
  assert.equal(initProfile('other').stopSignal, 'TERM');
  assert.deepEqual(initProfile('other', { command: ['/usr/bin/runit-init'], stopSignal: 'CONT' }).command, ['/usr/bin/runit-init']);
  assert.equal(initProfile('other', { stopSignal: 'CONT' }).stopSignal, 'CONT');
});

test('mirror: deb822 and one-line apt sources; security and updates archives are skipped', async () => {
  const deb822 = `Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
`;
  assert.equal(mirrorFromAptSources(deb822), 'http://mirror.example/debian');
  const oneLine = `# deb http://old.example/debian bookworm main
deb http://security.example/debian-security bookworm-security main
deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib
`;
  assert.equal(mirrorFromAptSources(oneLine), 'http://one.example/debian');
  assert.equal(mirrorFromAptSources('deb http://x.example/debian-security bookworm-security main\n'), undefined);
  const f = join(tmp, 'sources.list');
  writeFileSync(f, oneLine);
  assert.equal(await nodeMirror([join(tmp, 'missing.sources'), f]), 'http://one.example/debian');
  await assert.rejects(nodeMirror([join(tmp, 'missing.sources')]), /spec\.debootstrap\.mirror/);
});

test('debootstrap arguments', () => {
  assert.deepEqual(debootstrapArgs({ kind: 'debootstrap', suite: 'bookworm', include: ['a', 'b'], exclude: ['c'] }, '/t', 'http://m.example/debian'), [
    '--variant=minbase', '--components=main', '--include=a,b', '--exclude=c', 'bookworm', '/t', 'http://m.example/debian',
  ]);
  assert.deepEqual(debootstrapArgs({ kind: 'debootstrap', suite: 'trixie', variant: 'default', components: ['main', 'contrib'] }, '/t', 'm'), ['--components=main,contrib', 'trixie', '/t', 'm']);
});

test('debootstrap progress: stages in order, percent never goes back, ends at 85', () => {
  const p = new DebootstrapProgress();
  const lines = [
    'I: Retrieving InRelease',
    'I: Checking Release signature',
    'I: Resolving dependencies of required packages...',
    ...Array.from({ length: 100 }, (_, i) => `I: Retrieving pkg${i} 1.0`),
    ...Array.from({ length: 100 }, (_, i) => `I: Validating pkg${i} 1.0`),
    'I: Chosen extractor for .deb packages: dpkg-deb',
    ...Array.from({ length: 80 }, (_, i) => `I: Extracting pkg${i}...`),
    'I: Installing core packages...',
    ...Array.from({ length: 100 }, (_, i) => `I: Unpacking pkg${i}...`),
    ...Array.from({ length: 100 }, (_, i) => `I: Configuring pkg${i}...`),
    'W: something unrelated',
    'I: Base system installed successfully.',
  ];
  const seen = lines.map((l) => p.line(l)).filter((x) => x !== undefined);
  const percents = seen.map((s) => s.percent);
  assert.deepEqual([...percents].sort((a, b) => a - b), percents, 'monotonic');
  assert.equal(seen[0]?.stage, 'Downloading');
  assert.equal(seen.at(-1)?.stage, 'Installing');
  assert.equal(seen.at(-1)?.percent, 85);
  const downloadEnd = seen.filter((s) => s.stage === 'Downloading').at(-1)?.percent ?? 0;
  assert.ok(downloadEnd >= 35 && downloadEnd <= 45, `download ends near 45, got ${downloadEnd}`);
  assert.ok(seen.some((s) => s.stage === 'Installing' && s.percent > 60 && s.percent < 85), 'configuring moves the bar');
});

test('archives: compression from magic bytes; paths and file URLs only', () => {
  const pad = (b: number[]) => Buffer.from([...b, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(compressionFromMagic(pad([0x1f, 0x8b])), 'gzip');
  assert.equal(compressionFromMagic(pad([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), 'xz');
  assert.equal(compressionFromMagic(pad([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  assert.equal(compressionFromMagic(pad([0x42, 0x5a, 0x68])), 'bzip2');
  assert.equal(compressionFromMagic(pad([0x2e, 0x2f, 0x00])), 'none');
  assert.equal(tarballPath('file:///srv/x.tar.xz'), '/srv/x.tar.xz');
  assert.equal(tarballPath('/srv/x.tar'), '/srv/x.tar');
  assert.throws(() => tarballPath('https://example.com/x.tar'), /absolute path or a file:\/\/ URL/);
  assert.throws(() => tarballPath('x.tar'), /absolute path/);
});

test('inittab for a VE: gettys commented out, powerwait halts', () => {
  const before = `id:2:initdefault:
si::sysinit:/etc/init.d/rcS
pf::powerwait:/etc/init.d/powerfail start
1:2345:respawn:/sbin/getty --noclear 38400 tty1
2:23:respawn:/sbin/getty 38400 tty2
`;
  const after = vzInittab(before);
  assert.match(after, /^#1:2345:respawn:\/sbin\/getty/m);
  assert.match(after, /^#2:23:respawn/m);
  assert.match(after, /^pf::powerwait:\/sbin\/shutdown -t1 -a -h now$/m);
  assert.doesNotMatch(after, /powerfail start/);
  assert.match(after, /^si::sysinit/m);
  assert.match(vzInittab('id:2:initdefault:\n'), /^pf::powerwait:/m, 'added when missing');
});

function tree(name: string): string {
  const root = join(tmp, name);
  for (const d of ['etc', 'usr/sbin', 'usr/lib/systemd', 'usr/share/zoneinfo/Etc', 'etc/rc0.d', 'etc/rc6.d', 'var/lib/apt/lists/partial', 'var/cache/apt/archives/partial', 'var/lib/dbus']) {
    mkdirSync(join(root, d), { recursive: true });
  }
  symlinkSync('usr/sbin', join(root, 'sbin'));
  symlinkSync('usr/lib', join(root, 'lib'));
  writeFileSync(join(root, 'etc/hostname'), 'buildhost\n');
  writeFileSync(join(root, 'etc/resolv.conf'), 'nameserver 192.0.2.1\n');
  writeFileSync(join(root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  writeFileSync(join(root, 'var/lib/dbus/machine-id'), '0123\n');
  writeFileSync(join(root, 'var/lib/apt/lists/deb.example_dists_bookworm_InRelease'), 'x');
  writeFileSync(join(root, 'var/lib/apt/lists/lock'), '');
  writeFileSync(join(root, 'var/cache/apt/archives/foo_1.0_amd64.deb'), 'x');
  writeFileSync(join(root, 'var/cache/apt/pkgcache.bin'), 'x');
  writeFileSync(join(root, 'usr/share/zoneinfo/Etc/UTC'), 'TZif-utc');
  symlinkSync('/usr/share/zoneinfo/Etc/UTC', join(root, 'etc/localtime'));
  return root;
}

test('resolveInTree follows absolute links inside the tree, never on the host', async () => {
  const root = tree('resolve');
  writeFileSync(join(root, 'usr/lib/systemd/systemd'), '\x7fELF');
  symlinkSync('/lib/systemd/systemd', join(root, 'usr/sbin/init'));
  assert.equal(await resolveInTree(root, '/sbin/init'), join(root, 'usr/lib/systemd/systemd'));
  symlinkSync('/etc/passwd', join(root, 'usr/sbin/escape'));
  assert.equal(await resolveInTree(root, '/sbin/escape'), undefined, 'the host /etc/passwd is not the tree\'s');
  assert.equal(await detectInit(root), 'systemd');
});

test('systemd tree: checkpoint preparation and hygiene', async () => {
  const root = tree('systemd');
  writeFileSync(join(root, 'usr/lib/systemd/systemd'), '\x7fELF');
  symlinkSync('/lib/systemd/systemd', join(root, 'usr/sbin/init'));
  const profile = await prepareTree(root, { source: { kind: 'debootstrap', suite: 'bookworm' } });
  await cleanTree(root);
  assert.equal(profile.flavor, 'systemd');
  assert.equal(profile.stopSignal, '37');
  assert.match(readFileSync(join(root, 'etc/systemd/system/service.d/10-kubevz-checkpoint.conf'), 'utf8'), /^ProtectHostname=no$/m);
  assert.equal(readlinkSync(join(root, 'etc/systemd/system/dev-hugepages.mount')), '/dev/null');
  assert.equal(readlinkSync(join(root, 'etc/systemd/system/sys-fs-fuse-connections.mount')), '/dev/null');
  assert.ok(lstatSync(join(root, 'etc/localtime')).isFile(), '/etc/localtime is a regular file');
  assert.equal(readFileSync(join(root, 'etc/localtime'), 'utf8'), 'TZif-utc');
  assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'localhost\n');
  assert.equal(readFileSync(join(root, 'etc/resolv.conf'), 'utf8'), '');
  assert.equal(readFileSync(join(root, 'etc/machine-id'), 'utf8'), '');
  assert.ok(!existsSync(join(root, 'var/lib/dbus/machine-id')));
  assert.ok(!existsSync(join(root, 'var/lib/apt/lists/deb.example_dists_bookworm_InRelease')));
  assert.ok(existsSync(join(root, 'var/lib/apt/lists/partial')) && existsSync(join(root, 'var/lib/apt/lists/lock')));
  assert.ok(!existsSync(join(root, 'var/cache/apt/archives/foo_1.0_amd64.deb')));
  assert.ok(existsSync(join(root, 'var/cache/apt/archives/partial')));
  assert.ok(!existsSync(join(root, 'var/cache/apt/pkgcache.bin')));
});

test('sysvinit tree: gettys off, powerwait, no umountroot', async () => {
  const root = tree('sysv');
  writeFileSync(join(root, 'usr/sbin/init'), '\x7fELF binary');
  writeFileSync(join(root, 'etc/inittab'), '1:2345:respawn:/sbin/getty 38400 tty1\n');
  symlinkSync('../init.d/umountroot', join(root, 'etc/rc0.d/S05umountroot'));
  symlinkSync('../init.d/halt', join(root, 'etc/rc0.d/S06halt'));
  symlinkSync('../init.d/umountroot', join(root, 'etc/rc6.d/S05umountroot'));
  const profile = await prepareTree(root, { source: { kind: 'tarball', url: '/x.tar' } });
  assert.equal(profile.flavor, 'sysvinit');
  assert.equal(profile.stopSignal, 'PWR');
  assert.match(readFileSync(join(root, 'etc/inittab'), 'utf8'), /^#1:2345:respawn/m);
  assert.ok(!existsSync(join(root, 'etc/rc0.d/S05umountroot')) && !existsSync(join(root, 'etc/rc6.d/S05umountroot')));
  assert.ok(lstatSync(join(root, 'etc/rc0.d/S06halt')).isSymbolicLink(), 'other links stay');
});

test('a tree without an init is refused with what to do; an explicit command is honoured', async () => {
  const root = tree('noinit');
  await assert.rejects(prepareTree(root, { source: { kind: 'debootstrap', suite: 'bookworm' } }), /systemd-sysv or sysvinit-core/);
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  writeFileSync(join(root, 'usr/bin/myinit'), '#!/bin/sh\n');
  const p = await prepareTree(root, { source: { kind: 'tarball', url: '/x' }, init: { command: ['/usr/bin/myinit'] } });
  assert.deepEqual(p, { flavor: 'other', command: ['/usr/bin/myinit'], env: [], stopSignal: 'TERM' });
});

test('the bundle follows the template\'s init: systemd gets its mounts, env and stop signal; others keep the defaults', () => {
  const base: OciSpecInput = {
    config: { uid: 'u1', name: 'default/a', hostname: 'a', template: 't', addresses: [], limits: {} },
    rootfs: '/r',
    netnsPath: '/run/netns/x',
    cgroupsPath: '/kubevz/x',
    init: ['/sbin/init'],
    host: { boundingCaps: ['CAP_SYS_ADMIN'], nofileHard: 1024 },
  };
  const sd = initProfile('systemd');
  const spec = buildOciSpec({ ...base, boot: { env: sd.env, stopSignal: sd.stopSignal, systemd: { legacyCgroup: true } } });
  assert.ok(spec.process.env.includes('container=oci'));
  assert.ok(!spec.process.env.includes('container=kubevz'), 'replaced, not duplicated');
  assert.ok(spec.process.env.some((e) => e.startsWith('SYSTEMD_PROC_CMDLINE=') && e.includes('systemd.unified_cgroup_hierarchy=0')));
  assert.equal(spec.annotations[STOP_SIGNAL_ANNOTATION], '37');
  assert.ok(spec.mounts.find((m) => m.destination === '/sys/fs/cgroup')?.options.includes('rw'));
  assert.ok(spec.mounts.some((m) => m.destination === '/run/lock' && m.type === 'tmpfs'));
  assert.ok(spec.mounts.some((m) => m.destination === '/tmp' && m.type === 'tmpfs'));
  assert.ok(spec.linux.maskedPaths.includes('/sys/fs/cgroup/unified'));

  const v2 = buildOciSpec({ ...base, boot: { env: sd.env, stopSignal: '37', systemd: { legacyCgroup: false } } });
  assert.ok(!v2.process.env.some((e) => e.startsWith('SYSTEMD_PROC_CMDLINE=')), 'legacy mode only on cgroup v1 hosts');

  const sysv = buildOciSpec({ ...base, boot: { env: [], stopSignal: 'PWR' } });
  assert.equal(sysv.annotations[STOP_SIGNAL_ANNOTATION], 'PWR');
  assert.ok(sysv.mounts.find((m) => m.destination === '/sys/fs/cgroup')?.options.includes('ro'));
  assert.ok(!sysv.mounts.some((m) => m.destination === '/tmp'));
});
