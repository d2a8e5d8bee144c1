// Usage text for every kvz command (`kvz help`, `kvz help CMD`, `kvz CMD --help`).

export const COMMANDS = ['up', 'apply', 'get', 'delete', 'exec', 'enter', 'create', 'start', 'stop', 'restart', 'suspend', 'resume', 'migrate', 'destroy', 'status', 'list', 'clone', 'template', 'set', 'beancounters', 'top', 'controller', 'node-agent', 'version', 'help'] as const;
export type CommandName = (typeof COMMANDS)[number];

const CONNECTION = `  --kubeconfig FILE   kubeconfig to use [--kubeconfig, $KUBECONFIG, /var/lib/kubevz/kubeconfig, ~/.kube/config]
  --state-dir DIR     kubevz state directory; its kubeconfig is tried after $KUBECONFIG [/var/lib/kubevz]`;

const VERB_COMMON = `  -n, --namespace NS       namespace [default]
  -o, --output FORMAT      print the resulting object as json or yaml
  --wait BOOL              wait for the node agent to get there [true]
  --timeout DURATION       give up waiting after this long [2m]`;

const RAW_USAGE: Record<CommandName, string> = {
  up: `Usage: kvz up [flags]

Runs the single-host stack: embedded API server, controller, node agent, watched directory.
Run \`kvz up --help\` for its flags.
`,
  apply: `Usage: kvz apply -f FILE|DIR|- [-f ...] [-R] [-n NAMESPACE] [--force-conflicts]

Creates or updates the objects in YAML files (every document of every *.yaml/*.yml in a
directory) with server-side apply under the field manager "kvz". Fields dropped from a
manifest since the last apply are removed from the object by the server.

Flags:
  -f, --filename PATH   file, directory or - for stdin (repeatable)
  -R, --recursive       also read subdirectories of a directory
  -n, --namespace NS    namespace for objects whose manifest has none [default]
  --force-conflicts     take over fields another field manager set to another value
                        (otherwise such a conflict is reported and that object is not changed)
  --field-manager NAME  apply as another field manager [kvz]
${CONNECTION}
`,
  get: `Usage: kvz get ve|vem [NAME] [-o yaml|json|wide|name] [-n NAMESPACE | -A]

Lists virtual environments (NAME PHASE NODE IP READY AGE), or shows one; \`kvz get vem\` lists
migrations (NAME VE MODE SOURCE TARGET PHASE DOWNTIME AGE).

Flags:
  -o, --output FORMAT    yaml, json, wide (adds TEMPLATE, HOSTNAME) or name
  -n, --namespace NS     namespace [default]
  -A, --all-namespaces   list across all namespaces
${CONNECTION}
`,
  delete: `Usage: kvz delete ve NAME [NAME...] [-n NAMESPACE] [--wait=false] [--timeout DURATION]

Deletes virtual environments and waits until they are gone (the node agent has cleaned up the host).

Flags:
  -n, --namespace NS   namespace [default]
  --wait BOOL          wait until the objects are gone [true]
  --timeout DURATION   give up waiting after this long (30s, 5m); 0 waits forever [0]
${CONNECTION}
`,
  exec: `Usage: kvz exec NAME [-n NAMESPACE] [--node-name NODE] [--state-dir DIR] -- COMMAND [ARGS...]

Runs a command inside a running virtual environment on this node and exits with its exit code.
A terminal is allocated when stdin is a terminal. Needs the rights of the node agent (root).

Flags:
  -n, --namespace NS   namespace [default]
  --node-name NODE     this node's name, as the node agent uses it [the host name]
${CONNECTION}
`,
  enter: `Usage: kvz enter NAME [-n NAMESPACE] [--node-name NODE] [--state-dir DIR]

Opens root's login shell inside a running virtual environment on this node, as login(1) would:
the shell and home from the VE's /etc/passwd (else /bin/sh and /root), HOME, SHELL, USER,
LOGNAME and your TERM (else xterm); exits with the shell's exit code. Needs root, like exec.

Flags:
  -n, --namespace NS   namespace [default]
  --node-name NODE     this node's name, as the node agent uses it [the host name]
${CONNECTION}
`,
  create: `Usage: kvz create NAME --template T [--memory Q] [--cpus N] [--disk Q] [--ip CIDR]... [flags]

Declares a new virtual environment and waits until it runs (or is Stopped with --stopped).

Flags:
  -t, --template NAME      VETemplate to build it from ("busybox" is built in)
  --memory QUANTITY        memory limit (512Mi)
  --swap QUANTITY          swap on top of the memory limit (needs --memory)
  --cpus N                 whole CPUs (2) or a CPU cap in cores (1.5)
  --cpu-units N            relative CPU weight (OpenVZ cpuunits)
  --disk QUANTITY          size of the VE's own filesystem (2Gi)
  --processes N            process limit (numproc)
  --ip CIDR                address with prefix (10.213.0.10/24), repeatable; none = allocated
  --hostname NAME          hostname [the VE name]
  --node NAME              pin to this node instead of letting the controller choose
  --node-selector K=V      only nodes whose VENode has this label (repeatable)
  --stopped                declare it Stopped
${VERB_COMMON}
${CONNECTION}
`,
  start: `Usage: kvz start NAME [flags]

Sets spec.powerState to Running and waits until the VE is Ready.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  stop: `Usage: kvz stop NAME [flags]

Sets spec.powerState to Stopped and waits until the node agent has stopped the VE.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  restart: `Usage: kvz restart NAME [flags]

Asks the node agent to restart the VE (a new init) through the annotation
kubevz.io/restart-requested, and waits until it runs again. A stopped VE is started.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  suspend: `Usage: kvz suspend NAME [flags]

Sets spec.powerState to Suspended: the node agent checkpoints the VE (processes, memory, open
connections) to its state directory and stops it; \`kvz resume\` restores it. With --wait, waits
until the VE is Suspended.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  resume: `Usage: kvz resume NAME [flags]

Sets spec.powerState back to Running: a suspended VE is restored from its checkpoint. With
--wait, waits until the VE is Running and Ready.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  migrate: `Usage: kvz migrate NAME [--to NODE] [--offline] [--dry-run] [--max-downtime MS] [--timeout S] [--no-wait]

Moves a VE to another node by creating a VEMigration (like vzmigrate --online), then follows it:
every phase as it happens with the time since the start, the stage timings, and at the end the
downtime, the method and the bytes moved. Exit code 0 when it Succeeded, 1 when it Failed (the
reason, message and the tail of CRIU's log are printed; the VE keeps running on its source).
Live (default): checkpoint, transfer, restore — processes, memory and TCP connections are kept.

Flags:
  --to NODE            target node [the controller picks a Ready node with room]
  --offline            stop, move the disk, start (for VEs that cannot be checkpointed)
  --dry-run            run every pre-flight check and change nothing
  --max-downtime MS    fail early when the downtime estimate exceeds this [5000]
  --allow-downtime-overrun  go ahead even when the estimate exceeds --max-downtime
  --timeout S          the whole migration must end within S seconds [600]
  --no-wait            create the migration and return
  -n, --namespace NS   namespace [default]
  -o, --output FORMAT  print the final VEMigration as json or yaml
${CONNECTION}
`,
  destroy: `Usage: kvz destroy NAME [flags]

Deletes the VE and waits until its node agent has removed it from the host.

Flags:
${VERB_COMMON}
${CONNECTION}
`,
  status: `Usage: kvz status NAME [-n NAMESPACE] [-o json|yaml]

Shows where a VE runs, its state, addresses, init PID and conditions.

Flags:
  -n, --namespace NS     namespace [default]
  -o, --output FORMAT    json or yaml
${CONNECTION}
`,
  list: `Usage: kvz list [-n NAMESPACE | -A] [-o json|yaml]

Lists VEs like vzlist -a: NAME NPROC STATUS IP_ADDR HOSTNAME NODE.

Flags:
  -n, --namespace NS      namespace [default]
  -A, --all-namespaces    every namespace
  -o, --output FORMAT     json or yaml
${CONNECTION}
`,
  controller: `Usage: kvz controller [--kubeconfig FILE] [flags]

Runs the controller (scheduling, node health) while it holds the Lease
<lease-namespace>/kubevz-controller, so several replicas never act at once. Without
--kubeconfig and $KUBECONFIG inside a pod it uses the service account. Exits 1 when it loses
the lease (its Deployment starts a fresh one), 0 on SIGTERM.

Flags:
  --lease-namespace NS    namespace of the Lease [$POD_NAMESPACE or kubevz-system]
  --identity ID           this candidate's identity [host_random]
  --lease-duration D      [15s]
  --renew-deadline D      [10s]
  --retry-period D        [2s]
  --node-grace D          heartbeat age after which a node is NotReady [40s]
${CONNECTION}
`,
  'node-agent': `Usage: kvz node-agent --node-name NAME [--kubeconfig FILE] [flags]

Runs the node agent: registers the VENode (capacity, features), heartbeats, and converges
the VEs bound to this node. Needs root.

Flags:
  --node-name NAME      this node's name [$NODE_NAME]
  --bridge NAME         node bridge for VE networking [kvzbr0]; an existing bridge (a LAN
                        bridge) is attached to and never changed or deleted, a missing one is
                        created with the gateway address
  --subnet CIDR         VE subnet of this node [10.213.0.0/24]
  --gateway IP          VEs' default gateway [an existing bridge's own address in the subnet,
                        else the subnet's first address]
  --subnet6 CIDR        IPv6 subnet of this node (e.g. fd00:213::/64) [none]
  --node-label K=V      label of the VENode, for spec.nodeSelector (repeatable)
  --heartbeat D         heartbeat period [10s]
  --migration-listen HOST:PORT
                        serve the live-migration data channel here (as a migration target);
                        without it this node cannot receive migrated VEs
  --migration-address IP
                        the address other nodes reach the channel at [the bound address]
  --expedited-rcu=false leave the kernel's RCU alone during dumps and restores; by default
                        /sys/kernel/rcu_expedited is on while a VE stands frozen for one (about
                        100 ms less downtime per migration) and put back after
  --metrics-listen HOST:PORT
                        serve Prometheus /metrics here: the VEs' beancounters as gauges
                        kubevz_beancounter_{held,maxheld,barrier,limit,failcnt} labelled
                        namespace, name, resource; plain HTTP, no auth [off]
${CONNECTION}
`,
  template: `Usage: kvz template list [-o yaml|json|name]
       kvz template build NAME [--node NODE] [--wait=false] [--timeout DURATION]
       kvz template import NAME FILE [--init FLAVOR] [--sha256 HEX] [--wait=false] [--timeout DURATION]
       kvz template delete NAME [NAME...]

Template caches (VETemplate, short name vet): a debootstrap recipe, the built-in busybox, or an
imported root filesystem tarball (.tar, .tar.gz, .tar.xz, .tar.zst: OpenVZ precreated caches,
LXC rootfs). Node agents build a template when the first VE needs it, or now with \`build\`
(a progress bar on a terminal). \`import\` declares a tarball template from a file on this host
and builds it. \`delete\` refuses while VEs use the template and names them.

Flags:
  --node NODE          follow the build on this node [the first node that picks it up]
  --init FLAVOR        import: the tarball's init (auto, systemd, sysvinit, busybox, other) [auto]
  --sha256 HEX         import: the file's expected SHA-256; the build fails on a mismatch
  --wait BOOL          wait for the build [true]
  --timeout DURATION   give up waiting after this long (5m); 0 waits forever [0]
  -o, --output FORMAT  list: yaml, json or name
${CONNECTION}
`,
  clone: `Usage: kvz clone SRC NEW [-n NAMESPACE] [--ip ADDR/PREFIX ...] [--hostname NAME] [--wait=false] [--timeout DURATION]

Creates virtual environment NEW from SRC's disk (a consistent copy of its files; SRC may be
running and keeps running) with SRC's template and resources and its own identity: hostname
NEW, its own MAC, and an allocated address unless --ip is given (SRC's addresses are never
copied). The copy is made on SRC's node. Declaratively: spec.cloneFrom: SRC.

Flags:
  -n, --namespace NS   namespace of both VEs [default]
  --ip ADDR/PREFIX     address for the clone (repeatable) [allocated]
  --hostname NAME      the clone's hostname [NEW]
  --wait BOOL          wait until the clone runs [true]
  --timeout DURATION   give up waiting after this long [2m]
${CONNECTION}
`,
  version: `Usage: kvz version

Prints the kvz version.
`,
  set: `Usage: kvz set NAME [--memory Q] [--cpu-limit 50%] [--processes N] [--disk Q] ... [--wait] [-o json|yaml] [flags]

Changes a VE's resources (spec.resources). The node agent applies every field live, except
--open-files (RLIMIT_NOFILE of init): that one is listed in status.pendingResources until the
VE restarts (kvz restart NAME). --disk grows the VE's disk image (online where the node
supports it, else at the next start); a disk never shrinks: a smaller size is refused and
shown in status.pendingResources. "none" removes a limit (not for --disk).

Flags:
  --memory QUANTITY      memory limit (1Gi)
  --swap QUANTITY        swap on top of the memory limit
  --guarantee QUANTITY   memory kept under host pressure (soft limit)
  --cpu-units N          relative CPU weight (OpenVZ cpuunits; 1000 = normal)
  --cpu-limit CPU        hard CPU cap: percent of one CPU (50%) or cores (1.5)
  --cpus N               whole CPUs the VE may use at full speed
  --cpuset LIST          host CPUs the VE may run on (0-1, 0,2)
  --processes N          processes and threads (numproc)
  --open-files N         open files per process (restart needed)
  --disk QUANTITY        size of the VE's disk (vzctl --diskspace; 20Gi); grows only
  --inodes N             inodes of the disk (vzctl --diskinodes); fixed when the disk is
                         made, so a count above the disk's stays pending
  --io-weight N          relative I/O weight, 10..1000
  --read-bps QUANTITY    read bandwidth per second on the VE's disk (10Mi)
  --write-bps QUANTITY   write bandwidth per second on the VE's disk
  --read-iops N          read operations per second
  --write-iops N         write operations per second
  -n, --namespace NS     namespace [default]
  -o, --output FORMAT    print the resulting object as json or yaml
  --wait                 wait until the node agent reports the change applied (or pending)
  --timeout DURATION     give up waiting after this long [60s]
${CONNECTION}
`,
  beancounters: `Usage: kvz beancounters NAME [-n NAMESPACE]

Prints the VE's resource accounting like /proc/user_beancounters: held, maxheld, barrier,
limit, failcnt per resource. physpages, swappages, oomguarpages in 4 KiB pages (failcnt of
oomguarpages = OOM kills); diskspace = 1 KiB blocks in use on the VE's filesystem image and
diskinodes = inodes in use, both re-read every 10 s, barrier = limit = the image's size/inode
count; their failcnt is always 0 (a write refused with ENOSPC fails inside the VE's own
filesystem, and the host has no counter to read it from) and their maxheld equals held (no
peak is kept); numfile = open fds of all the VE's
processes, recounted every 10 s (its limit is per process); numtcpsock = TCP sockets in the VE's
netns, numothersock = all its other sockets (UDP, UNIX, netlink, …): accounted, not enforced;
limits changed by hand on the host show within 10 s;
cpu = millicores used over the last refresh (barrier = units, limit = cap, failcnt = throttled
periods). Unlimited prints as 9223372036854775807.

Flags:
  -n, --namespace NS   namespace [default]
${CONNECTION}
`,
  top: `Usage: kvz top [--node NODE] [-n NAMESPACE | -A] [--once] [--interval DURATION]

Shows every VE with CPU %, memory, processes, disk and network from the node agents'
beancounters, redrawn until Ctrl-C.

Flags:
  --node NODE            only VEs on this node
  -n, --namespace NS     namespace [default]
  -A, --all-namespaces   VEs of every namespace
  --once                 print one frame and exit
  --interval DURATION    time between frames [2s]
${CONNECTION}
`,
  help: `Usage: kvz help [COMMAND]

Shows usage for kvz or one of its commands.
`,
};

/** Pads the flag column of a usage text so descriptions line up. */
function alignFlags(text: string): string {
  const rows = text.split('\n').map((l) => /^  (-\S.*?)\s{2,}(\S.*)$/.exec(l));
  const width = Math.max(0, ...rows.map((m) => (m ? (m[1] ?? '').length : 0)));
  return text
    .split('\n')
    .map((l, i) => {
      const m = rows[i];
      return m ? `  ${(m[1] ?? '').padEnd(width + 3)}${m[2] ?? ''}` : l;
    })
    .join('\n');
}

export const USAGE = Object.fromEntries(Object.entries(RAW_USAGE).map(([k, v]) => [k, alignFlags(v)])) as Record<CommandName, string>;

export const OVERVIEW = `kvz manages OS-level virtual environments (VEs) the Kubernetes way.

Usage: kvz COMMAND [flags]

Commands:
  up        run the single-host stack (API server, controller, node agent, watched directory)
  apply     create or update objects from YAML files
  get       list or show virtual environments
  delete    delete virtual environments
  exec      run a command in a virtual environment on this node
  enter     open a shell in a virtual environment on this node

vzctl-style verbs (each edits the declared state, then waits for the node to get there):
  create    declare a new VE (--template T --memory --cpus --disk --ip ...)
  start     start a VE            stop      stop a VE
  restart   restart a VE          destroy   delete a VE and its host state
  suspend   checkpoint a VE to disk       resume    restore a suspended VE
  migrate   move a VE to another node (live by default: --to NODE)
  status    show one VE           list      table of VEs, like vzlist
  clone     a new VE from another VE's disk (the source keeps running)

Templates:
  template  list, build, import or delete VE templates (VETemplate)
  set       change a VE's resources live (--memory --cpu-limit --processes ...)
  beancounters  a VE's resource accounting, like /proc/user_beancounters
  top       live CPU, memory, processes, disk and network of every VE

Processes:
  controller   the leader-elected controller (for a real cluster's Deployment)
  node-agent   a node agent (for a real cluster's DaemonSet)

Other:
  version   print the version
  help      show usage for a command

Run \`kvz help COMMAND\` for a command's flags. kubectl works against the same API.
`;

export function isCommand(s: string | undefined): s is CommandName {
  return (COMMANDS as readonly string[]).includes(s ?? '');
}
