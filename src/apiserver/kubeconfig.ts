// The kubeconfig `kvz up` leaves for kubectl and client-node: the CA, the https URL and the bearer
// token, context namespace `default`. Mode 0600: it is an admin credential.

import { chmodSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';

export interface KubeconfigOptions {
  server: string;
  caCertPem: string;
  token: string;
  name?: string;
}

export function kubeconfigYaml(opts: KubeconfigOptions): string {
  const name = opts.name ?? 'kubevz';
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: opts.server, 'certificate-authority-data': Buffer.from(opts.caCertPem).toString('base64') } }],
    users: [{ name: `${name}-admin`, user: { token: opts.token } }],
    contexts: [{ name, context: { cluster: name, user: `${name}-admin`, namespace: 'default' } }],
    'current-context': name,
    preferences: {},
  });
}

export function writeKubeconfig(path: string, opts: KubeconfigOptions): void {
  writeFileSync(path, kubeconfigYaml(opts), { mode: 0o600 });
  chmodSync(path, 0o600);
}
