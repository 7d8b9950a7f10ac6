/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the datapath with its key and value layouts. These structs are
 * the single source of truth: TypeScript reads their offsets from the
 * object's BTF at build time (src/bpf/generated/layouts.ts). Sizes given here
 * are defaults; the agent sizes the maps before load. */
#ifndef TSCT_MAPS_H
#define TSCT_MAPS_H

#include "common.h"
#include "packet.h"

#define METRICS_MAX (REASON_MAX * 2)

/* Connection keys are canonical: side a is the smaller (address, port), so a
 * packet finds its connection with one lookup whichever way it travels. ICMP
 * echo uses its identifier as both ports. */
struct ct4_key {
	__be32 addr_a;
	__be32 addr_b;
	__be16 port_a;
	__be16 port_b;
	__u8 proto;
	__u8 pad;
	__u16 zone;
};

struct ct6_key {
	__be32 addr_a[4];
	__be32 addr_b[4];
	__be16 port_a;
	__be16 port_b;
	__u8 proto;
	__u8 pad;
	__u16 zone;
};

/* One connection. Times are CLOCK_MONOTONIC nanoseconds (coarse). Index 0 of
 * the per-direction arrays is the original direction (Cilium's Tx), 1 the
 * reply (Rx). */
struct ct_entry {
	__u64 created_ns;
	__u64 last_seen_ns;
	__u64 expires_ns;
	__u64 packets[2];
	__u64 bytes[2];
	__u64 last_report_ns[2]; /* last packet per direction */
	__u32 flags;		 /* enum ct_entry_flag */
	__u32 ifindex;		 /* device the connection was first seen on */
	__u32 mark;
	__u16 zone;
	__u8 tcp_state; /* enum tcp_ct_state */
	__u8 fw_cache;	/* enum fw_cache_bit, per direction: the firewall's verdict under fw_epoch */
	__u32 label[4]; /* word k is bits 32k..32k+31 of the 128-bit label */
	__u8 tcp_flags_seen[2];
	/* Filled by NAT and the load balancer. */
	__u16 rev_nat_index;
	__be16 nat_port;
	/* The low 16 bits of the rule-set epoch fw_cache was written under: a
	 * packet of another epoch is judged again (a wrap meets an entry only
	 * if it saw no packet for 65536 rule changes). */
	__u16 fw_epoch;
	__be32 nat_addr[4];
	__u32 backend_id;
	__u16 fw_counter[2]; /* per direction, the rule counter its cached verdict counts on */
};

/* Fragments: the first fragment of a datagram records its ports, so that the
 * later ones (which carry no L4 header) find their connection. */
struct frag4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct frag6_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

struct frag_ports {
	__be16 sport;
	__be16 dport;
};

/* A managed device: its zone, and whether (and to what) it masquerades. */
struct device_info {
	__u16 zone;
	__u16 flags;	 /* enum device_flag */
	__be32 snat4;	 /* masquerade address, IPv4 */
	__be32 snat6[4]; /* masquerade address, IPv6 */
};

enum device_flag {
	DEVICE_F_MASQUERADE = 0x1,
	DEVICE_F_XDP = 0x2, /* the XDP fast path is attached, and the device takes redirected frames */
};

/* The NAT table holds the reverse index of the translations: one IN entry
 * per mapping, keyed by the reply tuple as it arrives (XLATE_DST in Cilium's
 * terms), whose value is the original source it maps back to. The forward
 * direction (OUT, XLATE_SRC) lives in the connection's entry (nat_addr,
 * nat_port, CT_F_SNAT); NAT_DIR_OUT keys are only those older versions of
 * tsct left, which the GC removes. Keys carry no zone: the external address
 * and port space is the node's; the entry remembers the connection's zone. */
enum nat_dir {
	NAT_DIR_OUT = 0,
	NAT_DIR_IN = 1,
};

struct nat4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir; /* enum nat_dir */
	__u16 pad;
};

struct nat6_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct nat_entry {
	__u64 created_ns;
	__u64 needs_ct; /* always 1: the entry lives and dies with a connection */
	__be32 to_addr[4];
	__be16 to_port;
	__u16 zone; /* the connection's zone */
	__u32 pad;
};

/* Sources to masquerade; when tsct_config.flags has CFG_F_MASQ_ALL_SOURCES,
 * every source but the device's own address. */
struct masq4_key {
	__u32 prefixlen;
	__be32 addr;
};

struct masq6_key {
	__u32 prefixlen;
	__be32 addr[4];
};

/* Timeouts in seconds, and flags. A zero `initialized` means user space has
 * not written the configuration yet; the compiled defaults apply. */
struct tsct_config {
	__u32 initialized;
	__u32 flags; /* enum tsct_config_flag */
	__u32 timeout_tcp[TCP_CT_MAX];
	__u32 timeout_any;
	__u32 timeout_icmp;
	/* Slots in each table's ring of new connections (the eviction order);
	 * equal to the table's max_entries. */
	__u32 ring_size[4];
	/* NAT port range, host order (Linux's 32768-60999 by default). */
	__u32 nat_port_min;
	__u32 nat_port_max;
	/* The seed of the tuple hash that indexes Maglev tables
	 * (--bpf-lb-maglev-hash-seed): the same on every node, so that every
	 * node picks the same backend for the same connection. */
	__u32 lb_hash_seed;
	/* The source a backend connecting to its own service is given
	 * (hairpin), as Cilium's service loopback address 169.254.42.1. */
	__be32 lb_loopback4;
};

enum ct_table {
	CT_TABLE_TCP4 = 0,
	CT_TABLE_ANY4 = 1,
	CT_TABLE_TCP6 = 2,
	CT_TABLE_ANY6 = 3,
};

/* Garbage collection: what a sweep of one table found (struct gc_args is
 * the argument of the SEC("syscall") program tsct_gc). */
struct gc_table_stats {
	__u64 scanned;
	__u64 deleted;
	__u64 alive;
	__u64 events_lost; /* DESTROY events the full ring could not take */
	__u64 alive_by_state[TCP_CT_MAX];
	__u64 deleted_by_state[TCP_CT_MAX];
};

struct gc_args {
	__u64 now_ns; /* 0: the kernel's CLOCK_MONOTONIC (coarse) */
	__u32 tables; /* bits of enum ct_table to sweep; 0: all */
	/* Sweeps run in parallel, one per CPU: this one takes the connections
	 * whose ports hash to `shard` of `shards` (0 or 1: all of them), and
	 * shard 0 also sweeps the NAT tables for orphans. */
	__u16 shard;
	__u16 shards;
	struct gc_table_stats stats[4];
	/* NAT entries removed with their connection (both families), then
	 * orphans removed and entries kept, by family (shard 0 only). */
	__u64 nat_deleted;
	__u64 nat_orphans[2];
	__u64 nat_alive[2];
	__u64 nat_recreated; /* IN entries of live connections put back */
};

/* The argument of SEC("syscall") tsct_nat_forget (`tsct bpf nat flush`): the
 * connection whose mapping to forget, and that mapping. The flag is cleared
 * in the kernel, atomically, so that nothing the datapath writes to the entry
 * meanwhile (counters, expiry) is lost to a whole-entry write from user
 * space. */
struct nat_forget_args {
	union {
		struct ct4_key k4;
		struct ct6_key k6;
	} key;
	__be32 nat_addr[4];
	__be16 nat_port;
	__u8 family;	/* 4 or 6 */
	__u8 forgotten; /* out: 1 when the connection carried that mapping */
	__u32 pad;
};

/* Written by the agent only (its GC schedule, its liveness), read by the CLI
 * (status). What the datapath writes (tsct_gc_wake) has a map of its own, so
 * that neither side's whole-value write can lose the other's. */
struct gc_state {
	__u64 last_run_ns;
	__u64 next_run_ns;
	__u64 last_duration_ns;
	__u64 runs;
	__u64 last_scanned;
	__u64 last_deleted;
	__u64 agent_heartbeat_ns;
	__u32 interval_s;
	__u32 agent_pid;
};

/* One connection event; the tuple is the original direction. */
struct ct_event {
	__u64 ts_ns;
	__u64 packets[2];
	__u64 bytes[2];
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
	__u32 flags;
	__u32 timeout_s;
	__u16 zone;
	__u8 type; /* enum ct_event_type */
	__u8 family;
	__u8 proto;
	__u8 tcp_state;
	__be16 nat_port; /* with CT_F_SNAT: the translated source */
	__u8 pad[4];
	__be32 nat_addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_EVENTS_RING);
} tsct_events SEC(".maps");

/* Until when (monotonic ns) someone reads tsct_events: `tsct bpf ct events`
 * renews it while it runs. Events are written only then, as nf_conntrack
 * builds events only for its listeners: with no reader they cost nothing,
 * are not counted lost, and leave no backlog for the next reader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} tsct_events_reader SEC(".maps");

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct4_key);
	__type(value, struct ct_entry);
	__uint(max_entries, DEFAULT_CT_MAP_TCP);
} tsct_ct4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct4_key);
	__type(value, struct ct_entry);
	__uint(max_entries, DEFAULT_CT_MAP_ANY);
} tsct_ct_any4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct6_key);
	__type(value, struct ct_entry);
	__uint(max_entries, DEFAULT_CT_MAP_TCP);
} tsct_ct6_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct6_key);
	__type(value, struct ct_entry);
	__uint(max_entries, DEFAULT_CT_MAP_ANY);
} tsct_ct_any6_global SEC(".maps");

/* Rings of recently created connections, one per table, sized like it: when
 * a table is full, the oldest unassured entry named here makes room. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ct4_key);
	__uint(max_entries, DEFAULT_CT_MAP_TCP);
} tsct_ct4_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ct4_key);
	__uint(max_entries, DEFAULT_CT_MAP_ANY);
} tsct_ct_any4_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ct6_key);
	__uint(max_entries, DEFAULT_CT_MAP_TCP);
} tsct_ct6_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ct6_key);
	__uint(max_entries, DEFAULT_CT_MAP_ANY);
} tsct_ct_any6_ring SEC(".maps");

/* Write positions of the four rings (enum ct_table). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} tsct_ct_ring_head SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag4_key);
	__type(value, struct frag_ports);
	__uint(max_entries, DEFAULT_FRAG_MAP);
} tsct_frag4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag6_key);
	__type(value, struct frag_ports);
	__uint(max_entries, DEFAULT_FRAG_MAP);
} tsct_frag6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); /* ifindex */
	__type(value, struct device_info);
	__uint(max_entries, DEFAULT_DEVICE_MAP);
} tsct_devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct tsct_config);
	__uint(max_entries, 1);
} tsct_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct nat4_key);
	__type(value, struct nat_entry);
	__uint(max_entries, DEFAULT_NAT_MAP);
} tsct_snat_v4_external SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct nat6_key);
	__type(value, struct nat_entry);
	__uint(max_entries, DEFAULT_NAT_MAP);
} tsct_snat_v6_external SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct masq4_key);
	__type(value, __u8);
	__uint(max_entries, DEFAULT_MASQ_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_masq_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct masq6_key);
	__type(value, __u8);
	__uint(max_entries, DEFAULT_MASQ_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_masq_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gc_state);
	__uint(max_entries, 1);
} tsct_gc_state SEC(".maps");

/* Written by the datapath only: when (monotonic ns) a table was last found
 * full, which asks the agent for an early sweep. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} tsct_gc_wake SEC(".maps");

/* Index: reason << 1 | hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_MAX);
} tsct_metrics SEC(".maps");

/* The service load balancer. A frontend is (VIP, port, protocol); a known
 * VIP also has a wildcard entry (port 0, protocol 0) that rejects the ports
 * it does not serve. Each frontend has a service id (rev_nat_index), which
 * names its reverse translation and counters, and a backend table: a range
 * of tsct_lb_maglev holding backend ids, the Maglev lookup table (or, for
 * random selection, the list of active backends). A new table is written to
 * a free range and the service entry then points at it in one update: no
 * packet sees half a table. */
struct lb4_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb6_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

enum lb_algorithm {
	LB_ALG_RANDOM = 1,
	LB_ALG_MAGLEV = 2,
};

enum lb_service_flag {
	LB_SVC_F_WILDCARD = 0x1,     /* a known VIP's catch-all: rejects what the VIP does not serve */
	LB_SVC_F_AFFINITY = 0x2,     /* sessionAffinity ClientIP: the source port is left out of the hash */
	LB_SVC_F_LOCAL = 0x4,	     /* traffic policy Local: only this node's backends, drop when none */
	LB_SVC_F_SOURCE_RANGE = 0x8, /* loadBalancerSourceRanges apply */
	LB_SVC_F_NODEPORT = 0x10,
	LB_SVC_F_EXTERNAL_IP = 0x20,
	LB_SVC_F_LOADBALANCER = 0x40,
	LB_SVC_F_SNAT = 0x80, /* full NAT: the client's source is translated too */
};

struct lb_service {
	__u32 table_offset;	/* first slot of the backend table in tsct_lb_maglev */
	__u32 table_size;	/* M (Maglev) or the backend count (random); 0: no backend */
	__u32 affinity_timeout; /* seconds, with LB_SVC_F_AFFINITY */
	__u16 rev_nat_index;	/* the service id */
	__u8 algorithm;		/* enum lb_algorithm */
	__u8 flags;		/* enum lb_service_flag */
};

/* How a load-balanced connection's source is translated too. */
enum lb_snat_kind {
	LB_SNAT_NONE = 0,
	LB_SNAT_FULL = 1,    /* full NAT: to the address of the device towards the backend */
	LB_SNAT_HAIRPIN = 2, /* the client is the backend: to the service loopback address */
};

enum lb_backend_state {
	LB_BE_NONE = 0,	       /* no backend under this id (removed) */
	LB_BE_ACTIVE = 1,      /* takes new connections */
	LB_BE_TERMINATING = 2, /* keeps its TCP connections, takes no new ones (unless none is active) */
	LB_BE_QUARANTINED = 3, /* failed health checks: keeps nothing new */
	LB_BE_MAINTENANCE = 4, /* taken out by the operator */
};

/* tsct_lb_backends[id]; ids are the agent's, stable per backend address. */
struct lb_backend {
	__be32 addr[4];
	__be16 port;
	__u8 family; /* 4 or 6 */
	__u8 state;  /* enum lb_backend_state */
};

/* tsct_lb_reverse_nat[service id]: what a backend's reply is given back. */
struct lb_reverse_nat {
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 pad;
};

/* Which backends a service has, with their place in it: its table holds only
 * those that take new connections, this holds them all (listing, restoring
 * the agent's state, and checking that an affinity's backend still belongs
 * to its service). */
struct lb_member_key {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};

struct lb_member {
	__u16 weight;
	__u8 flags; /* enum lb_member_flag */
	__u8 pad;
};

enum lb_member_flag {
	LB_MEMBER_F_LOCAL = 0x1, /* the backend runs on this node (traffic policy Local) */
};

/* loadBalancerSourceRanges: the client prefixes a service (with
 * LB_SVC_F_SOURCE_RANGE) takes new connections from. The service id is part
 * of the prefix, so one trie holds every service's ranges. */
struct lb4_src_range_key {
	__u32 prefixlen; /* 32 (service id and pad) + the CIDR's length */
	__u16 rev_nat_index;
	__u16 pad;
	__be32 addr;
};

struct lb6_src_range_key {
	__u32 prefixlen;
	__u16 rev_nat_index;
	__u16 pad;
	__be32 addr[4];
};

/* Session affinity: a client's backend per service, for its timeout. */
struct lb_affinity_key {
	__be32 client[4];
	__u16 rev_nat_index;
	__u8 family;
	__u8 pad;
};

struct lb_affinity {
	__u64 last_used_ns;
	__u32 backend_id;
	__u32 pad;
};

/* Per service id, summed over CPUs by the agent's metrics. */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 connections;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb_service);
	__uint(max_entries, DEFAULT_LB_MAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_lb4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb6_key);
	__type(value, struct lb_service);
	__uint(max_entries, DEFAULT_LB_MAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_lb6_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, DEFAULT_LB_MAP);
} tsct_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_reverse_nat);
	__uint(max_entries, DEFAULT_LB_REV_NAT);
} tsct_lb_reverse_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, DEFAULT_LB_MAGLEV_SLOTS);
	/* The agent writes whole tables into it through a mapping. */
	__uint(map_flags, BPF_F_MMAPABLE);
} tsct_lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_member_key);
	__type(value, struct lb_member);
	__uint(max_entries, DEFAULT_LB_MAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_lb_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb4_src_range_key);
	__type(value, __u8);
	__uint(max_entries, DEFAULT_LB_MAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_lb4_source_range SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb6_src_range_key);
	__type(value, __u8);
	__uint(max_entries, DEFAULT_LB_MAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_lb6_source_range SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
	__uint(max_entries, DEFAULT_LB_MAP);
} tsct_lb_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_stats);
	__uint(max_entries, DEFAULT_LB_REV_NAT);
} tsct_lb_stats SEC(".maps");

/* Per-CPU scratch space: values too large for the BPF stack next to what the
 * stages keep there. A program runs on one CPU from start to end, so a slot
 * is never shared. */

/* The tracker's interface (tsct_ct, conntrack.h): flat, no pointers inside,
 * as a global function's arguments must be. */
struct ct_io {
	__u64 now;
	__u32 ifindex;
	__u32 state; /* out: ct_state */
	__u32 mark;  /* out */
	__u16 zone;
	__u8 hook;
	__u8 lookup_only;
	__u8 dir;	 /* out */
	__u8 lb;	 /* in: 1 to look a new connection's destination up among the services; out: enum ct_lb_kind */
	__be16 nat_port; /* out, with +snat: the connection's translation */
	__be32 nat_addr[4];  /* out, with +snat */
	__u32 backend_id;    /* in: a new connection's backend (+dnat); out: with +dnat or CT_LB_FRONT */
	__u16 rev_nat_index; /* in, with backend_id; out, as backend_id */
	__u8 lb_snat;	     /* out: enum lb_snat_kind, of a service entry and then of the load balancer */
	__u8 has_service;    /* out, with CT_LB_SERVICE: `service` is the frontend's entry */
	struct lb_service service;
	/* The firewall's part (enum fw_ct_op). In, for FW_OP_NONE's new
	 * connection and for FW_OP_CACHE: what to store on the entry. */
	__u8 fw_op;
	__u8 fw_pending; /* out: a new connection FW_OP_DEFER did not create */
	__u8 fw_cache;	 /* out: the entry's fw_cache; in (FW_OP_CACHE): this direction's bits */
	__u8 pad_fw;
	__u16 fw_epoch;	  /* out: the entry's; in: the live epoch */
	__u16 fw_counter; /* out: this direction's; in: the deciding rule's */
	/* In, for a new connection: the mark and label it is committed with. */
	__u32 commit_mark_value;
	__u32 commit_label_value[4];
};

/* What the NAT stage needs from the tracker, and gives back. Flat (no
 * pointers), because the NAT stage is a global function that the verifier
 * checks on its own. */
struct nat_io {
	__u64 now;
	__u32 ct_state; /* in; +snat added */
	__u32 ifindex;	/* the device */
	__u16 zone;	/* in; for replies, the connection's zone out */
	__u8 ct_dir;
	__u8 xlate;		/* out: the packet is to be rewritten to to_addr, to_port */
	struct device_info dev; /* the device's settings, as the caller found them */
	/* In, when ct_state has +snat: the translation the connection carries
	 * (ct_io's nat_addr, nat_port). Out: what the packet is rewritten to. */
	__be32 to_addr[4];
	__be16 to_port;
	/* In: translate the source to dev's address whatever the masquerade
	 * settings (the load balancer's full NAT and hairpin). */
	__u8 force;
	__u8 pad;
};

/* ---- The firewall (policy.h). src/policy/compile.ts describes every table
 * and writes them; both generations of a rule set live side by side, and
 * tsct_fw_control says which one is live. ---- */

struct fw_control {
	__u32 generation; /* 0 or 1: the live generation */
	__u32 epoch;	  /* one more at every rule-set swap: cached verdicts of older epochs are judged again */
	__u32 flags;	  /* enum fw_control_flag */
	__u32 hooks;	  /* bit h (enum fw_hook_index): the hook has rules or a drop policy */
};

struct fw_hook {
	__u32 n_rules;
	__u16 words; /* ceil(n_rules / 64) */
	__u8 policy; /* 0 accept, 1 drop: when no rule decides */
	__u8 judge_all;
	__u32 fields; /* enum fw_field: the lookups to make */
	__u32 in_dev_other;
	__u32 out_dev_other;
};

struct fw_addr_key {
	__u32 prefixlen; /* 32 + the address prefix's length */
	__u8 gen;
	__u8 hook;
	__u8 field; /* 0 src, 1 dst */
	__u8 family;
	__u8 addr[16];
};

struct fw_port_key {
	__u32 prefixlen; /* 24 + the prefix's length over proto.port */
	__u8 gen;
	__u8 hook;
	__u8 field; /* 0 dport, 1 sport */
	__u8 proto;
	__be16 port;
} __attribute__((packed));

struct fw_device_key {
	__u8 gen;
	__u8 hook;
	__u8 field; /* 0 in, 1 out */
	__u8 pad;
	__u32 ifindex;
};

struct fw_judged_key {
	__u8 gen;
	__u8 hook;
	__u16 pad;
	__u32 ifindex;
};

struct fw_residual_key {
	__u32 prefixlen; /* 64 + the prefix's length */
	__u8 gen;
	__u8 kind; /* 0 a port set, 4 or 6 an address set */
	__u16 pad;
	__be32 set;
	__u8 data[16];
};

struct fw_vector {
	__u16 lo; /* the first and last word that can be non-zero */
	__u16 hi;
	__u32 off; /* word lo's index in tsct_fw_vector_words, within the generation */
};

struct fw_check {
	__u32 op; /* enum fw_check_op */
	__u32 arg;
	__u32 value;
	__u32 mask;
};

struct fw_rule {
	__u8 action; /* enum fw_action */
	__u8 reject_with;
	__u8 helper;
	__u8 n_checks;
	__u32 skip_to;
	__u32 counter;
	__u32 commit_flags; /* enum fw_commit_flag */
	__u32 commit_mark_value;
	__u32 commit_mark_mask;
	__u32 commit_label_value[4];
	__u32 commit_label_mask[4];
	struct fw_check checks[FW_MAX_CHECKS];
};

struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_control);
	__uint(max_entries, 1);
} tsct_fw_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_hook);
	__uint(max_entries, 2 * FW_HOOKS);
} tsct_fw_hooks SEC(".maps");

/* [(g * 3 + hook) * 256 + ct_state byte]: the vector of the rules that accept that state. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 2 * FW_HOOKS * 256);
	__uint(map_flags, BPF_F_MMAPABLE);
} tsct_fw_ct_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct fw_addr_key);
	__type(value, __u32);
	__uint(max_entries, FW_MAX_ADDR_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_fw_addr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct fw_port_key);
	__type(value, __u32);
	__uint(max_entries, FW_MAX_PORT_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_fw_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fw_device_key);
	__type(value, __u32);
	__uint(max_entries, FW_MAX_DEVICE_ENTRIES);
} tsct_fw_devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct fw_judged_key);
	__type(value, __u8);
	__uint(max_entries, FW_MAX_DEVICE_ENTRIES);
} tsct_fw_judged SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct fw_residual_key);
	__type(value, __u8);
	__uint(max_entries, FW_MAX_RESIDUAL_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} tsct_fw_residual SEC(".maps");

/* Written through mmap by the agent: a rule set of 10,000 rules is a few
 * memory copies, not a syscall per entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_vector);
	__uint(max_entries, 2 * FW_MAX_VECTORS);
	__uint(map_flags, BPF_F_MMAPABLE);
} tsct_fw_vectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2 * FW_MAX_VECTOR_WORDS);
	__uint(map_flags, BPF_F_MMAPABLE);
} tsct_fw_vector_words SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_rule);
	__uint(max_entries, 2 * FW_HOOKS * FW_MAX_RULES);
	__uint(map_flags, BPF_F_MMAPABLE);
} tsct_fw_rules SEC(".maps");

/* [g * FW_MAX_COUNTERS + counter]: packets and bytes each origin rule decided. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_counter);
	__uint(max_entries, 2 * FW_MAX_COUNTERS);
} tsct_fw_counters SEC(".maps");

/* [g * 3 + hook]: what each hook's default policy decided. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_counter);
	__uint(max_entries, 2 * FW_HOOKS);
} tsct_fw_policy_counters SEC(".maps");

/* One packet's question to the classifier and its answer (policy.h). */
struct fw_io {
	/* In. */
	__u32 in_ifindex;  /* 0: none (output) */
	__u32 out_ifindex; /* 0: none (input) */
	__u32 pkt_mark;
	__u32 ct_mark;
	__u32 label[4];
	__u16 zone;
	__u8 hook;  /* enum fw_hook_index */
	__u8 state; /* the ct_state bits to judge */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 has_orig; /* orig holds the connection's original tuple */
	__u8 pad;
	struct tuple t;	   /* the packet's addresses and ports */
	struct tuple orig; /* what the client dialled (before DNAT) */
	/* Out. */
	__u8 verdict; /* enum fw_action: accept, drop or reject */
	__u8 helper;
	__u16 pad2;
	__u32 counter; /* the deciding rule's counter; FW_COUNTER_POLICY: the hook's policy */
	__u32 commit_flags;
	__u32 commit_mark_value;
	__u32 commit_mark_mask;
	__u32 commit_label_value[4];
	__u32 commit_label_mask[4];
};

/* Vectors ANDed per packet at most: ct_state, src, dst, dport, sport, in, out. */
#define FW_MAX_FIELDS 7

/* The search's state: no pointers, because it crosses global functions
 * (tsct_fw_search), after which the verifier knows its fields as numbers only. */
struct fw_search {
	__u64 cur;		   /* candidates of word cw still to try */
	__u32 base[FW_MAX_FIELDS]; /* per field slot: the index of its vector's word 0 in tsct_fw_vector_words */
	__u32 present;		   /* bit k: slot k holds a vector */
	__u32 w;		   /* the next word to AND */
	__u32 hi;		   /* the last word to AND */
	__u32 cw;		   /* the word cur came from */
	__u32 from;		   /* the first rule still to consider (past a matched return) */
	__u32 rule_base;	   /* (g * 3 + hook) * FW_MAX_RULES */
	__u32 lo;
	__u8 gen;
	__u8 decided;
	__u32 rule; /* the deciding rule's index in tsct_fw_rules, when decided */
};

/* The tc pipeline's parsed packet and tracker interface (pipeline.h): on
 * its stack, with the frames of the stages it calls, they would pass the
 * verifier's 512 bytes for the whole call chain. */
struct pipeline_scratch {
	struct pkt p;
	struct ct_io cio;
	struct nat_io nio;
	struct fw_io fio;
	struct fw_search search; /* the classifier's (policy.h) */
	struct tuple before_lb;	 /* a new load-balanced packet's tuple as the client sent it */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct pipeline_scratch);
	__uint(max_entries, 1);
} tsct_pipeline_scratch SEC(".maps");

/* The firewall's part of one tracker call's answer (conntrack.h). */
struct ct_fw_out {
	__u8 pending;  /* FW_OP_DEFER left a new connection uncreated */
	__u8 cache;    /* the entry's fw_cache */
	__u16 epoch;   /* the entry's fw_epoch */
	__u16 counter; /* the packet's direction's fw_counter */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ct_fw_out);
	__uint(max_entries, 1);
} tsct_ct_fw_out SEC(".maps");

/* A new connection's entry, built before it is inserted (conntrack.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ct_entry);
	__uint(max_entries, 1);
} tsct_ct_scratch SEC(".maps");

/* The XDP fast path's parsed packet, FIB lookup and stage interfaces (xdp.h). */
struct xdp_scratch {
	struct pkt p;
	struct bpf_fib_lookup fib;
	struct ct_io cio;
	struct nat_io nio;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct xdp_scratch);
	__uint(max_entries, 1);
} tsct_xdp_scratch SEC(".maps");

/* The tc fast path's FIB lookup and its result, between tsct_fast_path and
 * tsct_fast_path_send, with the NAT stage between them (fastpath.h). */
struct fast_path_route {
	struct bpf_fib_lookup fib;
	long rc;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fast_path_route);
	__uint(max_entries, 1);
} tsct_fast_path_scratch SEC(".maps");

#endif
