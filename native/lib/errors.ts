/**
 * Every failure of a libbpf-ts call is a BpfError: the errno, its symbolic
 * code, the libbpf or kernel call that failed, and a message that names the
 * map or program, e.g.
 *   bpf_map_update_elem(tsct_ct4_global): E2BIG: map is full
 */
export class BpfError extends Error {
  errno = 0;
  code = 'EUNKNOWN';
  /** The libbpf function or syscall that failed. */
  call = '';
  /** The map, program, path or interface it failed on. */
  subject = '';
  /** libbpf's diagnostics (the verifier log for a failed load), when there are any. */
  log?: string;

  constructor(message: string) {
    super(message);
    this.name = 'BpfError';
  }
}

export function isBpfError(e: unknown, code?: string): e is BpfError {
  return e instanceof BpfError && (code === undefined || e.code === code);
}

/** The errno of each code the TypeScript side raises itself. */
const ERRNO = { EBADF: 9, EINVAL: 22 } as const;

/**
 * A BpfError raised in TypeScript (a caller's mistake caught before the addon
 * is called), with the message and fields the addon gives its own.
 * @internal
 */
export function bpfError(call: string, subject: string, code: keyof typeof ERRNO, detail: string): BpfError {
  const err = new BpfError(`${call}(${subject}): ${code}: ${detail}`);
  err.errno = ERRNO[code];
  err.code = code;
  err.call = call;
  err.subject = subject;
  return err;
}
