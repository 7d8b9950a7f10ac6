/* SPDX-License-Identifier: GPL-2.0 */
/* Connection tracking: find or create the connection of a packet, advance
 * the TCP state machine, compute ct_state, and keep a full table from costing
 * live connections. */
#ifndef TSCT_CONNTRACK_H
#define TSCT_CONNTRACK_H

#include "common.h"
#include "config.h"
#include "ct_map.h"
#include "events.h"
#include "frag.h"
#include "maps.h"
#include "metrics.h"
#include "packet.h"

#ifndef EEXIST
#define EEXIST 17
#endif

/* Ring slots tried for an unassured victim when a table is full. Assured
 * connections created back to back sit in consecutive slots; the scan must
 * be able to step over such a run. */
#define EVICT_TRIES 64

/* What the tracker found of the load balancer (struct ct_io's lb). */
enum ct_lb_kind {
	CT_LB_NONE = 0,
	CT_LB_FRONT = 1,   /* a service entry (client -> VIP): its backend_id says where the connection goes */
	CT_LB_SERVICE = 2, /* no connection, and the destination is a service: the load balancer decides */
};

struct ct_result {
	__u32 state; /* ct_state bits */
	__u32 mark;
	__u8 dir;	 /* enum ct_dir */
	__u8 lb;	 /* enum ct_lb_kind */
	__be16 nat_port; /* with +snat: the connection's source translation */
	__be32 nat_addr[4];
	__u32 backend_id;    /* with +dnat, or of a service entry */
	__u16 rev_nat_index; /* with +dnat, or of a service entry */
	__u8 lb_snat;	     /* of a service entry: enum lb_snat_kind */
	__u8 has_service;    /* with CT_LB_SERVICE: the frontend's entry is in `service` */
	struct lb_service service;
};

/* The firewall's part of the tracker's answer (struct ct_io's fw_*), kept
 * off tsct_ct's stack, which is at the verifier's limit. */
static __always_inline struct ct_fw_out *ct_fw_out_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tsct_ct_fw_out, &zero);
}

/* What a packet of a known connection reports: its state as seen in this
 * direction, and the source translation the connection carries, so that the
 * NAT stage needs no lookup of its own. */
static __always_inline void ct_result_of(struct ct_result *res, const struct ct_entry *e, __u32 state, __u32 dir)
{
	res->state = state;
	res->mark = e->mark;
	res->dir = dir;
	{
		struct ct_fw_out *o = ct_fw_out_get();

		if (o) {
			o->cache = e->fw_cache;
			o->epoch = e->fw_epoch;
			o->counter = e->fw_counter[dir & 1];
		}
	}
	if (e->flags & CT_F_SNAT) {
		res->nat_port = e->nat_port;
		__builtin_memcpy(res->nat_addr, e->nat_addr, 16);
	}
	if (e->flags & (CT_F_DNAT | CT_F_SERVICE)) {
		res->backend_id = e->backend_id;
		res->rev_nat_index = e->rev_nat_index;
	}
}

enum tcp_index {
	TCP_IDX_SYN = 0,
	TCP_IDX_SYNACK = 1,
	TCP_IDX_FIN = 2,
	TCP_IDX_ACK = 3,
	TCP_IDX_RST = 4,
	TCP_IDX_NONE = 5,
	TCP_IDX_MAX = 6,
};

#define sNO TCP_CT_NONE
#define sSS TCP_CT_SYN_SENT
#define sSR TCP_CT_SYN_RECV
#define sES TCP_CT_ESTABLISHED
#define sFW TCP_CT_FIN_WAIT
#define sCW TCP_CT_CLOSE_WAIT
#define sLA TCP_CT_LAST_ACK
#define sTW TCP_CT_TIME_WAIT
#define sCL TCP_CT_CLOSE
#define sS2 TCP_CT_SYN_SENT2
#define sIV TCP_CT_INVALID
#define sIG TCP_CT_IGNORE

/* nf_conntrack's transitions (nf_conntrack_proto_tcp.c), by direction, packet
 * kind and current state. sIG: valid but leaves the state alone; sIV: invalid. */
static const __u8 tcp_transitions[2][TCP_IDX_MAX][TCP_CT_MAX] = {
	{
		/* ORIGINAL   sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		/* syn    */ {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		/* synack */ {sIV, sIV, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		/* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/* ack    */ {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		/* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	{
		/* REPLY      sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		/* syn    */ {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2},
		/* synack */ {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		/* fin    */ {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		/* ack    */ {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		/* rst    */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		/* none   */ {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
};

static __always_inline __u32 tcp_index(__u8 f)
{
	if (f & TCP_F_RST)
		return TCP_IDX_RST;
	if (f & TCP_F_SYN)
		return (f & TCP_F_ACK) ? TCP_IDX_SYNACK : TCP_IDX_SYN;
	if (f & TCP_F_FIN)
		return TCP_IDX_FIN;
	if (f & TCP_F_ACK)
		return TCP_IDX_ACK;
	return TCP_IDX_NONE;
}

/* ct_state of a packet in direction dir of a connection with these flags. */
static __always_inline __u32 ct_state_of(__u32 flags, __u32 dir)
{
	__u32 s = CT_STATE_TRK;

	if (dir == CT_DIR_REPLY)
		s |= CT_STATE_EST | CT_STATE_RPL;
	else
		s |= (flags & CT_F_SEEN_REPLY) ? CT_STATE_EST : CT_STATE_NEW;
	if (flags & CT_F_SNAT)
		s |= CT_STATE_SNAT;
	if (flags & CT_F_DNAT)
		s |= CT_STATE_DNAT;
	return s;
}

static __always_inline __u32 ring_next(__u32 table, __u32 size)
{
	__u64 *head = bpf_map_lookup_elem(&tsct_ct_ring_head, &table);

	if (!head || !size)
		return 0;
	return __sync_fetch_and_add(head, 1) % size;
}

/* Asks the agent for an early sweep; written at most once a second. */
static __always_inline void gc_wake(__u64 now)
{
	__u32 zero = 0;
	__u64 *wake = bpf_map_lookup_elem(&tsct_gc_wake, &zero);

	if (wake && *wake + NSEC_PER_SEC < now)
		*wake = now;
}

/* Eviction state for bpf_loop: which table, and where the scan is. */
struct ct_evict {
	__u32 table;
	__u32 ring_sz;
	__u32 idx;
	__u8 hook;
	__u8 evicted;
	__u16 pad;
};

/* One ring slot: evicts its connection when it is there and not assured.
 * A callback of bpf_loop, so the verifier checks it once, not per path. */
static long ct_evict_slot(__u32 i, struct ct_evict *x)
{
	__u32 family = x->table < CT_TABLE_TCP6 ? 4 : 6;
	__u8 proto = x->table == CT_TABLE_TCP4 || x->table == CT_TABLE_TCP6 ? IPPROTO_TCP : IPPROTO_UDP;
	void *map = ct_map_for(family, proto);
	void *victim = bpf_map_lookup_elem(ct_ring_for(family, proto), &x->idx);
	struct ct_entry *v = victim ? bpf_map_lookup_elem(map, victim) : 0;

	if (v && !(v->flags & CT_F_ASSURED) && bpf_map_delete_elem(map, victim) == 0) {
		x->evicted = 1;
		return 1;
	}
	x->idx = ring_next(x->table, x->ring_sz);
	return 0;
}

/* Inserts a new connection. A full table gives up the oldest unassured entry
 * named in its ring; established (assured) connections are never evicted.
 * Returns 0, -EEXIST when another CPU created it first, or the failure (the
 * table is full and nothing in reach could be evicted). */
static __always_inline long ct_insert(void *map, void *ring, __u32 table, __u32 ring_sz, void *key, struct ct_entry *e,
				      enum tsct_hook hook)
{
	struct ct_evict x = {.table = table, .ring_sz = ring_sz, .hook = hook};
	long rc;

	x.idx = ring_next(table, ring_sz);
	rc = bpf_map_update_elem(map, key, e, BPF_NOEXIST);
	if (rc == -EEXIST)
		return rc;
	if (rc) {
		gc_wake(e->created_ns);
		bpf_loop(EVICT_TRIES, ct_evict_slot, &x, 0);
		if (x.evicted)
			metrics_count(REASON_CT_EVICTED, hook, 0);
		rc = bpf_map_update_elem(map, key, e, BPF_NOEXIST);
		if (rc)
			return rc;
	}
	bpf_map_update_elem(ring, &x.idx, key, BPF_ANY);
	return 0;
}

static __always_inline void ct_entry_init(struct ct_entry *e, const struct pkt *p, __u64 now, __u32 src_is_b,
					  __u16 zone, __u32 ifindex, enum tsct_hook hook)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->created_ns = now;
	e->last_seen_ns = now;
	e->last_report_ns[CT_DIR_ORIGINAL] = now;
	e->packets[CT_DIR_ORIGINAL] = 1;
	e->bytes[CT_DIR_ORIGINAL] = p->l3_len;
	e->flags = (src_is_b ? CT_F_ORIG_IS_B : 0) | (hook == HOOK_EGRESS ? CT_F_EGRESS : 0);
	e->zone = zone;
	e->ifindex = ifindex;
}

/* Whether a packet with no connection may start one; sets the entry's
 * initial TCP state, or returns the invalid reason. */
static __always_inline __u32 ct_new_allowed(const struct pkt *p, const struct tsct_config *cfg, struct ct_entry *e)
{
	if (p->kind == PKT_FRAG_LATER)
		return REASON_INV_FRAG_UNKNOWN;
	if (p->kind == PKT_ICMP_REPLY)
		return REASON_INV_ICMP_REPLY_UNKNOWN;
	if (p->t.proto != IPPROTO_TCP)
		return 0;
	switch (tcp_index(p->tcp_flags)) {
	case TCP_IDX_SYN:
		e->tcp_state = TCP_CT_SYN_SENT;
		e->tcp_flags_seen[CT_DIR_ORIGINAL] = p->tcp_flags;
		return 0;
	case TCP_IDX_ACK:
		if (!(config_flags(cfg) & CFG_F_TCP_LOOSE))
			return REASON_INV_TCP_NOT_SYN;
		/* Picked up mid-stream, as nf_conntrack's loose mode does: after an
		 * agent restart or a GC race, live connections keep working. */
		e->tcp_state = TCP_CT_ESTABLISHED;
		e->tcp_flags_seen[CT_DIR_ORIGINAL] = p->tcp_flags;
		e->flags |= CT_F_PICKED_UP | CT_F_SEEN_NON_SYN;
		return 0;
	case TCP_IDX_RST:
		return REASON_INV_TCP_RST_UNKNOWN;
	default:
		return REASON_INV_TCP_NOT_SYN;
	}
}

/* A packet of a known connection: counters, TCP state, timeouts. Returns 0
 * or an invalid reason (the entry is then left as it was). */
static __always_inline __u32 ct_on_packet(struct ct_entry *e, const struct pkt *p, __u32 dir, __u64 now,
					  const struct tsct_config *cfg)
{
	__u8 state = e->tcp_state, old = state;
	__u32 set = 0;

	dir &= 1;
	if (p->t.proto == IPPROTO_TCP && p->kind != PKT_FRAG_LATER) {
		__u32 idx = tcp_index(p->tcp_flags);
		__u8 next;

		__u32 st = state;

		asm volatile("" : "+r"(st), "+r"(idx));
		if (st >= TCP_CT_MAX || idx >= TCP_IDX_MAX)
			return REASON_INV_TCP_TRANSITION;
		next = tcp_transitions[dir][idx][st];
		if (next == TCP_CT_INVALID)
			return REASON_INV_TCP_TRANSITION;
		if (next != TCP_CT_IGNORE)
			state = next;
		if (!(p->tcp_flags & TCP_F_SYN))
			set |= CT_F_SEEN_NON_SYN;
		if (p->tcp_flags & (TCP_F_FIN | TCP_F_RST))
			set |= dir == CT_DIR_REPLY ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
		if ((e->tcp_flags_seen[dir] | p->tcp_flags) != e->tcp_flags_seen[dir])
			e->tcp_flags_seen[dir] |= p->tcp_flags;
		if (state != old)
			e->tcp_state = state;
	}
	if (dir == CT_DIR_REPLY)
		set |= CT_F_SEEN_REPLY;
	if (((e->flags | set) & CT_F_SEEN_REPLY) &&
	    (p->t.proto != IPPROTO_TCP || (state >= TCP_CT_ESTABLISHED && state <= TCP_CT_TIME_WAIT)))
		set |= CT_F_ASSURED;
	if ((e->flags & set) != set)
		__sync_fetch_and_or(&e->flags, set);
	__sync_fetch_and_add(&e->packets[dir], 1);
	__sync_fetch_and_add(&e->bytes[dir], p->l3_len);
	if (e->last_seen_ns != now || state != old) {
		e->last_seen_ns = now;
		e->expires_ns = now + ct_timeout_ns(cfg, p->t.proto, state);
	}
	if (e->last_report_ns[dir] != now)
		e->last_report_ns[dir] = now;
	return 0;
}

/* A closed or expired connection whose tuple a new packet reuses. */
static __always_inline int ct_reusable(const struct ct_entry *e, const struct pkt *p, __u32 dir, __u64 now)
{
	if (e->expires_ns < now)
		return 1;
	return p->t.proto == IPPROTO_TCP && dir == CT_DIR_ORIGINAL && tcp_index(p->tcp_flags) == TCP_IDX_SYN &&
	       (e->tcp_state == TCP_CT_TIME_WAIT || e->tcp_state == TCP_CT_CLOSE);
}

struct ct_ctx {
	struct pkt *p;
	const struct tsct_config *cfg;
	struct ct_result *res;
	__u64 now;
	__u32 ifindex;
	__u16 zone;
	__u8 hook;
	__u8 lookup_only;
	/* Look a missing connection's destination up among the services. */
	__u8 lb_lookup;
	/* FW_OP_DEFER or FW_OP_COMMIT (enum fw_ct_op); in the padding before
	 * dnat_rev_nat, as tsct_ct's stack is at the verifier's limit. */
	__u8 fw_op;
	/* A new connection the load balancer sent to a backend: its entry
	 * records the backend and the service (+dnat). */
	__u16 dnat_rev_nat;
	__u32 dnat_backend_id;
};

/* What the firewall's accept stores on a new connection it commits
 * (FW_OP_COMMIT): the mark and label its rule sets (OVS's ct(commit,
 * exec(set_field))), and the verdict for the rest of the direction's
 * packets. Read from the tc pipeline's scratch, whose ct_io the firewall
 * filled (firewall.h), not through a pointer kept on this frame: tsct_ct's
 * stack is at the verifier's limit. */
static __always_inline void ct_fw_commit(struct ct_entry *e)
{
	struct pipeline_scratch *ps;
	__u32 zero = 0;

	ps = bpf_map_lookup_elem(&tsct_pipeline_scratch, &zero);
	if (!ps)
		return;
	e->mark = ps->cio.commit_mark_value;
	__builtin_memcpy(e->label, ps->cio.commit_label_value, sizeof(e->label));
	e->fw_epoch = ps->cio.fw_epoch;
	e->fw_cache = ps->cio.fw_cache;
	e->fw_counter[CT_DIR_ORIGINAL] = ps->cio.fw_counter;
}

/* Whether a packet's destination is a service frontend, or a known service
 * address (the wildcard entry): then the load balancer, not the tracker,
 * decides what a new connection to it becomes. A frontend's entry is handed
 * on (res), so that the load balancer need not look it up again. */
static __always_inline int lb_is_service_dst(const struct pkt *p, struct ct_result *res)
{
	struct lb_service *svc;

	if (p->kind != PKT_NORMAL ||
	    !(p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP || p->t.proto == IPPROTO_SCTP))
		return 0;
	if (p->t.family == 4) {
		struct lb4_key k = {.addr = p->t.daddr[0], .port = p->t.dport, .proto = p->t.proto};

		svc = bpf_map_lookup_elem(&tsct_lb4_services, &k);
		if (svc) {
			res->service = *svc;
			res->has_service = 1;
			return 1;
		}
		k.port = 0;
		k.proto = 0;
		return bpf_map_lookup_elem(&tsct_lb4_services, &k) != 0;
	} else {
		struct lb6_key k = {.port = p->t.dport, .proto = p->t.proto};

		__builtin_memcpy(k.addr, p->t.daddr, 16);
		svc = bpf_map_lookup_elem(&tsct_lb6_services, &k);
		if (svc) {
			res->service = *svc;
			res->has_service = 1;
			return 1;
		}
		k.port = 0;
		k.proto = 0;
		return bpf_map_lookup_elem(&tsct_lb6_services, &k) != 0;
	}
}

/* Finds or creates the packet's connection in one table. Returns 0 or an
 * invalid reason. */
static __always_inline __u32 ct_lookup_create(void *map, void *ring, __u32 table, void *key, __u32 src_is_b,
					      struct ct_ctx *c)
{
	struct pkt *p = c->p;
	struct ct_entry *e, *fresh;
	__u32 zero = 0, dir, reason;
	int reopened = 0, attempt;
	long rc;

#pragma unroll
	for (attempt = 0; attempt < 2; attempt++) {
		e = bpf_map_lookup_elem(map, key);
		if (e && (e->flags & CT_F_SERVICE)) {
			/* A load-balanced connection's service entry: the load
			 * balancer takes the packet to the backend, and its own
			 * connection entry is tracked then. */
			dir = ct_packet_dir(e, src_is_b);
			ct_result_of(c->res, e, ct_state_of(e->flags, dir), dir);
			c->res->lb = CT_LB_FRONT;
			c->res->lb_snat = e->flags & CT_F_LB_SNAT ? LB_SNAT_FULL : LB_SNAT_NONE;
			if (!c->lookup_only && e->last_seen_ns != c->now) {
				e->last_seen_ns = c->now;
				e->expires_ns = c->now + ct_timeout_ns(c->cfg, p->t.proto, TCP_CT_ESTABLISHED);
			}
			return 0;
		}
		if (e) {
			dir = ct_packet_dir(e, src_is_b);
			if (c->lookup_only) {
				ct_result_of(c->res, e, ct_state_of(e->flags, dir), dir);
				return 0;
			}
			if (!ct_reusable(e, p, dir, c->now)) {
				__u8 before = e->tcp_state;

				reason = ct_on_packet(e, p, dir, c->now, c->cfg);
				if (reason)
					return reason;
				if (e->tcp_state != before && events_on(c->cfg, CFG_F_EVENTS_UPDATE) &&
				    events_read(c->now)) {
					/* The event names the original direction. */
					struct tuple orig = p->t;

					if (dir == CT_DIR_REPLY) {
						__builtin_memcpy(orig.saddr, p->t.daddr, 16);
						__builtin_memcpy(orig.daddr, p->t.saddr, 16);
						orig.sport = p->t.dport;
						orig.dport = p->t.sport;
					}
					ct_event_emit(CT_EVENT_UPDATE, &orig, e, c->now, c->hook);
				}
				ct_result_of(c->res, e, ct_state_of(e->flags, dir), dir);
				return 0;
			}
			reopened = 1;
		} else if (c->lookup_only) {
			/* Counted where it entered the node. */
			return 0;
		} else if (c->lb_lookup && lb_is_service_dst(p, c->res)) {
			c->res->lb = CT_LB_SERVICE;
			return 0;
		}

		fresh = bpf_map_lookup_elem(&tsct_ct_scratch, &zero);
		if (!fresh)
			return 0;
		ct_entry_init(fresh, p, c->now, src_is_b, c->zone, c->ifindex, c->hook);
		if (c->dnat_backend_id) {
			fresh->flags |= CT_F_DNAT;
			fresh->backend_id = c->dnat_backend_id;
			fresh->rev_nat_index = c->dnat_rev_nat;
		}
		reason = ct_new_allowed(p, c->cfg, fresh);
		if (reason)
			return reason;
		if (c->fw_op == FW_OP_DEFER) {
			/* Valid, and new: created only if the rules accept it, so
			 * that denied connections never take a slot. */
			c->res->state = CT_STATE_TRK | CT_STATE_NEW | (c->dnat_backend_id ? CT_STATE_DNAT : 0);
			c->res->dir = CT_DIR_ORIGINAL;
			c->res->backend_id = c->dnat_backend_id;
			c->res->rev_nat_index = c->dnat_rev_nat;
			{
				struct ct_fw_out *o = ct_fw_out_get();

				if (o)
					o->pending = 1;
			}
			return 0;
		}
		if (c->fw_op == FW_OP_COMMIT)
			ct_fw_commit(fresh);
		fresh->expires_ns = c->now + ct_timeout_ns(c->cfg, p->t.proto, fresh->tcp_state);
		if (reopened) {
			rc = bpf_map_update_elem(map, key, fresh, BPF_ANY);
			metrics_count(REASON_CT_REOPENED, c->hook, 0);
		} else {
			rc = ct_insert(map, ring, table, ring_size_of(c->cfg, table), key, fresh, c->hook);
			if (rc == -EEXIST)
				continue; /* another CPU created it: count on that one */
			if (rc) {
				/* Full, and nothing evictable. As nf_conntrack and
				 * Cilium, the new connection's packet is dropped;
				 * CFG_F_CT_FULL_PASS passes it untracked instead, and
				 * then no later stage may take it for tracked. */
				if (!(config_flags(c->cfg) & CFG_F_CT_FULL_PASS))
					return REASON_DROP_CT_TABLE_FULL;
				metrics_count(REASON_CT_FULL_PASSED, c->hook, p->l3_len);
				c->res->state = 0;
				return 0;
			}
		}
		c->res->state = CT_STATE_TRK | CT_STATE_NEW | (c->dnat_backend_id ? CT_STATE_DNAT : 0);
		c->res->dir = CT_DIR_ORIGINAL;
		c->res->backend_id = c->dnat_backend_id;
		c->res->rev_nat_index = c->dnat_rev_nat;
		c->res->mark = fresh->mark;
		if (rc == 0) {
			metrics_count(REASON_CT_NEW, c->hook, 0);
			if (events_on(c->cfg, CFG_F_EVENTS) && events_read(c->now))
				ct_event_emit(CT_EVENT_NEW, &p->t, fresh, c->now, c->hook);
			if (fresh->flags & CT_F_PICKED_UP)
				metrics_count(REASON_CT_PICKED_UP, c->hook, 0);
		}
		return 0;
	}
	return 0;
}

/* An ICMP error about a packet of a known connection: related, counted on
 * that connection in the direction the error travels; it creates nothing. */
static __always_inline __u32 ct_related(void *map, void *key, __u32 inner_src_is_b, struct ct_ctx *c)
{
	struct ct_entry *e = bpf_map_lookup_elem(map, key);
	__u32 dir;

	if (!e)
		return REASON_INV_ICMP_ERROR_UNKNOWN;
	/* The error travels against the packet it is about. */
	dir = ct_packet_dir(e, inner_src_is_b) ^ 1;
	ct_result_of(c->res, e,
		     CT_STATE_TRK | CT_STATE_REL | (dir == CT_DIR_REPLY ? CT_STATE_RPL : 0) |
			     (e->flags & CT_F_SNAT ? CT_STATE_SNAT : 0) | (e->flags & CT_F_DNAT ? CT_STATE_DNAT : 0),
		     dir);
	if (!c->lookup_only) {
		__sync_fetch_and_add(&e->packets[dir & 1], 1);
		__sync_fetch_and_add(&e->bytes[dir & 1], c->p->l3_len);
		metrics_count(REASON_CT_RELATED, c->hook, 0);
	}
	return 0;
}

static __always_inline __u32 ct4_handle(struct ct_ctx *c)
{
	struct pkt *p = c->p;
	struct ct4_key key;
	__u32 src_is_b, reason;

	if (p->kind == PKT_ICMP_ERROR) {
		src_is_b = ct4_key_from(&key, &p->inner, c->zone);
		return ct_related(ct_map_for(4, p->inner.proto), &key, src_is_b, c);
	}
	if (p->frag == FRAG_LATER) {
		reason = frag4_ports(p, 0);
		if (reason)
			return reason;
	}
	src_is_b = ct4_key_from(&key, &p->t, c->zone);
	reason = ct_lookup_create(ct_map_for(4, p->t.proto), ct_ring_for(4, p->t.proto), ct_table_for(4, p->t.proto),
				  &key, src_is_b, c);
	if (!reason && p->frag == FRAG_FIRST)
		reason = frag4_ports(p, 1);
	return reason;
}

static __always_inline __u32 ct6_handle(struct ct_ctx *c)
{
	struct pkt *p = c->p;
	struct ct6_key key;
	__u32 src_is_b, reason;

	if (p->kind == PKT_ICMP_ERROR) {
		src_is_b = ct6_key_from(&key, &p->inner, c->zone);
		return ct_related(ct_map_for(6, p->inner.proto), &key, src_is_b, c);
	}
	if (p->frag == FRAG_LATER) {
		reason = frag6_ports(p, 0);
		if (reason)
			return reason;
	}
	src_is_b = ct6_key_from(&key, &p->t, c->zone);
	reason = ct_lookup_create(ct_map_for(6, p->t.proto), ct_ring_for(6, p->t.proto), ct_table_for(6, p->t.proto),
				  &key, src_is_b, c);
	if (!reason && p->frag == FRAG_FIRST)
		reason = frag6_ports(p, 1);
	return reason;
}

/* The tracker's interface (struct ct_io, maps.h) as a global function:
 * verified once, on its own, whatever the parser found. */
__attribute__((noinline)) int tsct_ct(struct pkt *p, struct ct_io *io)
{
	struct ct_result res = {};
	struct ct_ctx c = {};
	struct ct_fw_out *fw;

	if (!p || !io)
		return 0;
	c.p = p;
	c.cfg = config_get();
	c.res = &res;
	c.now = io->now;
	c.ifindex = io->ifindex;
	c.zone = io->zone;
	c.hook = io->hook & 1;
	c.lookup_only = io->lookup_only;
	c.lb_lookup = io->lb && (config_flags(c.cfg) & CFG_F_LB);
	c.dnat_backend_id = io->backend_id;
	c.dnat_rev_nat = io->rev_nat_index;
	c.fw_op = io->fw_op;
	fw = ct_fw_out_get();
	if (fw)
		__builtin_memset(fw, 0, sizeof(*fw));
	io->state = 0;
	if (p->t.family == 4)
		io->state = ct4_handle(&c);
	else
		io->state = ct6_handle(&c);
	/* state carried the reason; swap it into place. */
	c.ifindex = io->state;
	io->state = res.state;
	io->mark = res.mark;
	io->dir = res.dir;
	io->nat_port = res.nat_port;
	__builtin_memcpy(io->nat_addr, res.nat_addr, 16);
	io->lb = res.lb;
	io->backend_id = res.backend_id;
	io->rev_nat_index = res.rev_nat_index;
	fw = ct_fw_out_get();
	if (fw) {
		io->fw_pending = fw->pending;
		io->fw_cache = fw->cache;
		io->fw_epoch = fw->epoch;
		io->fw_counter = fw->counter;
	}
	/* The load balancer's own outputs, which a second call (the backend's
	 * connection) must not clear. */
	if (res.lb != CT_LB_NONE) {
		io->lb_snat = res.lb_snat;
		io->has_service = res.has_service;
		io->service = res.service;
	}
	return c.ifindex;
}

/* FW_OP_CACHE and FW_OP_CUT on the packet's connection (struct ct_io's
 * fw_*): the firewall's verdict stored for the packet's direction, or the
 * connection removed. A global function of its own, apart from tsct_ct,
 * whose verification has no room for more branches. */
__attribute__((noinline)) int tsct_ct_fw(const struct pkt *p, const struct ct_io *io)
{
	struct ct_entry *e;
	void *map;
	__u32 dir, src_is_b;
	__u8 shift;

	if (!p || !io)
		return 0;
	if (p->t.family == 4) {
		struct ct4_key k;

		src_is_b = ct4_key_from(&k, &p->t, io->zone);
		map = ct_map_for(4, p->t.proto);
		e = bpf_map_lookup_elem(map, &k);
		if (e && io->fw_op == FW_OP_CUT && !(e->flags & CT_F_SERVICE)) {
			bpf_map_delete_elem(map, &k);
			return 0;
		}
	} else {
		struct ct6_key k;

		src_is_b = ct6_key_from(&k, &p->t, io->zone);
		map = ct_map_for(6, p->t.proto);
		e = bpf_map_lookup_elem(map, &k);
		if (e && io->fw_op == FW_OP_CUT && !(e->flags & CT_F_SERVICE)) {
			bpf_map_delete_elem(map, &k);
			return 0;
		}
	}
	if (!e || io->fw_op != FW_OP_CACHE || (e->flags & CT_F_SERVICE))
		return 0;
	dir = ct_packet_dir(e, src_is_b) & 1;
	shift = dir * 2;
	if (e->fw_epoch != io->fw_epoch) {
		/* Another epoch's verdicts are void, the other direction's too. */
		e->fw_cache = 0;
		e->fw_epoch = io->fw_epoch;
	}
	e->fw_cache = (e->fw_cache & ~(3 << shift)) | ((io->fw_cache & 3) << shift);
	e->fw_counter[dir] = io->fw_counter;
	return 0;
}

#endif
