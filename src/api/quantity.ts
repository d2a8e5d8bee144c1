// Kubernetes-style quantities ("512Mi", "1G", "1.5") and CPU limits ("150%", "1.5" cores),
// parsed with errors that name the field and say what is accepted.

import { invalidField } from './invalid.js';

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };

/** Bytes from a quantity: a plain number of bytes, or a number with a suffix (Ki Mi Gi Ti, k M G T). */
export function parseBytes(value: string | number, field: string): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw invalid(field, value, 'a non-negative number of bytes');
    return Math.floor(value);
  }
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]i|[kMGTPE]?)\s*$/.exec(value);
  if (!m) throw invalid(field, value, 'a quantity such as 512Mi, 2Gi or 1000000');
  const n = Number(m[1]);
  const suffix = m[2] ?? '';
  const mult = BINARY[suffix] ?? DECIMAL[suffix];
  if (mult === undefined) throw invalid(field, value, 'a known suffix (Ki, Mi, Gi, Ti, k, M, G, T)');
  return Math.floor(n * mult);
}

/** CPU limit as a fraction of CPUs: "150%" → 1.5, "1.5" or 1.5 → 1.5, "500m" → 0.5. */
export function parseCpuLimit(value: string | number, field: string): number {
  let cpus: number;
  if (typeof value === 'number') cpus = value;
  else {
    const pct = /^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$/.exec(value);
    const milli = /^\s*([0-9]+)m\s*$/.exec(value);
    const plain = /^\s*([0-9]+(?:\.[0-9]+)?)\s*$/.exec(value);
    if (pct) cpus = Number(pct[1]) / 100;
    else if (milli) cpus = Number(milli[1]) / 1000;
    else if (plain) cpus = Number(plain[1]);
    else throw invalid(field, value, 'a percent of one CPU ("150%"), cores ("1.5") or millicores ("500m")');
  }
  if (!Number.isFinite(cpus) || cpus <= 0) throw invalid(field, value, 'a CPU amount greater than zero');
  return cpus;
}

function invalid(field: string, value: unknown, expected: string): Error {
  return invalidField(field, `invalid value ${JSON.stringify(value)}: expected ${expected}`);
}
