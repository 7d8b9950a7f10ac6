// When the next sweep runs. As Cilium's: the interval shrinks when a sweep
// deleted a large share of what it scanned, and grows when it deleted little,
// within bounds; a fixed interval (--conntrack-gc-interval) turns that off.

export interface GcScheduleOptions {
  /** Fixed interval in seconds; 0 means adaptive. */
  fixedS: number;
  /** Upper bound of the adaptive interval (--conntrack-gc-max-interval). */
  maxS: number;
  minS?: number;
  initialS?: number;
}

export const GC_MIN_INTERVAL_S = 10;
export const GC_INITIAL_INTERVAL_S = 60;

export class GcSchedule {
  private current: number;

  constructor(private readonly o: GcScheduleOptions) {
    this.current = o.fixedS || Math.min(o.initialS ?? GC_INITIAL_INTERVAL_S, o.maxS);
  }

  get intervalS(): number {
    return this.current;
  }

  /** Adjusts the interval after a sweep and returns it. */
  next(deleted: number, scanned: number): number {
    if (this.o.fixedS) return this.current;
    const share = scanned ? deleted / scanned : 0;
    const min = Math.min(this.o.minS ?? GC_MIN_INTERVAL_S, this.o.maxS);
    if (share > 0.25) this.current = Math.max(min, Math.floor(this.current * 0.5));
    else if (share < 0.05) this.current = Math.min(this.o.maxS, Math.ceil(this.current * 1.5));
    return this.current;
  }

  /** A table filled up: sweep soon. */
  pressure(): number {
    if (!this.o.fixedS)
      this.current = Math.max(Math.min(this.o.minS ?? GC_MIN_INTERVAL_S, this.o.maxS), Math.floor(this.current / 2));
    return this.current;
  }
}
