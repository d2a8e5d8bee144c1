// Shared bits for the sources tests: a logger that records lines, a fake API target, VE YAML.

import type { Logger } from '../../../src/core/logger.js';
import type { ResourceRef } from '../../../src/core/resource-client.js';
import { refsFromCrds, registryApplyTarget, type ApplyTarget } from '../../../src/sources/kinds.js';
import { FakeApi, type FakeApiOptions } from '../../helpers/fake-resource-client.js';

export interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const rec =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push(typeof obj === 'string' ? { level, fields: {}, msg: obj } : { level, fields: obj as Record<string, unknown>, msg: msg ?? '' });
    };
  const log = { lines, debug: rec('debug'), info: rec('info'), warn: rec('warn'), error: rec('error'), child: () => log };
  return log;
}

export const VE_REF: ResourceRef = refsFromCrds().find((r) => r.kind === 'VirtualEnvironment')!;

/** A fake API whose "server-side validation" rejects an empty template, like the CRD schema. */
export function fakeTarget(opts: FakeApiOptions = {}): { api: FakeApi; target: ApplyTarget } {
  const api = new FakeApi({
    validate: (_ref, obj) => {
      const spec = (obj as { spec?: { template?: unknown } }).spec;
      if (!spec || typeof spec.template !== 'string' || spec.template === '') return [{ field: 'spec.template', message: 'Required value' }];
      return undefined;
    },
    ...opts,
  });
  return { api, target: registryApplyTarget(refsFromCrds(), (ref) => api.client(ref), 'https://fake:6443') };
}

export function veYaml(name: string, spec: string, meta = ''): string {
  return `apiVersion: kubevz.io/v1alpha1\nkind: VirtualEnvironment\nmetadata:\n  name: ${name}\n${meta}spec:\n${spec}`;
}

export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
