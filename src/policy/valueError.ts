// The parsers of single values (a CIDR, a port range, a ct_state) know what is
// wrong but not where it was written; their callers do. A ValueError carries
// the "what is wrong; what to do" half and becomes a UsageError once the caller
// puts "file:line: " in front of it.
import { UsageError } from '../errors';
import { SourceRef, where } from './policyRule';

export class ValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValueError';
  }
}

/** Runs `parse`, turning a ValueError into a UsageError located at `source`. */
export function located<T>(source: SourceRef | undefined, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ValueError) throw new UsageError(`${where(source)}${err.message}`);
    throw err;
  }
}
