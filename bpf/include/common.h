/* SPDX-License-Identifier: GPL-2.0 */
/* Shared definitions of the tsct datapath: ct_state bits, directions, the
 * named reasons every counted packet falls under, TCP states. The enums here
 * reach TypeScript through BTF (see scripts/gen-layouts.js), so their names
 * are the names users see. */
#ifndef TSCT_COMMON_H
#define TSCT_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#define NSEC_PER_SEC 1000000000ULL

/* ct_state bits, with Open vSwitch's values (ovs-fields(7)). */
enum ct_state_bit {
	CT_STATE_NEW = 0x01,
	CT_STATE_EST = 0x02,
	CT_STATE_REL = 0x04,
	CT_STATE_RPL = 0x08,
	CT_STATE_INV = 0x10,
	CT_STATE_TRK = 0x20,
	CT_STATE_SNAT = 0x40,
	CT_STATE_DNAT = 0x80,
};

/* Direction of a packet relative to its connection. */
enum ct_dir {
	CT_DIR_ORIGINAL = 0, /* Cilium's "Tx" */
	CT_DIR_REPLY = 1,    /* Cilium's "Rx" */
};

/* Where a program runs. */
enum tsct_hook {
	HOOK_INGRESS = 0,
	HOOK_EGRESS = 1,
};

/* TCP connection states, as nf_conntrack names them. */
enum tcp_ct_state {
	TCP_CT_NONE = 0,
	TCP_CT_SYN_SENT = 1,
	TCP_CT_SYN_RECV = 2,
	TCP_CT_ESTABLISHED = 3,
	TCP_CT_FIN_WAIT = 4,
	TCP_CT_CLOSE_WAIT = 5,
	TCP_CT_LAST_ACK = 6,
	TCP_CT_TIME_WAIT = 7,
	TCP_CT_CLOSE = 8,
	TCP_CT_SYN_SENT2 = 9,
	TCP_CT_MAX = 10,
	/* Transition results that are not states. */
	TCP_CT_INVALID = 10,
	TCP_CT_IGNORE = 11,
};

/* Every packet the datapath counts is counted under one of these, per hook,
 * in tsct_metrics. Invalid kinds start at 64; drops at 128. */
enum tsct_reason {
	REASON_FORWARDED = 0,	   /* passed, tracked or not */
	REASON_CT_NEW = 1,	   /* a connection was created */
	REASON_CT_RELATED = 2,	   /* an ICMP error matched a connection */
	REASON_CT_EVICTED = 3,	   /* an unassured entry made room for a new one */
	REASON_CT_FULL_PASSED = 4, /* table full, nothing evictable: passed untracked (CFG_F_CT_FULL_PASS) */
	REASON_CT_REOPENED = 5,	   /* a SYN reused a closed connection's tuple */
	REASON_CT_PICKED_UP = 6,   /* a mid-stream TCP connection was adopted */
	REASON_UNTRACKED = 7,	   /* not IP, or not trackable by design (ARP, ND) */
	REASON_FRAG_TRACKED = 8,   /* a non-first fragment matched its datagram */
	REASON_TWICE_SKIPPED = 9,  /* forwarded between managed devices: counted at ingress only */

	REASON_INV_TRUNCATED_L2 = 64,
	REASON_INV_TRUNCATED_L3 = 65,
	REASON_INV_TRUNCATED_L4 = 66,
	REASON_INV_IP_VERSION = 67,
	REASON_INV_IP_HEADER_LEN = 68,
	REASON_INV_IP_TOTAL_LEN = 69,
	REASON_INV_IPV6_EXT_HEADERS = 70,
	REASON_INV_TCP_HEADER_LEN = 71,
	REASON_INV_TCP_FLAGS = 72,
	REASON_INV_TCP_RST_UNKNOWN = 73,
	REASON_INV_TCP_NOT_SYN = 74,
	REASON_INV_TCP_TRANSITION = 75,
	REASON_INV_ICMP_REPLY_UNKNOWN = 76,
	REASON_INV_ICMP_ERROR_UNKNOWN = 77,
	REASON_INV_ICMP_ERROR_TRUNCATED = 78,
	REASON_INV_FRAG_UNKNOWN = 79,
	REASON_INV_FRAG_BAD = 80,

	REASON_NAT_SNAT = 10,	      /* a packet's source translated */
	REASON_NAT_REVSNAT = 11,      /* a reply's destination translated back */
	REASON_NAT_NEW = 12,	      /* a mapping was created */
	REASON_NAT_PORT_RETRY = 13,   /* a port was taken: another was tried */
	REASON_NAT_RECREATED = 14,    /* a lost mapping of a live connection was made again */
	REASON_NAT_RELATED = 15,      /* an ICMP error about a translated connection was translated */
	REASON_NAT_UNSUPPORTED = 16,  /* a protocol NAT does not translate passed as is */
	REASON_EVENT_LOST = 17,	      /* a connection event found the ring buffer full */
	REASON_FAST_PATH = 18,	      /* forwarded by the datapath itself (fib lookup, redirect) */
	REASON_XDP_FAST_PATH = 19,    /* forwarded from XDP, before any skb (counted under ingress) */
	REASON_LB_NEW = 20,	      /* a new load-balanced connection chose a backend */
	REASON_LB_DNAT = 21,	      /* a packet to a service sent to its backend */
	REASON_LB_REVDNAT = 22,	      /* a backend's reply given the service's address back */
	REASON_LB_RESELECTED = 23,    /* a UDP flow moved off a backend no longer active */
	REASON_LB_AFFINITY = 24,      /* a new connection went to its client's affinity backend */
	REASON_POLICY_COMMITTED = 25, /* the firewall accepted a new connection: its entry was created */
	REASON_POLICY_CACHED = 26,    /* a packet passed on its connection's cached verdict, unclassified */

	REASON_DROP_INVALID = 128,	      /* an invalid packet dropped, by configuration */
	REASON_DROP_NAT_PORT_EXHAUSTED = 129, /* no free port for a new mapping */
	REASON_DROP_NAT_TABLE_FULL = 130,     /* the NAT table had no room */
	REASON_DROP_NAT_NO_CT = 131,	      /* a new mapping had no connection to keep it (connection table full) */
	REASON_DROP_CT_TABLE_FULL = 132,      /* a new connection found its table full and nothing evictable */
	REASON_DROP_WRITE_ERROR = 133,	 /* a rewrite of the packet failed (bpf_skb_store_bytes, or out of bounds) */
	REASON_DROP_CSUM = 134,		 /* a checksum update failed */
	REASON_DROP_LB_NO_BACKEND = 135, /* a service with no backend to serve a new connection */
	REASON_DROP_LB_PORT_NOT_SERVED = 136,  /* a known service address, on a port or protocol it does not serve */
	REASON_DROP_LB_BACKEND_GONE = 137,     /* a TCP connection whose backend was removed */
	REASON_DROP_LB_SOURCE_RANGE = 138,     /* a client outside the service's source ranges */
	REASON_DROP_LB_NO_LOCAL_BACKEND = 139, /* traffic policy Local, and no backend on this node */
	REASON_DROP_POLICY_DENIED = 140,       /* the firewall's rules (or its default policy) dropped the packet */
	REASON_DROP_POLICY_REJECTED = 141,     /* the firewall's rules rejected it (RST or ICMP unreachable sent) */
	REASON_DROP_POLICY_CUT = 142,	       /* a connection the changed rules no longer accept: entry removed */
	REASON_MAX = 256,
};

/* Flags of a connection entry. The low byte has Cilium's bit values, so that
 * Flags=0x.. in `tsct bpf ct list` reads as Cilium's does. */
enum ct_entry_flag {
	CT_F_RX_CLOSING = 0x0001, /* FIN or RST seen in the reply direction */
	CT_F_TX_CLOSING = 0x0002, /* FIN or RST seen in the original direction */
	CT_F_SEEN_NON_SYN = 0x0010,
	CT_F_SEEN_REPLY = 0x0100, /* est: both directions seen */
	CT_F_ASSURED = 0x0200,	  /* never evicted to make room (nf_conntrack's assured) */
	CT_F_ORIG_IS_B = 0x0400,  /* the originator is side b of the key */
	CT_F_SNAT = 0x0800,
	CT_F_DNAT = 0x1000,
	CT_F_PICKED_UP = 0x2000, /* adopted mid-stream */
	CT_F_EGRESS = 0x4000,	 /* first seen at egress (OUT), else ingress (IN) */
	CT_F_SERVICE = 0x8000,	 /* a service entry (client -> VIP): holds the backend, as Cilium's CT_SERVICE */
	CT_F_LB_SNAT = 0x10000,	 /* a service entry whose connection's client is translated too (full NAT) */
};

/* Compiled defaults, the one definition of each: the agent's flags take
 * their defaults from these through BTF (src/datapath/config.ts), and the
 * datapath applies them until the agent has written tsct_config. Timeouts
 * are seconds (docs/TIMEOUTS.md says why these values); sizes are entries,
 * Cilium's defaults. */
enum tsct_default {
	DEFAULT_TIMEOUT_TCP_SYN_SENT = 60,
	DEFAULT_TIMEOUT_TCP_SYN_RECV = 60,
	DEFAULT_TIMEOUT_TCP_ESTABLISHED = 21600,
	DEFAULT_TIMEOUT_TCP_FIN_WAIT = 120,
	DEFAULT_TIMEOUT_TCP_CLOSE_WAIT = 60,
	DEFAULT_TIMEOUT_TCP_LAST_ACK = 30,
	DEFAULT_TIMEOUT_TCP_TIME_WAIT = 60,
	DEFAULT_TIMEOUT_TCP_CLOSE = 10,
	DEFAULT_TIMEOUT_ANY = 60,
	DEFAULT_TIMEOUT_ICMP = 30,
	DEFAULT_NAT_PORT_MIN = 32768, /* Linux's ip_local_port_range */
	DEFAULT_NAT_PORT_MAX = 60999,
	DEFAULT_CT_MAP_TCP = 524288, /* --bpf-ct-global-tcp-max */
	DEFAULT_CT_MAP_ANY = 262144, /* --bpf-ct-global-any-max */
	DEFAULT_NAT_MAP = 524288,    /* --bpf-nat-global-max */
	DEFAULT_FRAG_MAP = 8192,
	DEFAULT_EVENTS_RING = 1 << 20, /* bytes, --bpf-events-ring-size */
	DEFAULT_DEVICE_MAP = 256,
	DEFAULT_MASQ_CIDRS = 256,
	DEFAULT_LB_MAP = 65536,		   /* --bpf-lb-map-max: services, backends, affinity */
	DEFAULT_LB_MAGLEV_SLOTS = 1 << 22, /* --bpf-lb-maglev-map-max: backend-table slots of all services */
	DEFAULT_LB_REV_NAT = 65536,	   /* service ids are 16-bit */
};

/* Connection events in tsct_events, as conntrack -E names them. */
enum ct_event_type {
	CT_EVENT_NEW = 1,
	CT_EVENT_UPDATE = 2,
	CT_EVENT_DESTROY = 3,
};

/* Configuration flags (struct tsct_config.flags). */
enum tsct_config_flag {
	CFG_F_TCP_LOOSE = 0x1,	      /* adopt mid-stream TCP connections (nf_conntrack's tcp_loose) */
	CFG_F_DROP_INVALID = 0x2,     /* drop ct_state=inv packets instead of passing them */
	CFG_F_MASQ_ALL_SOURCES = 0x4, /* masquerade every source but the device's own address */
	CFG_F_NAT_RANGE_STRICT = 0x8, /* translate into the port range even when the original port is free */
	CFG_F_EVENTS = 0x10,	      /* connection events: new and destroy */
	CFG_F_EVENTS_UPDATE = 0x20,   /* and TCP state changes */
	CFG_F_FAST_PATH = 0x40,	      /* forward established flows from tc ingress, past the stack */
	CFG_F_FAST_PATH_NEW = 0x80,   /* and new connections' packets too */
	CFG_F_CT_FULL_PASS = 0x100,
	CFG_F_LB = 0x200,
	/* services are configured: new connections look up tsct_lb4/6_services */ /* a full table passes new connections untracked instead of dropping them */
};

/* The firewall's classifier (policy.h), whose tables src/policy/compile.ts
 * writes: its bounds, which the compiler reads from here through BTF. */
enum fw_limit {
	FW_MAX_RULES = 16384,		  /* rules per hook and generation, after inlining the jumps */
	FW_MAX_CHECKS = 8,		  /* residual checks per rule: the bound of the check loop */
	FW_MAX_VECTORS = 262144,	  /* distinct rule vectors per generation */
	FW_MAX_VECTOR_WORDS = 2097152,	  /* 64-bit vector words per generation (16 MiB) */
	FW_MAX_COUNTERS = 49152,	  /* origin rules counted per generation (3 * FW_MAX_RULES) */
	FW_HOOKS = 3,			  /* input, forward, output */
	FW_MAX_ADDR_ENTRIES = 262144,	  /* address prefixes of both generations together */
	FW_MAX_PORT_ENTRIES = 65536,	  /* port prefixes of both generations together */
	FW_MAX_DEVICE_ENTRIES = 4096,	  /* (hook, device) entries of both generations */
	FW_MAX_RESIDUAL_ENTRIES = 262144, /* prefixes of the sets residual checks look up */
	FW_COUNTER_POLICY = 65535	  /* a counter index meaning "the hook's default policy decided" */
};

/* Hooks of the firewall (compile.ts's HOOK_INDEX). */
enum fw_hook_index {
	FW_HOOK_INPUT = 0,   /* to the node itself */
	FW_HOOK_FORWARD = 1, /* between devices */
	FW_HOOK_OUTPUT = 2,  /* from the node itself */
};

enum fw_action {
	FW_ACT_ACCEPT = 0,
	FW_ACT_DROP = 1,
	FW_ACT_REJECT = 2,
	FW_ACT_SKIP = 3, /* a matched `return`: go on at the rule's skip_to */
};

/* Fields a hook looks up (struct fw_hook's fields). */
enum fw_field {
	FW_FIELD_SRC = 1,
	FW_FIELD_DST = 2,
	FW_FIELD_DPORT = 4,
	FW_FIELD_SPORT = 8,
	FW_FIELD_IN_DEV = 16,
	FW_FIELD_OUT_DEV = 32,
};

/* A rule's residual checks (struct fw_check's op). */
enum fw_check_op {
	FW_CHECK_ZONE = 1,
	FW_CHECK_CT_MARK = 2,
	FW_CHECK_PACKET_MARK = 3,
	FW_CHECK_CT_LABEL = 4,
	FW_CHECK_ICMP = 5,
	FW_CHECK_ORIG_SRC = 6,
	FW_CHECK_ORIG_DST = 7,
	FW_CHECK_ORIG_SPORT = 8,
	FW_CHECK_ORIG_DPORT = 9,
};

enum fw_commit_flag {
	FW_COMMIT_MARK = 1,  /* accept stores (mark & ~mask) | value on the new connection */
	FW_COMMIT_LABEL = 2, /* and the same per label word */
};

/* struct fw_control's flags. */
enum fw_control_flag {
	FW_CTL_ACTIVE = 1,	     /* a rule set is loaded: the hooks in `hooks` judge packets */
	FW_CTL_KEEP_ESTABLISHED = 2, /* a rule change leaves established connections alone */
};

/* What the tracker is asked to do for the firewall (struct ct_io's fw_op). */
enum fw_ct_op {
	FW_OP_NONE = 0,	  /* track as usual; a new connection is created */
	FW_OP_DEFER = 1,  /* a new connection is reported (fw_pending) but not created: the rules decide */
	FW_OP_CACHE = 2,  /* store the verdict on the packet's connection (fw_epoch, fw_cache, fw_counter) */
	FW_OP_CUT = 3,	  /* remove the packet's connection: the changed rules no longer accept it */
	FW_OP_COMMIT = 4, /* create the new connection the rules accepted, with their mark and label */
};

/* struct ct_entry's fw_cache: per direction d, bit 2d says the direction's
 * packets passed under fw_epoch, bit 2d+1 that they did so established. */
enum fw_cache_bit {
	FW_CACHE_PASSED = 1,
	FW_CACHE_EST = 2,
};

/* The per-packet verdict of the tracker, also written to skb->cb for the
 * later stages and for BPF_PROG_TEST_RUN. */
enum tsct_cb_slot {
	CB_CT_STATE = 0, /* ct_state bits */
	CB_CT_MARK = 1,	 /* the connection's mark */
	CB_REASON = 2,	 /* the invalid reason, 0 when valid */
	CB_ZONE_DIR = 3, /* zone << 16 | direction << 8 | hook */
};

#endif
