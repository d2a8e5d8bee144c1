// Routed (ptp) and dual-stack VEs against the real kernel: reachable from the host over IPv4
// and IPv6, their veth on no bridge, MAC and addresses stable across a restart, resolv.conf
// from the config. Root only; every host object has a unique name and is removed in `after`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { silentLogger } from '../../src/core/logger.js';
import { createRuntime, macAddress, teardownNode, type VEConfig, type VERuntime } from '../../src/runtime/index.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';
import { execCapture } from '../helpers/ve-host.js';

const run = promisify(execFile);
const prereqs = { root: true, binaries: ['runc', 'ip', 'ping'] };
const skip = missingPrereqs(prereqs).length > 0;
const suffix = uniqueSuffix();
const bridge = `kvzn${suffix}`.slice(0, 15);
const net = 100 + ((process.pid + 37) % 100);
const subnet = `10.213.${net}.0/24`;
const subnet6 = `fd00:213:${net}::/64`;
const stateDir = skip ? '' : mkdtempSync(join(tmpdir(), 'kvz-net-'));
const routedUid = randomUUID();
const v4 = `10.213.${net}.20`;
const v4b = `10.213.${net}.21`;
const v6 = `fd00:213:${net}::20`;
const v6b = `fd00:213:${net}::21`;
const routed: VEConfig = {
  uid: routedUid,
  name: `test/routed-${suffix}`,
  hostname: `routed-${suffix}`,
  template: 'busybox',
  addresses: [`${v4}/24`, `${v6}/64`, `${v4b}/24`, `${v6b}/64`],
  network: { mode: 'routed', nameservers: [`10.213.${net}.53`], searchDomains: ['kvz.test'] },
  limits: {},
};
const stop = { timeoutMs: 5_000 };
let rt: VERuntime;

before(() => {
  if (skip) return;
  rt = createRuntime({ stateDir, bridge: { name: bridge, subnet, subnet6 }, log: silentLogger });
});

after(async () => {
  if (skip) return;
  await rt.destroy(routedUid, stop).catch(() => undefined);
  await teardownNode({ bridge });
  rmSync(stateDir, { recursive: true, force: true });
});

function guard(t: TestContext): boolean {
  return requirePrereqs(t, prereqs);
}

async function execOut(uid: string, argv: string[]): Promise<string> {
  const { code, out: text } = await execCapture(rt, uid, argv);
  assert.equal(code, 0, `${argv.join(' ')}: ${text}`);
  return text;
}

/** Host links enslaved to any bridge. */
function bridgePorts(): string[] {
  const ports: string[] = [];
  for (const dev of readdirSync('/sys/class/net')) {
    try {
      ports.push(...readdirSync(`/sys/class/net/${dev}/brif`));
    } catch {
      // not a bridge
    }
  }
  return ports;
}

async function pingable(addr: string): Promise<boolean> {
  // DAD on the host end of a fresh IPv6 link takes a moment.
  for (let i = 0; i < 30; i++) {
    try {
      await run('ping', [addr.includes(':') ? '-6' : '-4', '-c', '1', '-W', '1', addr]);
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return false;
}

test('a routed VE with IPv4 and IPv6 addresses is reachable from the host, and its veth is on no bridge', async (t) => {
  if (!guard(t)) return;
  assert.equal(await rt.ensureRunning(routed), 'created');
  const st = await rt.inspect(routedUid);
  assert.deepEqual([...st.addresses].sort(), [...routed.addresses].sort());
  assert.ok(await pingable(v4), `ping ${v4}`);
  assert.ok(await pingable(v4b), `ping ${v4b}`);
  assert.ok(await pingable(v6), `ping -6 ${v6}`);
  assert.ok(await pingable(v6b), `ping -6 ${v6b} (a second address of the family: kubevz adds it, not ptp)`);
  const ports = bridgePorts();
  const { stdout } = await run('ip', ['-j', 'link', 'show']);
  const hostEnds = (JSON.parse(stdout) as { ifname: string; link_netnsid?: number }[]).filter((l) => l.link_netnsid !== undefined).map((l) => l.ifname);
  const routedVeth = (JSON.parse((await run('ip', ['-j', 'route', 'get', v4])).stdout) as { dev: string }[])[0]?.dev;
  assert.ok(routedVeth && hostEnds.includes(routedVeth), `route to the VE goes over a veth (${routedVeth})`);
  assert.ok(!ports.includes(routedVeth!), `${routedVeth} must not be a bridge port (ports: ${ports.join(',')})`);
  const inside = await execOut(routedUid, ['ip', 'route']);
  assert.match(inside, new RegExp(`default via 10\\.213\\.${net}\\.1 dev eth0`));
});

test('inside: eth0 with the derived MAC, the IPv6 address and default route, resolv.conf from the config only', async (t) => {
  if (!guard(t)) return;
  assert.equal((await execOut(routedUid, ['cat', '/sys/class/net/eth0/address'])).trim(), macAddress(routedUid));
  assert.match(await execOut(routedUid, ['ip', '-6', 'addr', 'show', 'eth0']), new RegExp(`inet6 ${v6}/64 scope global`));
  assert.match(await execOut(routedUid, ['ip', '-6', 'route']), new RegExp(`default via fd00:213:${net}::1 dev eth0`));
  const resolv = await execOut(routedUid, ['cat', '/etc/resolv.conf']);
  const directives = resolv.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(directives, ['search kvz.test', `nameserver 10.213.${net}.53`]);
});

test('MAC, addresses and routes stay the same across a stop and start', async (t) => {
  if (!guard(t)) return;
  const before = await execOut(routedUid, ['sh', '-c', 'cat /sys/class/net/eth0/address; ip route; ip -6 route | grep -v fe80']);
  await rt.ensureStopped(routedUid, stop);
  assert.equal(await rt.ensureRunning(routed), 'updated');
  const afterRestart = await execOut(routedUid, ['sh', '-c', 'cat /sys/class/net/eth0/address; ip route; ip -6 route | grep -v fe80']);
  assert.equal(afterRestart, before);
  assert.ok(await pingable(v4));
});

test('destroy leaves no veth, netns or host route behind', async (t) => {
  if (!guard(t)) return;
  assert.equal(await rt.destroy(routedUid, stop), 'deleted');
  const { stdout } = await run('ip', ['route', 'show']);
  assert.ok(!stdout.includes(`${v4} `), stdout);
  const r6 = (await run('ip', ['-6', 'route', 'show'])).stdout;
  assert.ok(!r6.includes(v6), r6);
});

test("a resumed dual-stack VE announces its IPv6 address: the host's stale neighbour entry gets its MAC (unsolicited NA)", async (t) => {
  if (!requirePrereqs(t, { ...prereqs, binaries: [...prereqs.binaries, '/usr/local/sbin/criu'] })) return;
  // Bridged, in a user namespace (the default): a resume makes its netns anew and CNI re-adds the address.
  const uid = randomUUID();
  const addr6 = `fd00:213:${net}::30`;
  const cfg: VEConfig = { uid, name: `test/na-${suffix}`, hostname: `na-${suffix}`, template: 'busybox', addresses: [`10.213.${net}.30/24`, `${addr6}/64`], limits: {} };
  // A second port keeps the bridge's carrier while the VE's veth is replaced, as a node's uplink
  // does (without one the kernel flushes the bridge's neighbour entries on carrier loss).
  const keeper = `kvzk${suffix}`.slice(0, 13);
  try {
    await rt.ensureRunning(cfg);
    await run('ip', ['link', 'add', keeper, 'type', 'veth', 'peer', 'name', `${keeper}p`]);
    await run('ip', ['link', 'set', keeper, 'master', bridge, 'up']);
    await run('ip', ['link', 'set', `${keeper}p`, 'up']);
    assert.ok(await pingable(addr6), `ping -6 ${addr6}`);
    assert.equal(await rt.suspend(uid), 'updated');
    // A wrong MAC for the VE's address, as a neighbour that saw it elsewhere would have; only an
    // unsolicited NA with the override flag replaces it (nothing here sends the VE any traffic).
    await run('ip', ['-6', 'neigh', 'replace', addr6, 'lladdr', '02:00:00:00:00:01', 'dev', bridge, 'nud', 'stale']);
    assert.equal(await rt.resume(cfg), 'updated');
    let seen = '';
    for (let i = 0; i < 50 && !seen.includes(macAddress(uid)); i++) {
      await new Promise((r) => setTimeout(r, 200));
      seen = (await run('ip', ['-6', 'neigh', 'show', addr6, 'dev', bridge])).stdout;
    }
    assert.match(seen, new RegExp(`lladdr ${macAddress(uid)}`), `the host learned the VE's MAC from its announcement: ${seen}`);
  } finally {
    await rt.destroy(uid, stop).catch(() => undefined);
    await run('ip', ['link', 'del', keeper]).catch(() => undefined);
    await run('ip', ['-6', 'neigh', 'del', addr6, 'dev', bridge]).catch(() => undefined);
  }
});
