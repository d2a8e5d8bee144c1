// The server's PKI, made once with the openssl CLI and reused: a CA, a server certificate for
// 127.0.0.1/localhost/the listen host, and an admin client certificate (an alternative to the
// bearer token). Keys and certificates are 0600 in a 0700 directory. The server certificate is
// re-issued (same CA) when the set of names it must cover changes.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { join } from 'node:path';

export interface Pki {
  caCertPem: string;
  serverKeyPem: string;
  serverCertPem: string;
  clientKeyPem: string;
  clientCertPem: string;
  dir: string;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(`openssl ${args.join(' ')} failed in ${cwd}: ${stderr || (err as Error).message}`, { cause: err });
  }
}

const serial = (): string => {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f; // a positive serial, as Go's x509 wants
  return `0x${b.toString('hex')}`;
};

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Subject alternative names for a server listening on `host`. */
export function serverSans(host: string): string[] {
  const sans = new Set(['IP:127.0.0.1', 'DNS:localhost']);
  if (host === '0.0.0.0' || host === '::') {
    sans.add('IP:::1');
    sans.add(`DNS:${hostname()}`);
  } else if (host !== '') sans.add(isIP(host) ? `IP:${host}` : `DNS:${host}`);
  return [...sans].sort();
}

function issue(dir: string, base: string, subject: string, ext: string[]): void {
  openssl(['req', '-new', ...EC, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subject], dir);
  writeFileSync(join(dir, `${base}.ext`), `${ext.join('\n')}\n`, { mode: 0o600 });
  openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', serial(), '-days', '3650', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`], dir);
  rmSync(join(dir, `${base}.csr`), { force: true });
  rmSync(join(dir, `${base}.ext`), { force: true });
  chmodSync(join(dir, `${base}.key`), 0o600);
  chmodSync(join(dir, `${base}.crt`), 0o600);
}

/** Loads the PKI from `dir`, creating whatever is missing. */
export function ensurePki(dir: string, host: string): Pki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = (n: string) => join(dir, n);
  if (!existsSync(file('ca.key')) || !existsSync(file('ca.crt'))) {
    openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-sha256', '-subj', '/CN=kubevz-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], dir);
    chmodSync(file('ca.key'), 0o600);
    chmodSync(file('ca.crt'), 0o600);
    rmSync(file('server.crt'), { force: true });
    rmSync(file('client.crt'), { force: true });
  }
  const sans = serverSans(host).join(',');
  const sansFile = file('server.sans');
  const haveSans = existsSync(sansFile) ? readFileSync(sansFile, 'utf8').trim() : '';
  if (!existsSync(file('server.crt')) || !existsSync(file('server.key')) || haveSans !== sans) {
    issue(dir, 'server', '/CN=kubevz-apiserver', [
      `subjectAltName=${sans}`, 'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth',
    ]);
    writeFileSync(sansFile, `${sans}\n`, { mode: 0o600 });
  }
  if (!existsSync(file('client.crt')) || !existsSync(file('client.key'))) {
    issue(dir, 'client', '/O=system:masters/CN=kubevz-admin', [
      'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth',
    ]);
  }
  return {
    dir,
    caCertPem: readFileSync(file('ca.crt'), 'utf8'),
    serverKeyPem: readFileSync(file('server.key'), 'utf8'),
    serverCertPem: readFileSync(file('server.crt'), 'utf8'),
    clientKeyPem: readFileSync(file('client.key'), 'utf8'),
    clientCertPem: readFileSync(file('client.crt'), 'utf8'),
  };
}

/** A random bearer token persisted at `path` (0600) and reused across restarts. */
export function ensureToken(path: string): string {
  if (existsSync(path)) {
    const t = readFileSync(path, 'utf8').trim();
    if (t.length >= 32) return t;
  }
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return token;
}
