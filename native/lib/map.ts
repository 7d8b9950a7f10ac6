import { BpfError, bpfError } from './errors';
import { UpdateFlags, mapTypeName } from './constants';
import { addon, NativeBatchChunk, NativeMap, NativeMapInfo, openPinnedAs } from './native';

export interface MapInfo extends NativeMapInfo {
  /** bpftool's name for the type: hash, lru_hash, percpu_array, ... */
  typeName: string;
  /** Bytes a value occupies in lookups and updates: valueSize, or per CPU round_up(valueSize, 8) x possibleCpus. */
  valueStride: number;
}

/**
 * One chunk of a streamed dump. Keys and values are packed back to back; the
 * accessors return views into them, so a chunk costs two allocations however
 * many entries it holds.
 */
export class MapChunk {
  constructor(
    readonly count: number,
    readonly keys: Buffer,
    readonly values: Buffer,
    readonly keySize: number,
    readonly valueStride: number,
    private readonly valueSize: number,
    private readonly cpus: number,
  ) {}

  key(i: number): Buffer {
    return this.keys.subarray(i * this.keySize, (i + 1) * this.keySize);
  }

  value(i: number): Buffer {
    return this.values.subarray(i * this.valueStride, (i + 1) * this.valueStride);
  }

  /** For per-CPU maps: one view per possible CPU. */
  valuePerCpu(i: number): Buffer[] {
    return splitPerCpu(this.value(i), this.valueSize, this.cpus);
  }
}

export interface DumpOptions {
  /** Entries fetched per kernel call (default 4096). */
  chunkSize?: number;
  /** Delete what is read (bpf_map_lookup_and_delete_batch). */
  andDelete?: boolean;
}

function roundUp8(n: number): number {
  return (n + 7) & ~7;
}

function splitPerCpu(buf: Buffer, valueSize: number, cpus: number): Buffer[] {
  const stride = roundUp8(valueSize);
  const out: Buffer[] = [];
  for (let c = 0; c < cpus; c++) out.push(buf.subarray(c * stride, c * stride + valueSize));
  return out;
}

const BATCH_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUPP', 'EOPNOTSUPP']);

/** A BPF map held open by file descriptor. */
export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly perCpu: boolean;
  readonly possibleCpus: number;
  readonly valueStride: number;
  /** The descriptor the fast single-key calls use; -1 once closed. */
  private fdNum: number;

  /** @internal */
  constructor(private readonly native: NativeMap) {
    const i = native.info();
    this.fdNum = native.fd();
    this.name = i.name;
    this.type = i.type;
    this.keySize = i.keySize;
    this.valueSize = i.valueSize;
    this.maxEntries = i.maxEntries;
    this.perCpu = i.perCpu;
    this.possibleCpus = i.possibleCpus;
    this.valueStride = this.perCpu ? roundUp8(this.valueSize) * this.possibleCpus : this.valueSize;
  }

  /** Opens the map pinned at `path` (on bpffs). */
  static openPinned(path: string): BpfMap {
    return new BpfMap(openPinnedAs(path, 'map'));
  }

  info(): MapInfo {
    const i = this.native.info();
    return { ...i, typeName: mapTypeName(i.type), valueStride: this.valueStride };
  }

  get fd(): number {
    return this.native.fd();
  }

  /** The value for key, or null. Per-CPU maps return all CPUs' values packed (see lookupPerCpu). */
  lookup(key: Buffer): Buffer | null {
    // A pooled JS allocation is several times cheaper than a Buffer made in C++.
    const out = Buffer.allocUnsafe(this.valueStride);
    return this.lookupInto(key, out) ? out : null;
  }

  /** Per-CPU maps: one value per possible CPU, or null. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    const v = this.lookup(key);
    return v ? splitPerCpu(v, this.valueSize, this.possibleCpus) : null;
  }

  /** Allocation-free lookup into `out` (at least valueStride bytes); false when absent. */
  lookupInto(key: Buffer, out: Buffer): boolean {
    const call = 'bpf_map_lookup_elem';
    this.checkKey(call, key);
    if (!Buffer.isBuffer(out) || out.length < this.valueStride) {
      throw bpfError(call, this.name, 'EINVAL', `output must be a Buffer of at least ${this.valueStride} bytes`);
    }
    return addon.mapLookup(this.fdNum, key, out, this.name);
  }

  /** Writes one entry. For per-CPU maps, `value` may be one Buffer per CPU. */
  update(key: Buffer, value: Buffer | Buffer[], flags: number = UpdateFlags.any): void {
    const call = 'bpf_map_update_elem';
    this.checkKey(call, key);
    const v = Array.isArray(value) ? this.packPerCpu(value) : value;
    if (!Buffer.isBuffer(v) || v.length !== this.valueStride) {
      throw bpfError(call, this.name, 'EINVAL', `value must be a Buffer of ${this.valueStride} bytes`);
    }
    addon.mapUpdate(this.fdNum, key, v, flags, this.name);
  }

  /** Deletes key; false when it was not there. */
  delete(key: Buffer): boolean {
    this.checkKey('bpf_map_delete_elem', key);
    return addon.mapDelete(this.fdNum, key, this.name);
  }

  /** The key after `key` (or the first key for null); null at the end. */
  nextKey(key: Buffer | null): Buffer | null {
    return this.native.nextKey(key);
  }

  /** Every key, one syscall each. For large maps prefer batches(). */
  *keys(): Generator<Buffer> {
    for (let k = this.nextKey(null); k; k = this.nextKey(k)) yield k;
  }

  /**
   * Streams the map in chunks through the batch syscalls, off the event loop.
   * Memory stays at one chunk however large the map. Map types without batch
   * support fall back to get-next-key iteration in chunks of the same size.
   */
  async *batches(opts: DumpOptions = {}): AsyncGenerator<MapChunk> {
    const chunkSize = opts.chunkSize ?? 4096;
    const andDelete = opts.andDelete ?? false;
    let pending: Promise<NativeBatchChunk> | null = this.native.lookupBatch(null, chunkSize, andDelete);
    for (let first = true; pending; first = false) {
      let chunk: NativeBatchChunk;
      try {
        chunk = await pending;
      } catch (e) {
        if (first && e instanceof BpfError && BATCH_UNSUPPORTED.has(e.code)) {
          yield* this.batchesByNextKey(chunkSize, andDelete);
          return;
        }
        throw e;
      }
      // Ask the kernel for the next chunk while the caller works on this one.
      pending = chunk.done || !chunk.token ? null : this.native.lookupBatch(chunk.token, chunkSize, andDelete);
      // A rejection of the prefetch is seen at the next await, not as unhandled.
      pending?.catch(() => undefined);
      if (chunk.count > 0) yield this.chunk(chunk.count, chunk.keys, chunk.values);
    }
  }

  /** Streams [key, value] pairs; the Buffers are views into the current chunk. */
  async *entries(opts: DumpOptions = {}): AsyncGenerator<[Buffer, Buffer]> {
    for await (const chunk of this.batches(opts)) {
      for (let i = 0; i < chunk.count; i++) yield [chunk.key(i), chunk.value(i)];
    }
  }

  /** Writes many entries in one syscall, off the event loop; resolves to how many were written. */
  async updateBatch(
    keys: Buffer[] | Buffer,
    values: Buffer[] | Buffer,
    flags: number = UpdateFlags.any,
  ): Promise<number> {
    const k = Array.isArray(keys) ? Buffer.concat(keys) : keys;
    const v = Array.isArray(values) ? Buffer.concat(values) : values;
    return this.native.updateBatch(k, v, k.length / this.keySize, flags);
  }

  /** Deletes many keys in one syscall, off the event loop; resolves to how many were deleted. */
  async deleteBatch(keys: Buffer[] | Buffer): Promise<number> {
    const k = Array.isArray(keys) ? Buffer.concat(keys) : keys;
    return this.native.deleteBatch(k, k.length / this.keySize);
  }

  /**
   * An array map created with BPF_F_MMAPABLE, as memory shared with the
   * kernel: value i at byte i * round_up(valueSize, 8). Writes land at once,
   * without a syscall per entry. The mapping lives as long as the ArrayBuffer.
   */
  mmap(): ArrayBuffer {
    return this.native.mmap();
  }

  /** Pins the map at `path` on bpffs. */
  pin(path: string): void {
    this.native.pin(path);
  }

  close(): void {
    this.fdNum = -1;
    this.native.close();
  }

  private checkKey(call: string, key: Buffer): void {
    if (this.fdNum < 0) throw bpfError(call, this.name, 'EBADF', 'map handle is closed');
    if (!Buffer.isBuffer(key) || key.length !== this.keySize) {
      const got = Buffer.isBuffer(key) ? `${key.length} bytes` : 'not a Buffer';
      throw bpfError(call, this.name, 'EINVAL', `key is ${got}, map ${this.name} has ${this.keySize}-byte keys`);
    }
  }

  private chunk(count: number, keys: Buffer, values: Buffer): MapChunk {
    return new MapChunk(count, keys, values, this.keySize, this.valueStride, this.valueSize, this.possibleCpus);
  }

  private packPerCpu(values: Buffer[]): Buffer {
    if (!this.perCpu || values.length !== this.possibleCpus) {
      throw bpfError(
        'bpf_map_update_elem',
        this.name,
        'EINVAL',
        this.perCpu
          ? `expected ${this.possibleCpus} per-CPU values, got ${values.length}`
          : 'an array of values is only for per-CPU maps',
      );
    }
    const stride = roundUp8(this.valueSize);
    const out = Buffer.alloc(stride * this.possibleCpus);
    values.forEach((v, c) => v.copy(out, c * stride, 0, this.valueSize));
    return out;
  }

  private async *batchesByNextKey(chunkSize: number, andDelete: boolean): AsyncGenerator<MapChunk> {
    let key = this.nextKey(null);
    while (key) {
      const keys = Buffer.alloc(chunkSize * this.keySize);
      const values = Buffer.alloc(chunkSize * this.valueStride);
      let n = 0;
      for (; key && n < chunkSize; key = this.nextKey(key)) {
        if (!this.lookupInto(key, values.subarray(n * this.valueStride))) continue;
        key.copy(keys, n * this.keySize);
        n++;
      }
      if (andDelete) for (let i = 0; i < n; i++) this.delete(keys.subarray(i * this.keySize, (i + 1) * this.keySize));
      if (n > 0) yield this.chunk(n, keys.subarray(0, n * this.keySize), values.subarray(0, n * this.valueStride));
      // Let the event loop breathe between chunks.
      await new Promise((r) => setImmediate(r));
    }
  }
}
