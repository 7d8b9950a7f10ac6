// A file the agent follows (--services-file, --policy-file): its folder is
// watched, not the file, because editors replace a file rather than write it;
// a burst of events is one reload, after the writes have settled.
import * as fs from 'node:fs';
import * as path from 'node:path';

const RELOAD_DEBOUNCE_MS = 200;

export interface FileWatch {
  stop(): void;
}

/** Calls reload once the file has changed and been quiet for a moment. */
export function watchFile(file: string, reload: () => void, debounceMs = RELOAD_DEBOUNCE_MS): FileWatch {
  let timer: NodeJS.Timeout | null = null;
  const watcher = fs.watch(path.dirname(path.resolve(file)), (_event, name) => {
    if (name !== path.basename(file)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(reload, debounceMs);
  });
  return {
    stop() {
      if (timer) clearTimeout(timer);
      watcher.close();
    },
  };
}
