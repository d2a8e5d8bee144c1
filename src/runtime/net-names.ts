// Which netns and host veth names a VE uses on this host, recorded in its state dir
// (ves/<uid>/netnames.json) before either is made. Normally the primary names from names.ts;
// when another runtime on the same host already holds them for the same uid (a migration
// between two agents of one host prepares the target while the source still has its netns),
// names scoped by this runtime's state dir. Teardown only ever touches the recorded names, so
// one runtime never removes another's netns or veth.

import { existsSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KvzError } from '../core/errors.js';
import { hostVethName, netnsName, scopedNetNames } from './names.js';
import { linkExists, netnsExists } from './netns.js';

export interface VENetNames {
  netns: string;
  veth: string;
}

const RECORD = 'netnames.json';

/**
 * The names a VE's network objects have: the record; for a VE made before records existed (its
 * dir has network.json) the primary names; undefined when this runtime has nothing for the uid.
 */
export async function readNetNames(veDir: string, uid: string): Promise<VENetNames | undefined> {
  try {
    return JSON.parse(await readFile(join(veDir, RECORD), 'utf8')) as VENetNames;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new KvzError('Internal', `cannot read ${join(veDir, RECORD)}: ${(err as Error).message}`, { cause: err });
  }
  if (existsSync(join(veDir, 'network.json'))) return { netns: netnsName(uid), veth: hostVethName(uid) };
  return undefined;
}

/** Picks free names (primary first) and records them; call with the VE's previous objects torn down. */
export async function chooseNetNames(veDir: string, uid: string, stateDir: string): Promise<VENetNames> {
  const scoped = scopedNetNames(uid, stateDir);
  const names: VENetNames = {
    netns: netnsExists(netnsName(uid)) ? scoped.netns : netnsName(uid),
    veth: linkExists(hostVethName(uid)) ? scoped.veth : hostVethName(uid),
  };
  const file = join(veDir, RECORD);
  await writeFile(`${file}.tmp`, `${JSON.stringify(names)}\n`);
  await rename(`${file}.tmp`, file);
  return names;
}

export async function forgetNetNames(veDir: string): Promise<void> {
  await rm(join(veDir, RECORD), { force: true });
}
