// `kvz node-agent --metrics-listen HOST:PORT`: parsed like `kvz up`'s, off by default, and a bad
// address is a usage error (exit 2) naming the flag, raised before the agent needs root.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUsageError } from '../../../src/cli/args.js';
import { agentMetricsListen, parseListenAddress, runNodeAgent } from '../../../src/cli/controller.js';

describe('kvz node-agent --metrics-listen', () => {
  it('is off unless given; HOST:PORT, [IPv6]:PORT and :PORT (loopback) are accepted', () => {
    assert.equal(agentMetricsListen(['--node-name', 'n1']), undefined);
    assert.deepEqual(agentMetricsListen(['--node-name', 'n1', '--metrics-listen', '0.0.0.0:9464']), { host: '0.0.0.0', port: 9464 });
    assert.deepEqual(agentMetricsListen(['--metrics-listen=[::1]:9100']), { host: '::1', port: 9100 });
    assert.deepEqual(agentMetricsListen(['--metrics-listen', ':0']), { host: '127.0.0.1', port: 0 });
    // What the DaemonSet passes on an IPv6 node ($(HOST_IP) expanded, no brackets).
    assert.deepEqual(agentMetricsListen(['--metrics-listen=fd00::7:9464']), { host: 'fd00::7', port: 9464 });
  });

  it('a bad address is a usage error naming the flag', () => {
    for (const bad of ['9464', '0.0.0.0:', '0.0.0.0:http', '0.0.0.0:70000', '0.0.0.0:-1']) {
      assert.throws(() => agentMetricsListen(['--metrics-listen', bad]), (err: Error) => isUsageError(err) && err.message.includes(`--metrics-listen ${bad}: expected HOST:PORT`), bad);
    }
    assert.throws(() => parseListenAddress('x', '--other', 'node-agent'), /--other x: expected HOST:PORT/);
  });

  it('runNodeAgent refuses a bad address before it checks for root or connects', async () => {
    await assert.rejects(runNodeAgent(['--node-name', 'n1', '--metrics-listen', 'nowhere']), (err: Error) => isUsageError(err) && /--metrics-listen nowhere/.test(err.message));
  });
});
