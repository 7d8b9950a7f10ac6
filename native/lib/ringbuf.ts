import { bpfError } from './errors';
import { MapType } from './constants';
import { addon, NativeRingBuffer } from './native';
import { BpfMap } from './map';

/**
 * A consumer of a BPF ring buffer map. Only one consumer should read a ring
 * at a time: they share the ring's consumer position.
 */
export class RingBuffer {
  private constructor(private readonly native: NativeRingBuffer) {}

  static open(map: BpfMap): RingBuffer {
    if (map.type !== MapType.ringbuf) {
      throw bpfError('ring_buffer__new', map.name, 'EINVAL', 'not a ring buffer map');
    }
    return new RingBuffer(new addon.NativeRingBuffer(map.fd, map.name));
  }

  /** Waits up to timeoutMs for samples, off the event loop; resolves with what arrived (maybe none). */
  poll(timeoutMs: number, maxSamples = 4096): Promise<Buffer[]> {
    return this.native.poll(timeoutMs, maxSamples);
  }

  /** Streams samples until `signal` aborts. */
  async *samples(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<Buffer> {
    while (!opts.signal?.aborted) {
      for (const s of await this.poll(opts.timeoutMs ?? 200)) yield s;
    }
  }

  close(): void {
    this.native.close();
  }
}
