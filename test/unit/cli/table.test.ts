import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VirtualEnvironment } from '../../../src/api/types.js';
import { formatAge, renderTable, veTable } from '../../../src/cli/table.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe('formatAge (kubectl HumanDuration)', () => {
  it('matches kubectl', () => {
    const cases: [number, string][] = [
      [0, '0s'],
      [45 * S, '45s'],
      [119 * S, '119s'],
      [2 * M, '2m'],
      [3 * M + 12 * S, '3m12s'],
      [12 * M + 30 * S, '12m'],
      [179 * M, '179m'],
      [2 * H + 59 * M, '179m'],
      [3 * H, '3h'],
      [3 * H + 30 * M, '3h30m'],
      [2 * H, '120m'],
      [30 * H, '30h'],
      [3 * D, '3d'],
      [3 * D + 5 * H, '3d5h'],
      [10 * D, '10d'],
      [800 * D, '2y70d'],
      [-500, '0s'],
      [-5 * S, '<invalid>'],
    ];
    for (const [ms, want] of cases) assert.equal(formatAge(ms), want, `${ms} ms`);
  });
});

describe('tables', () => {
  it('pads columns to the widest cell plus three spaces', () => {
    assert.equal(renderTable(['NAME', 'AGE'], [['web1', '5s'], ['a-longer-name', '3d']]), 'NAME            AGE\nweb1            5s\na-longer-name   3d\n');
  });

  it('renders VEs with phase, node, IP (no prefix), ready, age; wide and all-namespaces columns', () => {
    const now = new Date('2024-01-01T12:00:00Z');
    const ve: VirtualEnvironment = {
      metadata: { name: 'web1', namespace: 'default', creationTimestamp: '2024-01-01T11:56:48Z' },
      spec: { template: 'busybox', hostname: 'www' },
      status: { phase: 'Running', nodeName: 'node-a', addresses: ['10.213.0.10/24'], conditions: [{ type: 'Ready', status: 'True', reason: 'Running', message: '', lastTransitionTime: '2024-01-01T11:57:00Z' }] },
    };
    const bare: VirtualEnvironment = { metadata: { name: 'new', namespace: 'prod', creationTimestamp: '2024-01-01T11:59:15Z' }, spec: { template: 'debian' } };
    assert.equal(
      veTable([ve, bare], { now }),
      ['NAME   PHASE     NODE     IP            READY    AGE', 'web1   Running   node-a   10.213.0.10   True     3m12s', 'new    <none>    <none>   <none>        <none>   45s', ''].join('\n'),
    );
    const wide = veTable([ve], { now, wide: true, allNamespaces: true }).split('\n');
    assert.match(wide[0] ?? '', /^NAMESPACE\s+NAME\s+PHASE\s+NODE\s+IP\s+READY\s+AGE\s+TEMPLATE\s+HOSTNAME$/);
    assert.match(wide[1] ?? '', /^default\s+web1\s+Running\s+node-a\s+10\.213\.0\.10\s+True\s+3m12s\s+busybox\s+www$/);
  });
});
