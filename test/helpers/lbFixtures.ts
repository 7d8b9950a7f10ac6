// Services, backends and map keys the load-balancer writer's tests share (the
// unit tests over a fake of the maps and the root tests over real ones). The
// keys are built here from the layouts, not by the writer, so that a test
// checks the writer's encoding rather than repeats it.
import { StructView } from '../../src/bpf/layouts';
import { LbBackend, LbService, LB_SERVICE_DEFAULTS } from '../../src/lb/lbService';

/** An active backend of weight 1, not local, unless `more` says otherwise. */
export function be(addr: string, port: number, more: Partial<LbBackend> = {}): LbBackend {
  return { addr, port, state: 'active', weight: 1, local: false, ...more };
}

/** A UDP service with the defaults and no source ranges, unless `more` says otherwise. */
export function svc(
  id: number,
  addr: string,
  port: number,
  backends: LbBackend[],
  more: Partial<LbService> = {},
): LbService {
  return {
    id,
    frontend: { addr, port, proto: 'udp' },
    ...LB_SERVICE_DEFAULTS,
    sourceRanges: [],
    backends,
    ...more,
  };
}

/** A u32 key, host order (an array map's index). */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** tsct_lb4_services' key for addr:port/proto. */
export function v4Key(addr: string, port: number, proto: number): Buffer {
  const k = StructView.alloc('lb4_key');
  Buffer.from(addr.split('.').map(Number)).copy(k.bytes('addr'));
  k.bytes('port').writeUInt16BE(port);
  return k.set('proto', proto).buf;
}
