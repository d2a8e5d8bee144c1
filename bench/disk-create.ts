// Benchmark: making a VE's root on its own disk — sparse image + mkfs (lazy init) + loop mount +
// overlay — step by step, beside copying the template tree (LXC's dir backend) in the same run,
// and the freeze window of cloning a running VE's image. Medians; asserts nothing (shared,
// noisy machines). Root: `node dist/bench/disk-create.js [rounds]`.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { silentLogger } from '../src/core/logger.js';
import { createImage, diskPaths, mountImage, unmountImage, removeImage } from '../src/runtime/disk-image.js';
import { mountRootfs, rootfsPaths, unmountRootfs } from '../src/runtime/rootfs.js';
import { TemplateCache } from '../src/runtime/templates.js';

const run = promisify(execFile);
const rounds = Number(process.argv[2] ?? 15);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const dir = mkdtempSync(join(tmpdir(), 'kvz-bench-disk-'));
try {
  const templates = new TemplateCache({ dir: join(dir, 'templates'), busybox: '/bin/busybox', log: silentLogger, usedBy: async () => [] });
  const { rootfs: lower } = await templates.ensure('busybox');
  const t: Record<'mkfs' | 'mount' | 'overlay' | 'total' | 'copy' | 'teardown', number[]> = { mkfs: [], mount: [], overlay: [], total: [], copy: [], teardown: [] };
  for (let i = 0; i < rounds; i++) {
    const ve = join(dir, `ve${i}`);
    const p = rootfsPaths(ve);
    const d = diskPaths(ve);
    await run('mkdir', ['-p', ve]);
    const t0 = performance.now();
    await createImage(d, { sizeBytes: 2 * 1024 ** 3 });
    const t1 = performance.now();
    await mountImage(d, { fresh: true });
    const t2 = performance.now();
    await mountRootfs(lower, p);
    const t3 = performance.now();
    t.mkfs.push(t1 - t0);
    t.mount.push(t2 - t1);
    t.overlay.push(t3 - t2);
    t.total.push(t3 - t0);
    const c0 = performance.now();
    await run('cp', ['-a', lower, join(ve, 'copy')]);
    t.copy.push(performance.now() - c0);
    const r0 = performance.now();
    await unmountRootfs(p);
    await unmountImage(d);
    await removeImage(d);
    t.teardown.push(performance.now() - r0);
    rmSync(ve, { recursive: true, force: true });
  }
  const f = (xs: number[]) => `${median(xs).toFixed(1)} ms`;
  console.log(`rounds ${rounds} (busybox template; 2Gi sparse image)`);
  console.log(`  sparse file + mkfs.ext4 (lazy init): ${f(t.mkfs)}`);
  console.log(`  loop mount:                          ${f(t.mount)}`);
  console.log(`  overlay mount:                       ${f(t.overlay)}`);
  console.log(`  image + mounts total:                ${f(t.total)}`);
  console.log(`  cp -a of the template tree:          ${f(t.copy)}`);
  console.log(`  unmount + detach + remove:           ${f(t.teardown)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
