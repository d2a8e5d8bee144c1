// Resource names the client commands accept: `ve`, `ves`, `virtualenvironment(s)` (and, where a
// command allows it, `vem`, `vems`, `vemigration(s)`), with or without the group
// (`virtualenvironments.kubevz.io`), and `TYPE/NAME` as kubectl does.

import { GROUP } from '../api/types.js';
import { UsageError } from './args.js';

const NAMES: Record<ResourceKind, Set<string>> = {
  ve: new Set(['ve', 'ves', 'virtualenvironment', 'virtualenvironments']),
  vem: new Set(['vem', 'vems', 'vemigration', 'vemigrations']),
};
const DESCRIBED: Record<ResourceKind, string> = { ve: 've (virtualenvironments)', vem: 'vem (vemigrations)' };

export type ResourceKind = 've' | 'vem';

export function parseResource(arg: string | undefined, command: string, allowed: ResourceKind[] = ['ve']): { kind: ResourceKind; name?: string } {
  if (!arg) throw new UsageError(`${command} needs a resource type, e.g. \`kvz ${command} ve\``, command);
  const slash = arg.indexOf('/');
  const type = slash < 0 ? arg : arg.slice(0, slash);
  const name = slash < 0 ? undefined : arg.slice(slash + 1);
  const bare = type.toLowerCase().endsWith(`.${GROUP}`) ? type.toLowerCase().slice(0, -(GROUP.length + 1)) : type.toLowerCase();
  const kind = allowed.find((k) => NAMES[k].has(bare));
  if (!kind) throw new UsageError(`unknown resource type "${type}": kvz ${command} knows ${allowed.map((k) => DESCRIBED[k]).join(' and ')}`, command);
  if (name === '') throw new UsageError(`missing name after "${type}/"`, command);
  return { kind, name };
}

/** The message for a VE that does not exist, naming the namespace looked in. */
export function veNotFound(name: string, namespace: string): string {
  return `virtualenvironment "${name}" not found in namespace "${namespace}"`;
}
