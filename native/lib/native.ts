// The shape of the compiled addon, as lib/*.ts uses it. Not exported from the package.
import { BpfError, bpfError } from './errors';

export interface NativeMapInfo {
  name: string;
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  perCpu: boolean;
  possibleCpus: number;
}

export interface NativeBatchChunk {
  count: number;
  keys: Buffer;
  values: Buffer;
  token: Buffer | null;
  done: boolean;
}

export interface NativeMap {
  info(): NativeMapInfo;
  nextKey(key: Buffer | null): Buffer | null;
  lookupBatch(token: Buffer | null, count: number, andDelete: boolean): Promise<NativeBatchChunk>;
  updateBatch(keys: Buffer, values: Buffer, count: number, flags?: number): Promise<number>;
  deleteBatch(keys: Buffer, count: number): Promise<number>;
  mmap(): ArrayBuffer;
  pin(path: string): void;
  close(): void;
  fd(): number;
}

export interface TcAttachment {
  ifindex: number;
  attachPoint: 'ingress' | 'egress';
  handle: number;
  priority: number;
  progId: number;
}

export interface XdpAttachment {
  ifindex: number;
  mode: 'native' | 'generic' | 'auto';
  progId: number;
}

export interface NativeTestRunResult {
  retval: number;
  duration: number;
  data: Buffer | null;
  ctx: Buffer | null;
}

export interface NativeProgram {
  info(): { name: string; type: number; id: number };
  attachTc(target: string | number, point: string, opts: object): TcAttachment;
  attachXdp(target: string | number, mode: string, opts: object): XdpAttachment;
  testRun(opts: object): Promise<NativeTestRunResult>;
  pin(path: string): void;
  close(): void;
  fd(): number;
}

export interface NativeObjectMapDesc {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  internal: boolean;
}

export interface NativeObjectProgDesc {
  name: string;
  section: string;
  type: number;
  autoload: boolean;
}

export interface NativeObject {
  maps(): NativeObjectMapDesc[];
  programs(): NativeObjectProgDesc[];
  setMaxEntries(name: string, n: number): void;
  reusePinnedMap(name: string, path: string): void;
  setAutoload(name: string, on: boolean): void;
  load(): Promise<void>;
  map(name: string): NativeMap;
  program(name: string): NativeProgram;
  close(): void;
}

export interface NativeRingBuffer {
  poll(timeoutMs: number, maxSamples?: number): Promise<Buffer[]>;
  close(): void;
}

export interface Addon {
  NativeRingBuffer: new (fd: number, label: string) => NativeRingBuffer;
  NativeObject: new (path: string) => NativeObject;
  NativeMap: new (fd: number, label: string) => NativeMap;
  NativeProgram: new (fd: number, label: string) => NativeProgram;
  setErrorClass(cls: typeof BpfError): void;
  tcDetach(target: string | number, point: string, opts: object): boolean;
  tcQuery(target: string | number, point: string, opts: object): number | null;
  tcHookDestroy(target: string | number, opts: object): boolean;
  xdpQuery(target: string | number, opts: object): number | null;
  xdpDetach(target: string | number, opts: object): boolean;
  ifindex(name: string | number, netns?: string): number;
  openPinned(path: string): { kind: 'map'; handle: NativeMap } | { kind: 'program'; handle: NativeProgram };
  numPossibleCpus(): number;
  lockFile(path: string): number;
  unlockFile(fd: number): void;
  ifname(index: number, netns?: string): string | null;
  progInfo(id: number): { id: number; name: string; type: number; tag: string } | null;
  // Single-key map calls in plain N-API (src/map_single.cc): the caller checks fd and sizes.
  mapLookup(fd: number, key: Buffer, out: Buffer, name: string): boolean;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number, name: string): void;
  mapDelete(fd: number, key: Buffer, name: string): boolean;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const addon: Addon = require('../build/Release/addon.node');
addon.setErrorClass(BpfError);

/** What openPinnedAs hands out for each kind. */
interface PinnedHandle {
  map: NativeMap;
  program: NativeProgram;
}

/**
 * The handle on what is pinned at `path` when it is a `kind`; a handle of the
 * other kind is closed and refused with EINVAL.
 * @internal
 */
export function openPinnedAs<K extends keyof PinnedHandle>(path: string, kind: K): PinnedHandle[K] {
  const obj = addon.openPinned(path);
  if (obj.kind !== kind) {
    obj.handle.close();
    throw bpfError('bpf_obj_get', path, 'EINVAL', `the object pinned at ${path} is a ${obj.kind}, not a ${kind}`);
  }
  return obj.handle as PinnedHandle[K];
}
