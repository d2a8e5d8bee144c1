// `kvz enter` through a real terminal: `kvz up` runs a busybox VE, and the real kvz CLI is driven
// through a pseudo-terminal (python3's pty module: Node has none) the way a person types. Checks
// the shell has a terminal, root's home and shell come from the VE's /etc/passwd, the caller's
// TERM passes through, job control works, and the shell's exit code is kvz's.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test, type TestContext } from 'node:test';
import { kvzBin, startKvzUp, type Stack } from '../helpers/kvz-up.js';
import { missingPrereqs, requirePrereqs, uniqueSuffix } from '../helpers/prereq.js';

const prereqs = { root: true, binaries: ['runc', 'ip', 'python3', 'mkfs.ext4', 'losetup'] };
const skip = missingPrereqs(prereqs).length > 0;
const guard = (t: TestContext) => requirePrereqs(t, prereqs);

/**
 * Runs argv on a new pty: types each step, then a marker command whose output (not its echo)
 * ends the step's segment, then `final`, and waits for the exit. Prints JSON: the segments,
 * the exit code, and everything the terminal showed.
 */
const PTY_DRIVER = String.raw`
import json, os, pty, select, signal, sys, time
req = json.load(sys.stdin)
pid, fd = pty.fork()
if pid == 0:
    os.execve(req["argv"][0], req["argv"], req["env"])
buf = b""
def read_until(token, timeout):
    global buf
    end = time.time() + timeout
    while token is None or token not in buf:
        left = end - time.time()
        if left <= 0:
            raise TimeoutError("no %r within %ss" % (token, timeout))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            if token is None:
                return
            raise EOFError("the terminal closed before %r" % token)
        buf += chunk
segments = []
error = None
code = None
try:
    for i, step in enumerate(req["steps"]):
        n = 7000 + i
        start = len(buf)
        # The marker's output is __M7000__ etc.; its echo shows the $((...)), so it never matches.
        os.write(fd, (step + "\necho __M$((%d+0))__\n" % n).encode())
        token = ("__M%d__" % n).encode()
        read_until(token, 60)
        segments.append(buf[start:buf.index(token, start)].decode("utf-8", "replace"))
    os.write(fd, (req["final"] + "\n").encode())
    read_until(None, 60)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
except Exception as e:
    error = repr(e)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({"segments": segments, "code": code, "error": error, "raw": buf.decode("utf-8", "replace")}))
`;

interface PtyResult {
  segments: string[];
  code: number | null;
  error: string | null;
  raw: string;
}

function onPty(argv: string[], env: NodeJS.ProcessEnv, steps: string[], final: string): Promise<PtyResult> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', PTY_DRIVER], { maxBuffer: 16 << 20, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`pty driver failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as PtyResult);
    });
    child.stdin!.end(JSON.stringify({ argv, env, steps, final }));
  });
}

let stack: Stack;
const name = `enter-${uniqueSuffix()}`;

before(async () => {
  if (skip) return;
  stack = await startKvzUp({ logLevel: 'info' });
  await stack.kvz(['create', name, '--template', 'busybox', '--ip', `10.213.${stack.net}.31/24`, '--processes', '100']);
});
after(async () => {
  if (!stack) return;
  await stack.kvz(['delete', 've', name, '--timeout', '60s'], { allowFail: true });
  await stack.stop();
});

/** `kvz enter NAME` on a pty, with the caller's TERM and a HOME of the host that must not leak in. */
const enter = (steps: string[], final: string) =>
  onPty([process.execPath, kvzBin, '--kubeconfig', stack.kubeconfig, 'enter', name], { PATH: process.env.PATH, TERM: 'vt220', HOME: stack.stateDir, KVZ_LOG_LEVEL: 'warn' }, steps, final);

test('kvz enter gives a login shell on a terminal: tty, HOME, TERM, job control, and its exit code', async (t) => {
  if (!guard(t)) return;
  const r = await enter(['tty', 'echo "home=$HOME term=$TERM shell=$SHELL user=$USER" ; pwd', 'id -u', 'echo "flags=$-"', 'sleep 100 & echo "bg=$!"', 'jobs', 'kill %1; echo "kill-rc=$?"', 'wait; jobs; echo done'], 'exit 3');
  assert.equal(r.error, null, `${r.error}\n${r.raw}`);
  const [tty, env, id, flags, bg, jobs, kill, after] = r.segments;
  assert.match(tty!, /\/dev\/pts\/\d+/, 'the shell has a terminal');
  assert.match(env!, /home=\/root term=vt220 shell=\/bin\/sh user=root/, 'HOME from the VE\'s passwd, the caller\'s TERM');
  assert.match(env!, /^\/root\r?$/m, 'it starts in root\'s home');
  assert.match(id!, /^0\r?$/m);
  assert.match(flags!, /flags=\S*m/, 'job control (monitor) is on');
  assert.match(flags!, /flags=\S*i/, 'the shell is interactive');
  assert.match(bg!, /bg=\d+/, 'a background job starts');
  assert.match(jobs!, /\[1\]\+?\s+Running\s+sleep 100/);
  assert.match(kill!, /kill-rc=0/);
  assert.doesNotMatch(after!, /Running\s+sleep 100/, 'the job is gone');
  assert.equal(r.code, 3, `kvz enter exits with the shell's exit code\n${r.raw}`);
});

test('kvz enter takes root\'s shell and home from the VE\'s /etc/passwd', async (t) => {
  if (!guard(t)) return;
  const edit = "mkdir -p /srv/admin && sed -i 's#^root:.*#root:x:0:0:root:/srv/admin:/bin/ash#' /etc/passwd";
  assert.equal((await stack.kvz(['exec', name, '--', 'sh', '-c', edit])).code, 0);
  const r = await enter(['echo "home=$HOME shell=$SHELL"; pwd; cat /proc/$$/cmdline | tr "\\0" " "; echo'], 'exit');
  assert.equal(r.error, null, `${r.error}\n${r.raw}`);
  assert.match(r.segments[0]!, /home=\/srv\/admin shell=\/bin\/ash/);
  assert.match(r.segments[0]!, /^\/srv\/admin\r?$/m);
  assert.match(r.segments[0]!, /^\/bin\/ash -l\s*\r?$/m, 'the shell from passwd runs as a login shell');
  assert.equal(r.code, 0);
});
