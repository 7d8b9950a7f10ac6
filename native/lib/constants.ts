/** Kernel map types (enum bpf_map_type), by the names bpftool prints. */
export const MapType = {
  hash: 1,
  array: 2,
  prog_array: 3,
  perf_event_array: 4,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lru_percpu_hash: 10,
  lpm_trie: 11,
  array_of_maps: 12,
  hash_of_maps: 13,
  ringbuf: 27,
} as const;

export function mapTypeName(type: number): string {
  for (const [name, value] of Object.entries(MapType)) if (value === type) return name;
  return `type ${type}`;
}

/** Kernel program types (enum bpf_prog_type). */
export const ProgType = {
  sched_cls: 3,
  xdp: 6,
  syscall: 31,
} as const;

/** Update flags for map writes. */
export const UpdateFlags = {
  any: 0,
  noExist: 1,
  exist: 2,
} as const;

/** tc verdicts a SEC("tc") program returns. */
export const TcAction = {
  unspec: -1,
  ok: 0,
  shot: 2,
  redirect: 7,
} as const;

/** XDP verdicts. */
export const XdpAction = {
  aborted: 0,
  drop: 1,
  pass: 2,
  tx: 3,
  redirect: 4,
} as const;
