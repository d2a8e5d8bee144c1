// `kvz up` flags that reach the node's runtime: --expedited-rcu is on unless set to false, and a
// value other than true/false is refused with the flag named.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseUpArgs } from '../../../src/cli/up.js';

test('kvz up --expedited-rcu: on by default, =false turns it off, anything else is refused', () => {
  assert.equal(parseUpArgs([]).expediteRcu, true);
  assert.equal(parseUpArgs(['--expedited-rcu=true']).expediteRcu, true);
  assert.equal(parseUpArgs(['--expedited-rcu=false']).expediteRcu, false);
  assert.equal(parseUpArgs(['--expedited-rcu', 'false']).expediteRcu, false);
  assert.throws(() => parseUpArgs(['--expedited-rcu=off']), /--expedited-rcu=off: expected true or false/);
});
