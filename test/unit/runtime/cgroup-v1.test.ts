import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CgroupV1 } from '../../../src/runtime/cgroup-v1.js';
import { createCgroupReader, detectCgroupVersion } from '../../../src/runtime/cgroup.js';

const root = mkdtempSync(join(tmpdir(), 'kvz-cgv1-'));
after(() => rmSync(root, { recursive: true, force: true }));

const UNLIMITED = '9223372036854771712';

function fixture(path: string, files: Record<string, Record<string, string>>): void {
  for (const [controller, entries] of Object.entries(files)) {
    const dir = join(root, controller, path);
    mkdirSync(dir, { recursive: true });
    for (const [name, value] of Object.entries(entries)) writeFileSync(join(dir, name), `${value}\n`);
  }
}

fixture('/kubevz/kvz-limited', {
  memory: { 'memory.limit_in_bytes': String(256 << 20), 'memory.memsw.limit_in_bytes': String(320 << 20) },
  cpu: { 'cpu.shares': '500', 'cpu.cfs_quota_us': '50000', 'cpu.cfs_period_us': '100000' },
  pids: { 'pids.max': '64' },
});
fixture('/kubevz/kvz-unlimited', {
  memory: { 'memory.limit_in_bytes': UNLIMITED, 'memory.memsw.limit_in_bytes': UNLIMITED },
  cpu: { 'cpu.shares': '1024', 'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000' },
  pids: { 'pids.max': 'max' },
});
fixture('/kubevz/kvz-noswapaccount', {
  memory: { 'memory.limit_in_bytes': String(128 << 20) },
  cpu: { 'cpu.shares': '2', 'cpu.cfs_quota_us': '-1', 'cpu.cfs_period_us': '100000' },
  pids: { 'pids.max': 'max' },
});

test('reads declared limits from the v1 files', async () => {
  const r = new CgroupV1(root);
  assert.deepEqual(await r.readLimits('/kubevz/kvz-limited'), {
    memoryBytes: 256 << 20,
    swapBytes: 64 << 20,
    cpuShares: 500,
    cpuQuotaUs: 50_000,
    cpuPeriodUs: 100_000,
    pids: 64,
  });
});

test('unlimited values come back undefined', async () => {
  assert.deepEqual(await new CgroupV1(root).readLimits('/kubevz/kvz-unlimited'), { cpuShares: 1024, cpuPeriodUs: 100_000 });
});

test('a host without swap accounting (no memsw files) still reads', async () => {
  assert.deepEqual(await new CgroupV1(root).readLimits('/kubevz/kvz-noswapaccount'), { memoryBytes: 128 << 20, cpuShares: 2, cpuPeriodUs: 100_000 });
});

test('a missing cgroup is NotFound, naming the file', async () => {
  await assert.rejects(new CgroupV1(root).readLimits('/kubevz/nope'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NotFound');
    assert.match(err.message, /kubevz\/nope\/memory\.limit_in_bytes/);
    return true;
  });
});

test('exists and version detection', async () => {
  const r = new CgroupV1(root);
  assert.equal(await r.exists('/kubevz/kvz-limited'), true);
  assert.equal(await r.exists('/kubevz/nope'), false);
  assert.equal(detectCgroupVersion(root), 'v1');
  assert.equal(createCgroupReader(root).version, 'v1');
  const v2 = mkdtempSync(join(tmpdir(), 'kvz-cgv2-'));
  writeFileSync(join(v2, 'cgroup.controllers'), 'cpu memory pids\n');
  assert.equal(detectCgroupVersion(v2), 'v2');
  rmSync(v2, { recursive: true });
});
