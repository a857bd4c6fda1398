/**
 * Errors a user can fix: bad input, missing data, unknown names. The CLI prints these as one
 * line and exits with code 2; anything else is a bug and keeps its stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Throws a UserError when `condition` is false. */
export function check(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new UserError(typeof message === 'function' ? message() : message);
}
