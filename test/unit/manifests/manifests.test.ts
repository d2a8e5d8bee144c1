// Consistency of the real-cluster manifests (manifests/*.yaml, manifests/argocd/): the names the
// workloads, RBAC and the node-agent admission policy use agree; the DaemonSet has the host
// access the agent needs; the Argo CD ConfigMap embeds health-virtualenvironment.lua verbatim
// and the script covers every health outcome. (argocd-health.test.ts runs the scripts in Lua.)

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { agentMetricsListen } from '../../../src/cli/controller.js';
import { repoRoot } from '../../helpers/kvz-up.js';

type Doc = { kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };
const dir = join(repoRoot, 'manifests');
const docs: Doc[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.toJS() as Doc))
  .filter(Boolean);
const find = (kind: string, name: string) => {
  const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(d, `${kind} ${name} in manifests/`);
  return d as any; // eslint-disable-line @typescript-eslint/no-explicit-any
};

test('namespaced objects live in kubevz-system; service accounts are bound and used', () => {
  for (const d of docs) {
    if (['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'].includes(d.kind)) continue;
    assert.equal(d.metadata.namespace, 'kubevz-system', `${d.kind} ${d.metadata.name}`);
  }
  assert.equal(find('Deployment', 'kvz-controller').spec.template.spec.serviceAccountName, 'kvz-controller');
  assert.equal(find('DaemonSet', 'kvz-node-agent').spec.template.spec.serviceAccountName, 'kvz-node-agent');
  assert.deepEqual(find('ClusterRoleBinding', 'kubevz-node-agent').subjects, [{ kind: 'ServiceAccount', name: 'kvz-node-agent', namespace: 'kubevz-system' }]);
  assert.deepEqual(find('ClusterRoleBinding', 'kubevz-controller').subjects, [{ kind: 'ServiceAccount', name: 'kvz-controller', namespace: 'kubevz-system' }]);
});

test('least privilege: neither role may delete VEs; the agent may not create them', () => {
  for (const name of ['kubevz-controller', 'kubevz-node-agent']) {
    for (const r of find('ClusterRole', name).rules as { resources: string[]; verbs: string[] }[]) {
      if (r.resources.includes('virtualenvironments')) {
        assert.ok(!r.verbs.includes('delete') && !r.verbs.includes('create') && !r.verbs.includes('*'), `${name}: ${r.verbs.join(',')}`);
      }
    }
  }
});

test('the admission policy matches the agent service account and reads the node from the token', () => {
  const vap = find('ValidatingAdmissionPolicy', 'kubevz-node-agent-own-node');
  assert.equal(find('ValidatingAdmissionPolicyBinding', 'kubevz-node-agent-own-node').spec.policyName, vap.metadata.name);
  assert.match(vap.spec.matchConditions[0].expression, /system:serviceaccount:kubevz-system:kvz-node-agent'/);
  const vars = Object.fromEntries((vap.spec.variables as { name: string; expression: string }[]).map((v) => [v.name, v.expression]));
  assert.match(vars.node!, /authentication\.kubernetes\.io\/node-name/);
  assert.match(vars.oldVENode!, /kubevz\.io\/node/);
  // The DaemonSet passes the Kubernetes node name, which is what the token carries.
  const env = find('DaemonSet', 'kvz-node-agent').spec.template.spec.containers[0].env as { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  assert.equal(env.find((e) => e.name === 'NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
});

test('the node-agent DaemonSet has the host access the runtime needs', () => {
  const spec = find('DaemonSet', 'kvz-node-agent').spec.template.spec;
  assert.equal(spec.hostPID, true);
  assert.equal(spec.hostNetwork, true);
  const c = spec.containers[0];
  assert.equal(c.securityContext.privileged, true);
  const mounts = Object.fromEntries((c.volumeMounts as { mountPath: string; mountPropagation?: string }[]).map((m) => [m.mountPath, m.mountPropagation]));
  assert.equal(mounts['/var/lib/kubevz'], 'Bidirectional');
  assert.equal(mounts['/run/netns'], 'Bidirectional');
  assert.ok('/sys/fs/cgroup' in mounts && '/dev' in mounts);
  assert.ok((c.args as string[]).includes('node-agent'));
});

test('the node-agent DaemonSet serves Prometheus metrics on the port it declares and annotates', () => {
  const ds = find('DaemonSet', 'kvz-node-agent');
  const c = ds.spec.template.spec.containers[0];
  const env = new Set((c.env as { name: string }[]).map((e) => e.name));
  // Kubernetes expands $(VAR) in args from the container's env; an undefined one stays literal.
  const args = (c.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_m, v: string) => {
    assert.ok(env.has(v), `$(${v}) in the args is defined in env`);
    return v === 'HOST_IP' ? '192.0.2.7' : 'x';
  }));
  assert.equal(args[0], 'node-agent');
  // The agent's own parser accepts every flag the DaemonSet passes (an unknown one throws).
  const listen = agentMetricsListen(args.slice(1));
  assert.deepEqual(listen, { host: '192.0.2.7', port: 9464 });
  const port = (c.ports as { name: string; containerPort: number }[]).find((p) => p.name === 'metrics');
  assert.equal(port?.containerPort, listen!.port, 'the container port is the one --metrics-listen binds');
  const ann = ds.spec.template.metadata.annotations as Record<string, string>;
  assert.equal(ann['prometheus.io/scrape'], 'true');
  assert.equal(ann['prometheus.io/port'], String(listen!.port));
  assert.equal(ann['prometheus.io/path'], '/metrics');
});

test('Argo CD: the ConfigMap embeds health-virtualenvironment.lua verbatim, and the script covers every outcome', () => {
  const lua = readFileSync(join(dir, 'argocd', 'health-virtualenvironment.lua'), 'utf8');
  const cm = parseAllDocuments(readFileSync(join(dir, 'argocd', 'argocd-cm-health.yaml'), 'utf8'))[0]!.toJS() as { data: Record<string, string> };
  assert.equal(cm.data['resource.customizations.health.kubevz.io_VirtualEnvironment'], lua);
  for (const s of ['Healthy', 'Progressing', 'Degraded', 'Suspended']) assert.match(lua, new RegExp(`status = "${s}"`), s);
  for (const field of ['observedGeneration', 'Stalled', 'Scheduled', 'Ready', 'powerState']) assert.ok(lua.includes(field), field);
  for (const kind of ['VENode', 'VEMigration']) assert.ok(cm.data[`resource.customizations.health.kubevz.io_${kind}`], kind);
});
