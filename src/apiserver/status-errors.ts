// Kubernetes `Status` errors (apimachinery's StatusError): every non-2xx answer is one of these,
// so kubectl prints `Error from server (<reason>): <message>` and client-node gets `{code, body}`.

import type { FieldError } from '../api/index.js';
import { formatFieldErrors } from '../api/index.js';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: { reason: string; message: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface StatusBody {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure' | 'Success';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code: number;
}

/** Which resource an error is about: `qualified` is `plural.group` (or just `plural` for core). */
export interface ResourceRef {
  group: string;
  plural: string;
}

function qualified(r: ResourceRef): string {
  return r.group ? `${r.plural}.${r.group}` : r.plural;
}

export class ApiError extends Error {
  readonly code: number;
  readonly reason: string;
  readonly details: StatusDetails | undefined;

  constructor(code: number, reason: string, message: string, details?: StatusDetails) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.reason = reason;
    this.details = details;
  }

  toStatus(): StatusBody {
    const s: StatusBody = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code };
    if (this.details) s.details = this.details;
    return s;
  }
}

export function isApiError(err: unknown): err is ApiError {
  return err instanceof ApiError;
}

const detailsOf = (r: ResourceRef, name: string): StatusDetails => ({ name, group: r.group, kind: r.plural });

export const errors = {
  notFound: (r: ResourceRef, name: string) => new ApiError(404, 'NotFound', `${qualified(r)} "${name}" not found`, detailsOf(r, name)),
  pathNotFound: () => new ApiError(404, 'NotFound', 'the server could not find the requested resource', {}),
  alreadyExists: (r: ResourceRef, name: string) => new ApiError(409, 'AlreadyExists', `${qualified(r)} "${name}" already exists`, detailsOf(r, name)),
  conflict: (r: ResourceRef, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again') =>
    new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, detailsOf(r, name)),
  invalid: (r: ResourceRef, name: string, causes: FieldError[]) =>
    new ApiError(422, 'Invalid', `${qualified(r)} "${name}" is invalid: ${formatFieldErrors(causes)}`, {
      ...detailsOf(r, name),
      causes: causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field })),
    }),
  badRequest: (message: string) => new ApiError(400, 'BadRequest', message),
  methodNotAllowed: () => new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {}),
  expired: (message: string) => new ApiError(410, 'Expired', message),
  unsupportedMediaType: (accepted: string[]) =>
    new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`),
  unauthorized: () => new ApiError(401, 'Unauthorized', 'Unauthorized'),
  internal: (message: string) =>
    new ApiError(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ reason: 'UnexpectedServerResponse', message }] }),
};

/** The Status a successful immediate DELETE returns. */
export function successStatus(r: ResourceRef, name: string, uid: string | undefined): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: r.group, kind: r.plural, ...(uid ? { uid } : {}) } };
}
