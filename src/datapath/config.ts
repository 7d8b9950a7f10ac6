// The datapath's runtime configuration (tsct_config): timeouts per state and
// behaviour flags. Timeout and port defaults are the datapath's own
// (enum tsct_default, through BTF); docs/TIMEOUTS.md says why each value.
import { ENUMS, StructView } from '../bpf/layouts';
import { parseAddr } from '../net/addr';

/** Seconds. */
export interface CtTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  /** UDP and every other non-TCP, non-ICMP protocol. */
  any: number;
  icmp: number;
}

export interface DatapathConfig {
  timeouts: CtTimeouts;
  /** Adopt TCP connections first seen mid-stream (nf_conntrack's tcp_loose). */
  tcpLoose: boolean;
  /** Drop packets whose ct_state is inv instead of passing them. */
  dropInvalid: boolean;
  /**
   * A table full with nothing evictable passes a new connection's packets
   * untracked instead of dropping them (nf_conntrack and Cilium drop).
   */
  ctFullPass: boolean;
  /** NAT port range (inclusive). */
  natPortMin: number;
  natPortMax: number;
  /** Translate into the range even when the original port is free (an explicit --nat-port-range). */
  natRangeStrict: boolean;
  /** Masquerade every source but the device's own address (no --masquerade-cidrs). */
  masqueradeAll: boolean;
  /** Connection events into tsct_events: none, new and destroy, or those and TCP state updates. */
  events: 'none' | 'new-destroy' | 'all';
  /** Forward established connections from tc ingress (FIB lookup and redirect), past the stack. */
  fastPath: boolean;
  /** And new connections' packets too, past the stack's FORWARD rules. */
  fastPathNew: boolean;
  /** New connections look their destination up among the services (the load balancer). */
  lb: boolean;
  /** The seed of the datapath's tuple hash for Maglev (the same on every node). */
  lbHashSeed: number;
  /** The source a backend connecting to its own service is given (hairpin). */
  lbLoopback4: string;
}

const D = ENUMS.tsct_default;

/** The compiled defaults of bpf/include/common.h (enum tsct_default): one definition, in C. */
export const DEFAULT_TIMEOUTS: CtTimeouts = {
  tcpSynSent: D.DEFAULT_TIMEOUT_TCP_SYN_SENT,
  tcpSynRecv: D.DEFAULT_TIMEOUT_TCP_SYN_RECV,
  tcpEstablished: D.DEFAULT_TIMEOUT_TCP_ESTABLISHED,
  tcpFinWait: D.DEFAULT_TIMEOUT_TCP_FIN_WAIT,
  tcpCloseWait: D.DEFAULT_TIMEOUT_TCP_CLOSE_WAIT,
  tcpLastAck: D.DEFAULT_TIMEOUT_TCP_LAST_ACK,
  tcpTimeWait: D.DEFAULT_TIMEOUT_TCP_TIME_WAIT,
  tcpClose: D.DEFAULT_TIMEOUT_TCP_CLOSE,
  any: D.DEFAULT_TIMEOUT_ANY,
  icmp: D.DEFAULT_TIMEOUT_ICMP,
};

/** Linux's ip_local_port_range. */
export const DEFAULT_NAT_PORTS = { min: D.DEFAULT_NAT_PORT_MIN, max: D.DEFAULT_NAT_PORT_MAX };

/** The datapath's configuration when nothing is given: the agent's flags default to these. */
export const DEFAULT_CONFIG: DatapathConfig = {
  timeouts: DEFAULT_TIMEOUTS,
  tcpLoose: true,
  dropInvalid: false,
  ctFullPass: false,
  natPortMin: DEFAULT_NAT_PORTS.min,
  natPortMax: DEFAULT_NAT_PORTS.max,
  natRangeStrict: false,
  masqueradeAll: true,
  events: 'new-destroy',
  fastPath: true,
  fastPathNew: false,
  lb: true,
  lbHashSeed: 0,
  lbLoopback4: '169.254.42.1',
};

const S = ENUMS.tcp_ct_state;
const F = ENUMS.tsct_config_flag;

/** Encodes struct tsct_config; ringSizes are the four tables' sizes (enum ct_table order). */
export function encodeConfig(cfg: DatapathConfig, ringSizes: number[]): Buffer {
  const v = StructView.alloc('tsct_config');
  const t = cfg.timeouts;
  v.set('initialized', 1);
  v.set(
    'flags',
    (cfg.tcpLoose ? F.CFG_F_TCP_LOOSE : 0) |
      (cfg.dropInvalid ? F.CFG_F_DROP_INVALID : 0) |
      (cfg.ctFullPass ? F.CFG_F_CT_FULL_PASS : 0) |
      (cfg.masqueradeAll ? F.CFG_F_MASQ_ALL_SOURCES : 0) |
      (cfg.natRangeStrict ? F.CFG_F_NAT_RANGE_STRICT : 0) |
      (cfg.events !== 'none' ? F.CFG_F_EVENTS : 0) |
      (cfg.events === 'all' ? F.CFG_F_EVENTS_UPDATE : 0) |
      (cfg.fastPath ? F.CFG_F_FAST_PATH : 0) |
      (cfg.fastPath && cfg.fastPathNew ? F.CFG_F_FAST_PATH_NEW : 0) |
      (cfg.lb ? F.CFG_F_LB : 0),
  );
  v.set('lb_hash_seed', cfg.lbHashSeed >>> 0);
  parseAddr(cfg.lbLoopback4).copy(v.bytes('lb_loopback4'));
  v.set('nat_port_min', cfg.natPortMin);
  v.set('nat_port_max', cfg.natPortMax);
  const byState: Array<[number, number]> = [
    [S.TCP_CT_SYN_SENT, t.tcpSynSent],
    [S.TCP_CT_SYN_SENT2, t.tcpSynSent],
    [S.TCP_CT_SYN_RECV, t.tcpSynRecv],
    [S.TCP_CT_ESTABLISHED, t.tcpEstablished],
    [S.TCP_CT_FIN_WAIT, t.tcpFinWait],
    [S.TCP_CT_CLOSE_WAIT, t.tcpCloseWait],
    [S.TCP_CT_LAST_ACK, t.tcpLastAck],
    [S.TCP_CT_TIME_WAIT, t.tcpTimeWait],
    [S.TCP_CT_CLOSE, t.tcpClose],
  ];
  for (const [state, secs] of byState) v.set('timeout_tcp', secs, state);
  v.set('timeout_any', t.any);
  v.set('timeout_icmp', t.icmp);
  ringSizes.forEach((n, i) => v.set('ring_size', n, i));
  return v.buf;
}
