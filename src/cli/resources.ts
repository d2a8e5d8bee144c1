// Resource names the client commands accept: `ve`, `ves`, `virtualenvironment(s)`, with or
// without the group (`virtualenvironments.kubevz.io`), and `TYPE/NAME` as kubectl does.

import { GROUP } from '../api/types.js';
import { UsageError } from './args.js';

const VE_NAMES = new Set(['ve', 'ves', 'virtualenvironment', 'virtualenvironments']);

export type ResourceKind = 've';

export function parseResource(arg: string | undefined, command: string): { kind: ResourceKind; name?: string } {
  if (!arg) throw new UsageError(`${command} needs a resource type, e.g. \`kvz ${command} ve\``, command);
  const slash = arg.indexOf('/');
  const type = slash < 0 ? arg : arg.slice(0, slash);
  const name = slash < 0 ? undefined : arg.slice(slash + 1);
  const bare = type.toLowerCase().endsWith(`.${GROUP}`) ? type.toLowerCase().slice(0, -(GROUP.length + 1)) : type.toLowerCase();
  if (!VE_NAMES.has(bare)) throw new UsageError(`unknown resource type "${type}": kvz knows ve (virtualenvironments)`, command);
  if (name === '') throw new UsageError(`missing name after "${type}/"`, command);
  return { kind: 've', name };
}

/** The message for a VE that does not exist, naming the namespace looked in. */
export function veNotFound(name: string, namespace: string): string {
  return `virtualenvironment "${name}" not found in namespace "${namespace}"`;
}
