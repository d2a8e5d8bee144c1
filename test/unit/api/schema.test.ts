// CRD schema validation: pruning, defaulting, field paths and reasons (src/api/schema.ts).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileCrd, compileSchema, formatFieldErrors, loadCrds } from '../../../src/api/index.js';

const crd = loadCrds().find((c) => c.metadata.name === 'virtualenvironments.kubevz.io');
if (!crd) throw new Error('VE CRD not found in crds/');
const validate = compileCrd(crd).get('v1alpha1');
if (!validate) throw new Error('no v1alpha1 validator');

const ve = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: 'kubevz.io/v1alpha1', kind: 'VirtualEnvironment', metadata: { name: 'x', labels: { a: 'b' }, annotations: { k: 'v' } }, spec, ...extra,
});

describe('schema validation', () => {
  it('loads the CRDs in crds/', () => {
    assert.ok(loadCrds().length >= 1);
  });

  it('accepts a good object and applies defaults, leaving metadata alone', () => {
    const r = validate(ve({ template: 'busybox', resources: { memory: { limit: '512Mi' }, cpu: { limit: 2 } } }));
    assert.deepEqual(r.errors, []);
    assert.equal((r.object.spec as Record<string, unknown>).powerState, 'Running');
    assert.equal((r.object.spec as Record<string, unknown>).onBoot, true);
    assert.deepEqual(r.object.metadata, { name: 'x', labels: { a: 'b' }, annotations: { k: 'v' } });
  });

  it('prunes unknown fields and reports their paths; the input is not modified', () => {
    const input = ve({ template: 't', extra: 1, resources: { memory: { limit: '1Gi', bogus: true } } }, { junk: {} });
    const r = validate(input);
    assert.deepEqual(r.pruned.sort(), ['junk', 'spec.extra', 'spec.resources.memory.bogus']);
    assert.equal((r.object.spec as Record<string, unknown>).extra, undefined);
    assert.equal((input.spec as Record<string, unknown>).extra, 1);
  });

  it('a null for a defaulted field gets the default', () => {
    const r = validate(ve({ template: 't', powerState: null }));
    assert.equal((r.object.spec as Record<string, unknown>).powerState, 'Running');
  });

  it('reports every failing field with a path and reason', () => {
    const r = validate(
      ve(
        {
          powerState: 'Maybe',
          hostname: 'Bad_Host',
          resources: { cpu: { units: 1, limit: true }, memory: { limit: [1] }, processes: 'lots' },
          network: { addresses: ['10.0.0.1/24', 'nope'] },
        },
        { status: { conditions: [{ type: 'Ready', status: 'True', reason: 'r', message: '', lastTransitionTime: 'yesterday' }] } },
      ),
    );
    const byField = Object.fromEntries(r.errors.map((e) => [e.field, e]));
    assert.equal(byField['spec.template']?.reason, 'FieldValueRequired');
    assert.equal(byField['spec.template']?.message, 'Required value');
    assert.equal(byField['spec.powerState']?.reason, 'FieldValueNotSupported');
    assert.match(byField['spec.powerState']?.message ?? '', /Unsupported value: "Maybe": supported values: "Running", "Stopped"/);
    assert.equal(byField['spec.hostname']?.reason, 'FieldValueInvalid');
    assert.match(byField['spec.resources.cpu.units']?.message ?? '', /greater than or equal to 8/);
    assert.equal(byField['spec.resources.cpu.limit']?.reason, 'FieldValueTypeInvalid');
    assert.equal(byField['spec.resources.memory.limit']?.reason, 'FieldValueTypeInvalid');
    assert.equal(byField['spec.resources.processes']?.reason, 'FieldValueTypeInvalid');
    assert.ok(byField['spec.network.addresses[1]']);
    assert.ok(!byField['spec.network.addresses[0]']);
    assert.match(byField['status.conditions[0].lastTransitionTime']?.message ?? '', /date-time/);
    assert.match(formatFieldErrors(r.errors), /^\[spec\.template: Required value, /);
  });

  it('int-or-string accepts both; maxItems and maxLength report Too many / Too long', () => {
    assert.deepEqual(validate(ve({ template: 't', resources: { memory: { limit: 1024 }, cpu: { limit: '150%' } } })).errors, []);
    const many = Array.from({ length: 17 }, (_, i) => `10.0.0.${i}/24`);
    const r = validate(ve({ template: 'x'.repeat(300), network: { addresses: many } }));
    const reasons = Object.fromEntries(r.errors.map((e) => [e.field, e.reason]));
    assert.equal(reasons['spec.template'], 'FieldValueTooLong');
    assert.equal(reasons['spec.network.addresses'], 'FieldValueTooMany');
  });

  it('preserve-unknown-fields, additionalProperties maps, nullable, unknown formats, int64', () => {
    const v = compileSchema({
      type: 'object',
      properties: {
        spec: {
          type: 'object',
          properties: {
            opaque: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
            env: { type: 'object', additionalProperties: { type: 'string' } },
            maybe: { type: 'string', nullable: true },
            size: { type: 'integer', format: 'int64', default: 3 },
            weird: { type: 'string', format: 'no-such-format' },
            list: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer', default: 1 } } } },
          },
        },
      },
    });
    const r = v({ spec: { opaque: { any: { thing: 1 } }, env: { A: 'x', B: 2 }, maybe: null, weird: 'whatever', list: [{}, { n: 5, drop: 1 }] } });
    assert.deepEqual((r.object.spec as Record<string, unknown>).opaque, { any: { thing: 1 } });
    assert.equal((r.object.spec as Record<string, unknown>).maybe, null);
    assert.equal((r.object.spec as Record<string, unknown>).size, 3);
    assert.deepEqual((r.object.spec as Record<string, unknown>).list, [{ n: 1 }, { n: 5 }]);
    assert.deepEqual(r.pruned, ['spec.list[1].drop']);
    assert.deepEqual(r.errors.map((e) => e.field), ['spec.env.B']);
  });
});
