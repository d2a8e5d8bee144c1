// src/api may not import core, so its validation errors carry the same stable shape as
// core's KvzError (`code: 'Invalid'`, the field in details) without depending on it.

export interface InvalidFieldError extends Error {
  code: 'Invalid';
  details: { field: string };
}

export function invalidField(field: string, reason: string): InvalidFieldError {
  const err = new Error(`${field}: ${reason}`) as InvalidFieldError;
  err.name = 'InvalidFieldError';
  err.code = 'Invalid';
  err.details = { field };
  return err;
}
