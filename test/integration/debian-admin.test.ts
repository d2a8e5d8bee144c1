// A full distribution administered by its own root, against the real host (root): the shipped
// Debian 12 sysvinit example template (manifests/examples/vet-debian-12-sysvinit.yaml, built from
// the node's mirror) runs in its own user namespace; inside, root adds users and groups, installs
// a package with dpkg, sets an iptables rule and a route that affect only the VE, mounts a tmpfs;
// exec passes stdin and exit codes through; sysvinit stops on SIGPWR, and an init that ignores its
// stop signal is killed after the stop timeout.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, test, type TestContext } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { VETemplateSpec } from '../../src/api/index.js';
import { recipeFromSpec } from '../../src/node-agent/template-reconciler.js';
import type { VEConfig } from '../../src/runtime/index.js';
import { pidGone } from '../../src/runtime/pid.js';
import { missingPrereqs, requirePrereqs } from '../helpers/prereq.js';
import { makeVEHost, type VEHost } from '../helpers/ve-host.js';

const execFileP = promisify(execFile);
const prereqs = { root: true, binaries: ['runc', 'ip', 'debootstrap', 'zstd', 'ping', 'iptables'] };
const skip = missingPrereqs(prereqs).length > 0;
const repo = join(import.meta.dirname, '..', '..', '..');
const example = parseYaml(readFileSync(join(repo, 'manifests/examples/vet-debian-12-sysvinit.yaml'), 'utf8')) as { metadata: { name: string }; spec: VETemplateSpec };

let h: VEHost;
let ve: VEConfig;
let address = '';

before(async () => {
  if (skip) return;
  h = makeVEHost('adm', 223);
  await h.rt.ensureTemplate(example.metadata.name, recipeFromSpec(example.metadata.name, example.spec));
  ve = h.config('deb-admin', { template: example.metadata.name, limits: { pids: 512, memoryBytes: 256 * 1024 * 1024 } });
  address = ve.addresses[0]!.split('/')[0]!;
  await h.rt.ensureRunning(ve);
});

after(async () => {
  if (skip) return;
  await h.close();
});

function guard(t: TestContext): boolean {
  return requirePrereqs(t, prereqs);
}

async function sh(script: string): Promise<{ code: number; out: string }> {
  return h.execOut(ve.uid, ['sh', '-c', script]);
}

async function pingable(): Promise<boolean> {
  return execFileP('ping', ['-c', '1', '-W', '1', address]).then(() => true, () => false);
}

test('the sysvinit VE boots in its own user namespace: init is sysvinit, runlevel 2', async (t) => {
  if (!guard(t)) return;
  assert.equal((await h.rt.inspect(ve.uid)).security?.userNamespace, true);
  // sysvinit shows its runlevel in its command line once it has entered it.
  const deadline = Date.now() + 30_000;
  let cmdline = '';
  while (Date.now() < deadline && !/\[2\]/.test(cmdline)) {
    cmdline = (await sh('tr "\\0" " " < /proc/1/cmdline')).out;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(cmdline, /^init \[2\]/, cmdline);
});

test('root adds a group and a user; the user\'s files belong to the VE\'s id range on the host', async (t) => {
  if (!guard(t)) return;
  const r = await sh('groupadd webadmins && useradd -m -G webadmins -s /bin/sh alice && id -u alice && id -nG alice && su alice -c "touch ~/made-by-alice; id -un"');
  assert.equal(r.code, 0, r.out);
  const [uid, groups, whoami] = r.out.trim().split('\n');
  assert.equal(uid, '1000');
  assert.match(groups ?? '', /\bwebadmins\b/);
  assert.equal(whoami, 'alice');
  // The VE's uid 1000 is host id base + 1000 on the VE's own disk (its upper layer).
  const range = (await h.rt.inspect(ve.uid)).security?.uidRange;
  assert.ok(range, 'the VE has a recorded id range');
  const hostPid = (await h.rt.inspect(ve.uid)).pid;
  assert.ok(hostPid, 'the VE runs');
  const st = statSync(`/proc/${hostPid}/root/home/alice/made-by-alice`);
  assert.equal(st.uid, range.hostId + 1000, 'alice\'s file is owned by the range base + 1000 on the host');
});

test('root installs a package with dpkg', async (t) => {
  if (!guard(t)) return;
  const build = [
    'set -e; d=$(mktemp -d); mkdir -p $d/pkg/DEBIAN $d/pkg/usr/local/bin',
    'printf "Package: kvz-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: kubevz tests <root@localhost>\\nDescription: test package\\n" > $d/pkg/DEBIAN/control',
    'printf "#!/bin/sh\\necho hello from a package\\n" > $d/pkg/usr/local/bin/kvz-hello; chmod 755 $d/pkg/usr/local/bin/kvz-hello',
    'dpkg-deb --root-owner-group --build $d/pkg $d/kvz-hello.deb >/dev/null && dpkg -i $d/kvz-hello.deb >/dev/null',
    'dpkg-query -W -f="\\${Status}\\n" kvz-hello; kvz-hello',
  ].join('; ');
  const r = await sh(build);
  assert.equal(r.code, 0, r.out);
  assert.deepEqual(r.out.trim().split('\n').slice(-2), ['install ok installed', 'hello from a package']);
});

test('root\'s iptables rule and route affect only the VE; the host\'s ruleset is unchanged', async (t) => {
  if (!guard(t)) return;
  const hostInput = async () => (await execFileP('iptables', ['-S', 'INPUT'])).stdout;
  const hostRulesBefore = await hostInput();
  assert.ok(await pingable(), 'the host reaches the VE before the rule');
  const add = await sh('iptables -A INPUT -p icmp --icmp-type echo-request -j DROP && ip route add 198.51.100.0/24 dev eth0 && iptables -S INPUT && ip route show 198.51.100.0/24');
  assert.equal(add.code, 0, add.out);
  assert.match(add.out, /-A INPUT -p icmp .*-j DROP/);
  assert.match(add.out, /^198\.51\.100\.0\/24 dev eth0/m);
  assert.equal(await pingable(), false, 'the VE\'s own rule drops the host\'s ping');
  const hostRulesAfter = await hostInput();
  assert.equal(hostRulesAfter, hostRulesBefore, 'the host\'s ruleset is untouched');
  const hostRoute = (await execFileP('ip', ['route', 'show', 'table', 'all', '198.51.100.0/24'])).stdout.trim();
  assert.equal(hostRoute, '', 'the VE\'s route is not on the host');
  const del = await sh('iptables -D INPUT -p icmp --icmp-type echo-request -j DROP && ip route del 198.51.100.0/24');
  assert.equal(del.code, 0, del.out);
  assert.ok(await pingable(), 'the host reaches the VE again once its root removes the rule');
});

test('root mounts a tmpfs inside; the host does not see it', async (t) => {
  if (!guard(t)) return;
  const r = await sh('mkdir -p /mnt/scratch && mount -t tmpfs -o size=8m scratch /mnt/scratch && echo x > /mnt/scratch/f && grep " /mnt/scratch " /proc/mounts');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^scratch \/mnt\/scratch tmpfs /m);
  const hostMounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.ok(!hostMounts.includes('/mnt/scratch'), 'the VE\'s mount is not in the host\'s mount table');
  assert.equal((await sh('umount /mnt/scratch')).code, 0);
});

test('exec passes stdin through and returns the exit code', async (t) => {
  if (!guard(t)) return;
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const code = await h.rt.exec(ve.uid, ['sh', '-c', 'tr a-z A-Z; exit 7'], { tty: false, stdin: Readable.from(['hello from stdin\n']), stdout: out, stderr: out });
  assert.equal(code, 7);
  assert.equal(Buffer.concat(chunks).toString('utf8'), 'HELLO FROM STDIN\n');
});

test('sysvinit shuts down on SIGPWR; an init that ignores its stop signal is killed after the timeout', async (t) => {
  if (!guard(t)) return;
  const pid1 = (await h.rt.inspect(ve.uid)).pid;
  let t0 = Date.now();
  await h.rt.ensureStopped(ve.uid, { timeoutMs: 20_000 });
  const gracefulMs = Date.now() - t0;
  t.diagnostic(`sysvinit stopped on SIGPWR in ${gracefulMs} ms`);
  assert.equal((await h.rt.inspect(ve.uid)).state, 'absent');
  assert.ok(gracefulMs < 15_000, 'stopped by its own shutdown, not by SIGKILL at the timeout');
  assert.ok(pidGone(pid1!), 'the old init is gone');

  // Started again, its root removes the powerwait entry: SIGPWR then does nothing.
  await h.rt.ensureRunning(ve);
  const r = await sh('sed -i "/powerwait/d" /etc/inittab && telinit q && sleep 1 && grep -c powerwait /etc/inittab || true');
  assert.equal(r.out.trim(), '0', r.out);
  const pid2 = (await h.rt.inspect(ve.uid)).pid;
  const timeoutMs = 2_000;
  t0 = Date.now();
  await h.rt.ensureStopped(ve.uid, { timeoutMs });
  const killedMs = Date.now() - t0;
  t.diagnostic(`init ignoring SIGPWR killed after ${killedMs} ms (timeout ${timeoutMs} ms)`);
  assert.ok(killedMs >= timeoutMs, 'the runtime waited the stop timeout before SIGKILL');
  assert.equal((await h.rt.inspect(ve.uid)).state, 'absent');
  assert.ok(pidGone(pid2!), 'the init that ignored SIGPWR was killed');
});
