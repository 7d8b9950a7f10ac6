// Errors a user can cause. Each carries one line that says what was wrong and
// what to do; the CLI prints it without a stack trace and exits non-zero.

/** A bad flag, address, file or state the user can fix: exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
