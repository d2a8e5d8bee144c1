// Benchmark: the agent CPU one beancounter refresh pass costs for 200 VEs (target < 50 ms),
// on cgroup v1 fixture trees laid out as the kernel has them (memory, cpu, cpuacct, pids,
// blkio files; /proc/PID/fd and /proc/PID/net per VE), through the real UsageReader and
// BeancounterRefresher. Prints CPU and wall medians per pass and against the target; asserts
// nothing. `node dist/bench/beancounter-refresh.js [ves] [rounds]`.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VirtualEnvironment } from '../src/api/types.js';
import { silentLogger } from '../src/core/logger.js';
import type { ResourceClient } from '../src/core/resource-client.js';
import { BeancounterMetrics } from '../src/node-agent/metrics.js';
import { BeancounterRefresher } from '../src/node-agent/beancounters.js';
import { CgroupV1 } from '../src/runtime/cgroup-v1.js';
import { cgroupPath } from '../src/runtime/names.js';
import { UsageReader } from '../src/runtime/usage.js';
import type { VERuntime } from '../src/runtime/types.js';

const count = Number(process.argv[2] ?? 200);
const rounds = Number(process.argv[3] ?? 15);
const root = mkdtempSync(join(tmpdir(), 'kvz-bench-bc-'));

function write(path: string, text: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, text);
}

const ves: VirtualEnvironment[] = [];
for (let i = 0; i < count; i++) {
  const uid = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
  const p = cgroupPath(uid);
  const pid = 100_000 + i * 4;
  const f = (c: string, n: string, v: string) => write(join(root, 'cg', c, p, n), `${v}\n`);
  f('memory', 'memory.usage_in_bytes', String(20 << 20));
  f('memory', 'memory.max_usage_in_bytes', String(30 << 20));
  f('memory', 'memory.limit_in_bytes', String(256 << 20));
  f('memory', 'memory.failcnt', '0');
  f('memory', 'memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 0');
  f('memory', 'memory.memsw.usage_in_bytes', String(20 << 20));
  f('memory', 'memory.memsw.max_usage_in_bytes', String(30 << 20));
  f('memory', 'memory.memsw.limit_in_bytes', String(256 << 20));
  f('memory', 'memory.memsw.failcnt', '0');
  f('pids', 'pids.current', '3');
  f('pids', 'pids.max', '100');
  f('pids', 'pids.events', 'max 0');
  f('pids', 'cgroup.procs', `${pid}\n${pid + 1}\n${pid + 2}`);
  f('cpuacct', 'cpuacct.usage', String(i * 1_000_000));
  f('cpu', 'cpu.stat', 'nr_periods 0\nnr_throttled 0\nthrottled_time 0');
  f('blkio', 'blkio.throttle.io_service_bytes_recursive', '7:1 Read 0\n7:1 Write 4096\nTotal 4096');
  f('blkio', 'blkio.throttle.io_serviced_recursive', '7:1 Read 0\n7:1 Write 1\nTotal 1');
  for (let k = 0; k < 3; k++) for (let fd = 0; fd < 4; fd++) write(join(root, 'proc', String(pid + k), 'fd', String(fd)), '');
  write(join(root, 'proc', String(pid), 'net', 'sockstat'), 'TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 0\nUDP: inuse 0 mem 0\nRAW: inuse 0\n');
  write(join(root, 'proc', String(pid), 'net', 'sockstat6'), 'TCP6: inuse 0\nUDP6: inuse 0\nRAW6: inuse 0\n');
  write(join(root, 'proc', String(pid), 'net', 'unix'), 'Num RefCount Protocol Flags Type St Inode Path\n');
  write(join(root, 'proc', String(pid), 'net', 'dev'), 'h\nh\n  eth0: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n');
  ves.push({ apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: `ve${i}`, namespace: 'default', uid }, spec: { template: 'busybox', resources: { processes: 100 } }, status: { phase: 'Running', initPid: pid } });
}

const reader = new UsageReader(new CgroupV1(join(root, 'cg')), join(root, 'proc'));
const runtime = { readUsage: (uid: string, pid?: number) => reader.read({ cgroupPath: cgroupPath(uid), pid }), diskUsage: async () => undefined } as unknown as VERuntime;
let writes = 0;
const client = { patchStatus: async () => (writes++, {}) } as unknown as ResourceClient<VirtualEnvironment>;
const refresher = new BeancounterRefresher({ runtime, client, ves: () => ves, log: silentLogger, metrics: new BeancounterMetrics(), minPublishMs: 0 });

const cpu: number[] = [];
const wall: number[] = [];
for (let r = 0; r < rounds; r++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const res = await refresher.refresh();
  wall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
  if (res.failed) throw new Error(`${res.failed} VEs failed to read`);
}
rmSync(root, { recursive: true, force: true });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`beancounter refresh, ${count} VEs (cgroup v1 fixture trees, 3 processes each), ${rounds} passes:`);
console.log(`  agent CPU per pass: median ${median(cpu).toFixed(1)} ms (first ${cpu[0]!.toFixed(1)} ms), ${(median(cpu) / count).toFixed(3)} ms per VE`);
console.log(`  wall per pass:      median ${median(wall).toFixed(1)} ms`);
console.log(`  target 50 ms CPU:   ${(median(cpu) / 50).toFixed(2)}× of target; status writes ${writes} (${count} on the first pass, then only changed rows)`);
