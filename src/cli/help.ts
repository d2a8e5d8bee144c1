// Usage text for every kvz command (`kvz help`, `kvz help CMD`, `kvz CMD --help`).

export const COMMANDS = ['up', 'apply', 'get', 'delete', 'exec', 'enter', 'version', 'help'] as const;
export type CommandName = (typeof COMMANDS)[number];

const CONNECTION = `  --kubeconfig FILE   kubeconfig to use [--kubeconfig, $KUBECONFIG, /var/lib/kubevz/kubeconfig, ~/.kube/config]
  --state-dir DIR     kubevz state directory; its kubeconfig is tried after $KUBECONFIG [/var/lib/kubevz]`;

const RAW_USAGE: Record<CommandName, string> = {
  up: `Usage: kvz up [flags]

Runs the single-host stack: embedded API server, controller, node agent, watched directory.
Run \`kvz up --help\` for its flags.
`,
  apply: `Usage: kvz apply -f FILE|DIR|- [-f ...] [-R] [-n NAMESPACE]

Creates or updates the objects in YAML files (every document of every *.yaml/*.yml in a
directory). Fields dropped from a manifest since the last apply are removed from the object.

Flags:
  -f, --filename PATH   file, directory or - for stdin (repeatable)
  -R, --recursive       also read subdirectories of a directory
  -n, --namespace NS    namespace for objects whose manifest has none [default]
${CONNECTION}
`,
  get: `Usage: kvz get ve [NAME] [-o yaml|json|wide|name] [-n NAMESPACE | -A]

Lists virtual environments (NAME PHASE NODE IP READY AGE), or shows one.

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

Opens a login shell (/bin/sh -l) inside a running virtual environment on this node.

Flags:
  -n, --namespace NS   namespace [default]
  --node-name NODE     this node's name, as the node agent uses it [the host name]
${CONNECTION}
`,
  version: `Usage: kvz version

Prints the kvz version.
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
  version   print the version
  help      show usage for a command

Run \`kvz help COMMAND\` for a command's flags. kubectl works against the same API.
`;

export function isCommand(s: string | undefined): s is CommandName {
  return (COMMANDS as readonly string[]).includes(s ?? '');
}
