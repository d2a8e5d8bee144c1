import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError, parseArgs, parseDuration, type FlagSpec } from '../../../src/cli/args.js';

const SPECS: FlagSpec[] = [
  { name: 'output', short: 'o', type: 'string' },
  { name: 'namespace', short: 'n', type: 'string' },
  { name: 'all-namespaces', short: 'A', type: 'boolean' },
  { name: 'wait', type: 'boolean' },
  { name: 'filename', short: 'f', type: 'string', multiple: true },
  { name: 'stdin', short: 'i', type: 'boolean' },
  { name: 'tty', short: 't', type: 'boolean' },
];

describe('parseArgs', () => {
  it('parses --x value, --x=value, -o yaml, -oyaml, -o=yaml and interleaved positionals', () => {
    assert.deepEqual(parseArgs(['ve', 'web1', '--namespace', 'prod', '-o', 'yaml'], SPECS), { flags: { namespace: 'prod', output: 'yaml' }, positionals: ['ve', 'web1'] });
    assert.deepEqual(parseArgs(['--namespace=prod', 've'], SPECS).flags, { namespace: 'prod' });
    assert.equal(parseArgs(['-oyaml'], SPECS).flags.output, 'yaml');
    assert.equal(parseArgs(['-o=json'], SPECS).flags.output, 'json');
  });

  it('booleans: bare, =false, combined short flags', () => {
    assert.equal(parseArgs(['--wait=false'], SPECS).flags.wait, false);
    assert.equal(parseArgs(['--wait'], SPECS).flags.wait, true);
    assert.deepEqual(parseArgs(['-it', 'web1'], SPECS), { flags: { stdin: true, tty: true }, positionals: ['web1'] });
    assert.equal(parseArgs(['-A'], SPECS).flags['all-namespaces'], true);
    assert.throws(() => parseArgs(['--wait=maybe'], SPECS), UsageError);
  });

  it('repeatable flags collect values', () => {
    assert.deepEqual(parseArgs(['-f', 'a.yaml', '--filename=b.yaml'], SPECS).flags.filename, ['a.yaml', 'b.yaml']);
  });

  it('everything after -- is passed through', () => {
    const p = parseArgs(['web1', '-n', 'x', '--', 'ls', '-la', '--color'], SPECS);
    assert.deepEqual(p.positionals, ['web1']);
    assert.deepEqual(p.rest, ['ls', '-la', '--color']);
    assert.equal(p.flags.namespace, 'x');
  });

  it('unknown flags and missing values are usage errors', () => {
    assert.throws(() => parseArgs(['--nope'], SPECS), /unknown flag: --nope/);
    assert.throws(() => parseArgs(['-z'], SPECS), /unknown flag: -z/);
    assert.throws(() => parseArgs(['-n'], SPECS), /flag needs a value: -n/);
    assert.throws(() => parseArgs(['--output'], SPECS), /flag needs a value: --output/);
  });

  it('a lone - is a positional', () => {
    assert.deepEqual(parseArgs(['-'], SPECS).positionals, ['-']);
  });
});

describe('parseDuration', () => {
  it('accepts units and plain seconds', () => {
    assert.equal(parseDuration('30s', 't'), 30_000);
    assert.equal(parseDuration('1m30s', 't'), 90_000);
    assert.equal(parseDuration('500ms', 't'), 500);
    assert.equal(parseDuration('2', 't'), 2000);
    assert.throws(() => parseDuration('soon', '--timeout'), /invalid duration "soon" for --timeout/);
  });
});
