export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** Lines of `time level message` on stderr, from `level` up. */
export function makeLogger(
  level: Level,
  write: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Logger {
  const at = (l: Level) => (msg: string) => {
    if (ORDER[l] >= ORDER[level]) write(`${new Date().toISOString()} ${l.padEnd(5)} ${msg}`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
