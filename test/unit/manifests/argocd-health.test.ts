// The Argo CD health checks of manifests/argocd/ run by a real Lua interpreter, the way Argo CD
// runs them: the resource as the global table `obj`, the script's chunk called, `hs.status` and
// `hs.message` read back. Sample VEs are hand-written for each outcome and also built by the
// agent's own status builder (src/node-agent/ve-status.ts), so the script and what the agent
// writes are checked together. Needs lua5.4 (or 5.3/lua/luajit; hack/install-deps.sh installs it).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseAllDocuments } from 'yaml';
import type { VEStatus, VirtualEnvironment } from '../../../src/api/types.js';
import { buildStatus, type StatusInput } from '../../../src/node-agent/ve-status.js';
import { repoRoot } from '../../helpers/kvz-up.js';
import { requirePrereqs } from '../../helpers/prereq.js';

const dir = join(repoRoot, 'manifests', 'argocd');
const veScript = readFileSync(join(dir, 'health-virtualenvironment.lua'), 'utf8');
const cm = parseAllDocuments(readFileSync(join(dir, 'argocd-cm-health.yaml'), 'utf8'))[0]!.toJS() as { data: Record<string, string> };
const scriptOf = (kind: string) => {
  const s = cm.data[`resource.customizations.health.kubevz.io_${kind}`];
  assert.ok(s, `argocd-cm-health.yaml has a health check for ${kind}`);
  return s;
};

/** The first Lua interpreter on PATH (Argo CD's gopher-lua is Lua 5.1; the scripts use nothing newer). */
const lua = ['lua5.4', 'lua5.3', 'lua', 'luajit'].find((bin) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});

function needLua(t: TestContext): boolean {
  if (lua) return true;
  // Reports lua5.4 as missing: skipped with the reason here, a failure under CI=true.
  return requirePrereqs(t, { binaries: ['lua5.4'] });
}

/** A Lua string literal: printable ASCII as is, every other byte as a 3-digit decimal escape (valid in Lua 5.1–5.4). */
function luaString(s: string): string {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte >= 0x20 && byte < 0x7f && ch !== '"' && ch !== '\\' ? ch : `\\${String(byte).padStart(3, '0')}`;
  }
  return `${out}"`;
}

/** JSON value → Lua table constructor, as Argo CD hands a resource to a script (null = absent). */
function toLua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return luaString(v);
  if (typeof v === 'number') {
    assert.ok(Number.isFinite(v), `a finite number, not ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) {
    assert.ok(v.every((x) => x !== null && x !== undefined), 'no nulls inside arrays (Lua sequences cannot hold nil)');
    return `{${v.map(toLua).join(', ')}}`;
  }
  if (typeof v === 'object') {
    const fields = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== null && x !== undefined);
    return `{${fields.map(([k, x]) => `[${luaString(k)}] = ${toLua(x)}`).join(', ')}}`;
  }
  throw new Error(`cannot convert ${typeof v} to Lua`);
}

interface Health {
  status: string;
  message: string;
}

/** Runs a health script on `obj` like Argo CD: global `obj`, the chunk's return value is `hs`. */
function health(script: string, obj: unknown): Health {
  const harness = [
    `obj = ${toLua(obj)}`,
    `local chunk = assert((loadstring or load)(${luaString(script)}, "=health"))`,
    'local hs = chunk()',
    'assert(type(hs) == "table", "the script returns the hs table")',
    'io.write(tostring(hs.status), "\\n", tostring(hs.message))',
  ].join('\n');
  const r = spawnSync(lua!, ['-'], { input: harness, encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 0, `lua failed: ${r.stderr}`);
  const nl = r.stdout.indexOf('\n');
  return { status: r.stdout.slice(0, nl), message: r.stdout.slice(nl + 1) };
}

const cond = (type: string, status: string, reason: string, message = '', observedGeneration = 2) => ({ type, status, reason, message, observedGeneration, lastTransitionTime: '2026-01-01T00:00:00Z' });

function aVE(spec: Partial<VirtualEnvironment['spec']> = {}, status?: Record<string, unknown>, generation = 2): Record<string, unknown> {
  return {
    apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment',
    metadata: { name: 'web', namespace: 'default', generation },
    spec: { template: 'busybox', ...spec },
    ...(status ? { status } : {}),
  };
}

test('converter: odd strings survive the trip through a Lua literal', (t) => {
  if (!needLua(t)) return;
  const s = 'quote " backslash \\ newline \n tab \t ünïcode ✓ 123';
  // A script that echoes a field of obj back as the message.
  assert.deepEqual(health('return { status = "Healthy", message = obj.metadata.name .. "|" .. #obj.list .. "|" .. tostring(obj.flag) .. "|" .. obj.n }', { metadata: { name: s }, list: [1, 2, 3], flag: false, n: 42, gone: null }), { status: 'Healthy', message: `${s}|3|false|42` });
});

test('VirtualEnvironment: Running and Ready at the current generation → Healthy', (t) => {
  if (!needLua(t)) return;
  const h = health(veScript, aVE({}, { phase: 'Running', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Scheduled', 'True', 'Scheduled'), cond('Ready', 'True', 'Running'), cond('Reconciling', 'False', 'Converged'), cond('Stalled', 'False', 'Progressing')] }));
  assert.deepEqual(h, { status: 'Healthy', message: 'running on n1' });
});

test('VirtualEnvironment: no status yet, or an older generation observed → Progressing', (t) => {
  if (!needLua(t)) return;
  assert.equal(health(veScript, aVE()).status, 'Progressing');
  const stale = health(veScript, aVE({}, { phase: 'Running', nodeName: 'n1', observedGeneration: 1, conditions: [cond('Ready', 'True', 'Running', '', 1)] }, 2));
  assert.deepEqual(stale, { status: 'Progressing', message: 'waiting for generation 2 to be observed' });
});

test('VirtualEnvironment: being created / converging → Progressing with the agent\'s message', (t) => {
  if (!needLua(t)) return;
  const h = health(veScript, aVE({}, { phase: 'Creating', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'False', 'Creating', 'starting from template busybox'), cond('Reconciling', 'True', 'Creating', 'starting from template busybox'), cond('Stalled', 'False', 'Progressing')] }));
  assert.deepEqual(h, { status: 'Progressing', message: 'starting from template busybox' });
  // Declared Running but still Stopped (not started yet) is not Healthy either.
  assert.equal(health(veScript, aVE({}, { phase: 'Stopped', observedGeneration: 2, conditions: [cond('Ready', 'False', 'Stopped')] })).status, 'Progressing');
});

test('VirtualEnvironment: unschedulable → Progressing with the scheduler\'s reasons', (t) => {
  if (!needLua(t)) return;
  const msg = '0/2 nodes available: 2 insufficient memory (VE needs cpu 0, memory 2097152Ki, disk 0)';
  const h = health(veScript, aVE({}, { phase: 'Pending', observedGeneration: 2, conditions: [cond('Scheduled', 'False', 'Unschedulable', msg), cond('Ready', 'False', 'Unschedulable', 'waiting for a node with room for the VE')] }));
  assert.deepEqual(h, { status: 'Progressing', message: msg });
});

test('VirtualEnvironment: phase Failed or Stalled=True → Degraded with the reason\'s message', (t) => {
  if (!needLua(t)) return;
  const failed = health(veScript, aVE({}, { phase: 'Failed', nodeName: 'n1', observedGeneration: 2, message: 'bad limit', conditions: [cond('Ready', 'False', 'InvalidSpec', 'spec.resources.memory.limit: "plenty" is not a quantity'), cond('Stalled', 'True', 'InvalidSpec', 'spec.resources.memory.limit: "plenty" is not a quantity')] }));
  assert.equal(failed.status, 'Degraded');
  assert.match(failed.message, /spec\.resources\.memory\.limit/);
  // Stalled alone (whatever the phase) is Degraded too; without a Ready message the status message is used.
  const stalled = health(veScript, aVE({}, { phase: 'Pending', observedGeneration: 2, message: 'template is broken', conditions: [cond('Stalled', 'True', 'TemplateBroken', 'template is broken')] }));
  assert.deepEqual(stalled, { status: 'Degraded', message: 'template is broken' });
});

test('VirtualEnvironment: a crash loop (Stalled=True, reason CrashLoopBackOff) → Degraded, and says why', (t) => {
  if (!needLua(t)) return;
  const msg = "the VE's init exited 3 times in a row, restarted 2 times; next restart at 2026-01-01T00:00:04Z (back-off 4s)";
  const h = health(veScript, aVE({}, { phase: 'Pending', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'False', 'CrashLoopBackOff', msg), cond('Reconciling', 'False', 'Stalled'), cond('Stalled', 'True', 'CrashLoopBackOff', msg)] }));
  // As Argo CD calls a Pod in CrashLoopBackOff.
  assert.deepEqual(h, { status: 'Degraded', message: msg });
  // The first exit (restarted after 1s) is still converging: Reconciling=True → Progressing.
  const first = "the VE's init exited 1 time in a row; next restart at 2026-01-01T00:00:01Z (back-off 1s)";
  const once = health(veScript, aVE({}, { phase: 'Pending', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'False', 'CrashLoopBackOff', first), cond('Reconciling', 'True', 'CrashLoopBackOff', first), cond('Stalled', 'False', 'Progressing')] }));
  assert.deepEqual(once, { status: 'Progressing', message: first });
});

test('empty messages ("" is true in Lua) fall through to the next message, never an empty one', (t) => {
  if (!needLua(t)) return;
  // Stalled and Ready with "" messages: status.message, then the default.
  const blank = [cond('Ready', 'False', 'InvalidSpec', ''), cond('Stalled', 'True', 'InvalidSpec', '')];
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Failed', observedGeneration: 2, message: 'bad limit', conditions: blank })), { status: 'Degraded', message: 'bad limit' });
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Failed', observedGeneration: 2, conditions: blank })), { status: 'Degraded', message: 'the VE failed' });
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Failed', observedGeneration: 2, message: '', conditions: blank })), { status: 'Degraded', message: 'the VE failed' });
  // Stalled's message first, an empty Ready message skipped.
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Pending', observedGeneration: 2, conditions: [cond('Ready', 'False', 'CrashLoopBackOff', ''), cond('Stalled', 'True', 'CrashLoopBackOff', 'crashed')] })), { status: 'Degraded', message: 'crashed' });
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Running', observedGeneration: 2, conditions: [cond('Ready', 'Unknown', 'NodeNotReady', '')] })), { status: 'Degraded', message: "the VE's node is NotReady" });
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Pending', observedGeneration: 2, conditions: [cond('Scheduled', 'False', 'Unschedulable', '')] })), { status: 'Progressing', message: 'unschedulable' });
  assert.deepEqual(health(veScript, aVE({}, { phase: 'Creating', observedGeneration: 2, conditions: [cond('Ready', 'False', 'Creating', '')] })), { status: 'Progressing', message: 'waiting for the VE to be scheduled and reconciled' });
  const node = { apiVersion: 'kubevz.io/v1alpha1', kind: 'VENode', metadata: { name: 'n1' }, spec: {}, status: { conditions: [cond('Ready', 'False', 'AgentNotReady', '')] } };
  assert.deepEqual(health(scriptOf('VENode'), node), { status: 'Degraded', message: 'AgentNotReady' });
  const mig = { apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'm', namespace: 'default' }, spec: { ve: 'web', targetNode: 'n2' }, status: { phase: 'Failed', message: '' } };
  assert.deepEqual(health(scriptOf('VEMigration'), mig), { status: 'Degraded', message: 'migration failed; the VE runs on the source again' });
});

test('VirtualEnvironment: its node lost (Ready=Unknown) → Degraded', (t) => {
  if (!needLua(t)) return;
  const h = health(veScript, aVE({}, { phase: 'Running', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'Unknown', 'NodeNotReady', 'node n1 stopped heartbeating')] }));
  assert.deepEqual(h, { status: 'Degraded', message: 'node n1 stopped heartbeating' });
});

test('VirtualEnvironment: Suspended or Stopped as declared → Suspended / Healthy; not as declared → Progressing', (t) => {
  if (!needLua(t)) return;
  const suspended = { phase: 'Suspended', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'False', 'Suspended', 'checkpointed to disk'), cond('Suspended', 'True', 'Checkpointed')] };
  assert.deepEqual(health(veScript, aVE({ powerState: 'Suspended' }, suspended)), { status: 'Suspended', message: 'checkpointed to disk as declared' });
  const stopped = { phase: 'Stopped', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'False', 'Stopped', 'spec.powerState is Stopped')] };
  assert.deepEqual(health(veScript, aVE({ powerState: 'Stopped' }, stopped)), { status: 'Healthy', message: 'stopped as declared' });
  // Declared Stopped but still running (being stopped) is not Healthy.
  const running = { phase: 'Running', nodeName: 'n1', observedGeneration: 2, conditions: [cond('Ready', 'True', 'Running')] };
  assert.equal(health(veScript, aVE({ powerState: 'Stopped' }, running)).status, 'Progressing');
});

test('VirtualEnvironment: what the agent\'s status builder writes reads as the matching Argo CD health', (t) => {
  if (!needLua(t)) return;
  const generation = 3;
  const ve = aVE({}, undefined, generation) as unknown as VirtualEnvironment;
  const withStatus = (input: Omit<StatusInput, 'nodeName' | 'addresses'>, spec: Partial<VirtualEnvironment['spec']> = {}) => {
    const status: VEStatus = buildStatus(ve, { nodeName: 'n1', addresses: ['10.0.0.5/24'], ...input }, new Date('2026-01-01T00:00:00Z'));
    return JSON.parse(JSON.stringify({ ...ve, spec: { ...ve.spec, ...spec }, status })) as unknown;
  };
  const cases: [string, unknown, string][] = [
    ['running', withStatus({ phase: 'Running', initPid: 9, ready: { status: 'True', reason: 'Running', message: '' } }), 'Healthy'],
    ['creating', withStatus({ phase: 'Creating', ready: { status: 'False', reason: 'Creating', message: 'starting from template busybox' } }), 'Progressing'],
    ['template missing', withStatus({ phase: 'Pending', ready: { status: 'False', reason: 'TemplateNotFound', message: 'no template busybox' } }), 'Progressing'],
    ['failed', withStatus({ phase: 'Failed', ready: { status: 'False', reason: 'InvalidSpec', message: 'spec.resources.memory.limit is invalid' } }), 'Degraded'],
    ['restarting after one exit', withStatus({ phase: 'Pending', ready: { status: 'False', reason: 'CrashLoopBackOff', message: 'exited once' } }), 'Progressing'],
    ['crash loop', withStatus({ phase: 'Pending', stalled: true, ready: { status: 'False', reason: 'CrashLoopBackOff', message: 'exited 2 times in a row' } }), 'Degraded'],
    ['stopped as declared', withStatus({ phase: 'Stopped', ready: { status: 'False', reason: 'Stopped', message: 'spec.powerState is Stopped' } }, { powerState: 'Stopped' }), 'Healthy'],
    ['suspended as declared', withStatus({ phase: 'Suspended', ready: { status: 'False', reason: 'Suspended', message: 'checkpointed' } }, { powerState: 'Suspended' }), 'Suspended'],
  ];
  for (const [name, obj, want] of cases) assert.equal(health(veScript, obj).status, want, name);
});

test('VENode: Ready=True → Healthy, otherwise Degraded; not registered → Progressing', (t) => {
  if (!needLua(t)) return;
  const script = scriptOf('VENode');
  const node = (c?: ReturnType<typeof cond>) => ({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VENode', metadata: { name: 'n1' }, spec: {}, ...(c ? { status: { conditions: [c] } } : {}) });
  assert.deepEqual(health(script, node(cond('Ready', 'True', 'AgentReady', 'agent is heartbeating'))), { status: 'Healthy', message: 'agent is heartbeating' });
  assert.deepEqual(health(script, node(cond('Ready', 'Unknown', 'NodeStatusUnknown', 'no heartbeat for 41s'))), { status: 'Degraded', message: 'no heartbeat for 41s' });
  assert.equal(health(script, node()).status, 'Progressing');
});

test('VEMigration: Succeeded → Healthy, Failed → Degraded with the message, otherwise Progressing with the phase', (t) => {
  if (!needLua(t)) return;
  const script = scriptOf('VEMigration');
  const mig = (status?: Record<string, unknown>) => ({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VEMigration', metadata: { name: 'm', namespace: 'default' }, spec: { ve: 'web', targetNode: 'n2' }, ...(status ? { status } : {}) });
  assert.equal(health(script, mig({ phase: 'Succeeded' })).status, 'Healthy');
  assert.deepEqual(health(script, mig({ phase: 'Failed', message: 'target node n2 is NotReady' })), { status: 'Degraded', message: 'target node n2 is NotReady' });
  assert.deepEqual(health(script, mig({ phase: 'Transferring' })), { status: 'Progressing', message: 'Transferring' });
  assert.equal(health(script, mig()).status, 'Progressing');
});
