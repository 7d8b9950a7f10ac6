// --bpf-root, as every command that reads or writes a running agent's pinned
// maps takes it: one definition, one default.
import { Option } from 'commander';

/** Where the agent pins its maps unless told otherwise (Cilium's /sys/fs/bpf/tc/globals, ours). */
export const DEFAULT_ROOT = '/sys/fs/bpf/tsct';

export function rootOption(): Option {
  return new Option('--bpf-root <dir>', 'folder on bpffs where the agent pins its maps').default(
    process.env.TSCT_BPF_ROOT ?? DEFAULT_ROOT,
  );
}
