/* SPDX-License-Identifier: GPL-2.0 */
/* The service load balancer: a new connection to a service frontend (VIP,
 * port, protocol) gets a backend from the service's table (Maglev or
 * random), kept in a service entry keyed client -> VIP (CT_F_SERVICE, as
 * Cilium's CT_SERVICE entry); every later packet of the connection goes to
 * that backend without a new choice, whatever the table becomes. The
 * backend's own connection entry (client -> backend) carries +dnat and the
 * service id, from which its replies get the VIP back (tsct_lb_reverse_nat).
 *
 * What happens to a live connection when its backend changes is decided
 * here, in one place (lb_keep_backend): an active backend keeps everything;
 * a terminating (or quarantined, or maintenance) one keeps its TCP
 * connections, while a UDP flow moves to a backend that takes new
 * connections at its next packet; a removed backend's TCP connections are
 * dropped (DROP_LB_BACKEND_GONE) and its UDP flows move. A TCP SYN on a
 * service entry is a new connection and chooses again. */
#ifndef TSCT_LB_H
#define TSCT_LB_H

#include "common.h"
#include "config.h"
#include "ct_map.h"
#include "maps.h"
#include "metrics.h"
#include "packet.h"

/* The load balancer stage's interface (a global function: flat arguments). */
struct lb_io {
	__u64 now;
	__u32 backend_id;    /* in: the service entry's (CT_LB_FRONT); out: the backend chosen or kept */
	__u16 rev_nat_index; /* out: the service id */
	__u16 zone;	     /* the connection's zone */
	__u8 lb;	     /* in: what the tracker found (enum ct_lb_kind) */
	__u8 snat;	     /* in, of the service entry; out: enum lb_snat_kind */
	__u8 has_service;    /* in, with CT_LB_SERVICE: `service` is the frontend's entry */
	__u8 pad;
	struct lb_service service;
	__be16 to_port; /* out: the backend's address and port */
	__u16 pad2;
	__be32 to_addr[4];
};

/* murmur3's 32-bit mixing over the tuple's words, seeded: a function of the
 * tuple and the seed only, so that every node with the same seed and tables
 * picks the same backend for the same connection (an ECMP change keeps it). */
static __always_inline __u32 lb_mix(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51;
	w = (w << 15) | (w >> 17);
	w *= 0x1b873593;
	h ^= w;
	h = (h << 13) | (h >> 19);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 lb_tuple_hash(const struct tuple *t, __u32 seed, int with_sport)
{
	__u32 h = seed;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		h = lb_mix(h, t->saddr[i]);
		h = lb_mix(h, t->daddr[i]);
	}
	h = lb_mix(h, (with_sport ? (__u32)t->sport : 0) | (__u32)t->dport << 16);
	h = lb_mix(h, t->proto);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline struct lb_service *lb_service_of(const struct tuple *t)
{
	if (t->family == 4) {
		struct lb4_key k = {.addr = t->daddr[0], .port = t->dport, .proto = t->proto};

		return bpf_map_lookup_elem(&tsct_lb4_services, &k);
	} else {
		struct lb6_key k = {.port = t->dport, .proto = t->proto};

		__builtin_memcpy(k.addr, t->daddr, 16);
		return bpf_map_lookup_elem(&tsct_lb6_services, &k);
	}
}

static __always_inline struct lb_backend *lb_backend_of(__u32 id)
{
	return id ? bpf_map_lookup_elem(&tsct_lb_backends, &id) : 0;
}

/* The backend a service's table gives a connection: Maglev by the tuple's
 * hash (the source port left out with session affinity, so that all of a
 * client's connections hash alike), random otherwise. 0 when none. */
static __always_inline __u32 lb_select(const struct lb_service *svc, const struct tuple *t)
{
	const struct tsct_config *cfg = config_get();
	__u32 slot, *id;

	if (!svc->table_size)
		return 0;
	if (svc->algorithm == LB_ALG_MAGLEV)
		slot = lb_tuple_hash(t, cfg ? cfg->lb_hash_seed : 0, !(svc->flags & LB_SVC_F_AFFINITY)) %
		       svc->table_size;
	else
		slot = bpf_get_prandom_u32() % svc->table_size;
	slot += svc->table_offset;
	id = bpf_map_lookup_elem(&tsct_lb_maglev, &slot);
	return id ? *id : 0;
}

/* Session affinity: the client's backend for this service while it is still
 * a member that takes new connections and the timeout has not passed since
 * its last use; otherwise a new choice, remembered. */
static __always_inline __u32 lb_affinity_select(const struct lb_service *svc, const struct tuple *t, __u64 now)
{
	struct lb_affinity_key k = {.rev_nat_index = svc->rev_nat_index, .family = t->family};
	struct lb_affinity *a, fresh = {.last_used_ns = now};
	struct lb_member_key mk = {.rev_nat_index = svc->rev_nat_index};
	struct lb_backend *b;
	__u32 id;

	__builtin_memcpy(k.client, t->saddr, 16);
	a = bpf_map_lookup_elem(&tsct_lb_affinity, &k);
	if (a && now - a->last_used_ns < (__u64)svc->affinity_timeout * NSEC_PER_SEC) {
		mk.backend_id = a->backend_id;
		b = lb_backend_of(a->backend_id);
		if (b && b->state == LB_BE_ACTIVE && bpf_map_lookup_elem(&tsct_lb_members, &mk)) {
			a->last_used_ns = now;
			metrics_count(REASON_LB_AFFINITY, HOOK_INGRESS, 0);
			return a->backend_id;
		}
	}
	id = lb_select(svc, t);
	if (id) {
		fresh.backend_id = id;
		bpf_map_update_elem(&tsct_lb_affinity, &k, &fresh, BPF_ANY);
	}
	return id;
}

/* Whether a connection keeps the backend its service entry names. */
static __always_inline int lb_keep_backend(const struct lb_backend *b, const struct pkt *p, int family)
{
	if (!b || b->state == LB_BE_NONE || b->family != family)
		return 0;
	if (b->state == LB_BE_ACTIVE)
		return 1;
	/* Terminating, quarantined or in maintenance: a TCP connection drains
	 * on it; a UDP flow, which has no connection to drain, moves. */
	return p->t.proto == IPPROTO_TCP;
}

static __always_inline void lb_stats_add(__u16 rev_nat_index, __u32 bytes, __u32 connections)
{
	__u32 k = rev_nat_index;
	struct lb_stats *s = bpf_map_lookup_elem(&tsct_lb_stats, &k);

	if (!s)
		return;
	s->packets++;
	s->bytes += bytes;
	s->connections += connections;
}

/* Records a new connection's backend in a service entry keyed as the
 * connection is (client -> VIP). Returns the backend the entry names: this
 * one, or the one another CPU recorded first. */
static __always_inline __u32 lb_front_create(const struct pkt *p, struct lb_io *io, __u32 backend_id, __u16 rev_nat)
{
	struct ct_entry *fresh, *cur;
	__u32 zero = 0, src_is_b;
	union {
		struct ct4_key k4;
		struct ct6_key k6;
	} key;
	void *map = ct_map_for(p->t.family, p->t.proto);

	fresh = bpf_map_lookup_elem(&tsct_ct_scratch, &zero);
	if (!fresh)
		return 0;
	if (p->t.family == 4)
		src_is_b = ct4_key_from(&key.k4, &p->t, io->zone);
	else
		src_is_b = ct6_key_from(&key.k6, &p->t, io->zone);
	__builtin_memset(fresh, 0, sizeof(*fresh));
	fresh->created_ns = io->now;
	fresh->last_seen_ns = io->now;
	fresh->expires_ns = io->now + ct_timeout_ns(config_get(), p->t.proto, TCP_CT_ESTABLISHED);
	fresh->flags = CT_F_SERVICE | (src_is_b ? CT_F_ORIG_IS_B : 0) | (io->snat == LB_SNAT_FULL ? CT_F_LB_SNAT : 0);
	fresh->zone = io->zone;
	fresh->backend_id = backend_id;
	fresh->rev_nat_index = rev_nat;
	/* Any earlier service entry on this tuple (a SYN reusing a closed
	 * connection's tuple, a flow moved off its backend) is replaced. */
	if (bpf_map_update_elem(map, &key, fresh, BPF_ANY) == 0)
		return backend_id;
	cur = bpf_map_lookup_elem(map, &key);
	return cur ? cur->backend_id : 0;
}

/* Whether a client is inside the service's loadBalancerSourceRanges. */
static __always_inline int lb_source_allowed(const struct lb_service *svc, const struct tuple *t)
{
	if (t->family == 4) {
		struct lb4_src_range_key k = {
			.prefixlen = 64, .rev_nat_index = svc->rev_nat_index, .addr = t->saddr[0]};

		return bpf_map_lookup_elem(&tsct_lb4_source_range, &k) != 0;
	} else {
		struct lb6_src_range_key k = {.prefixlen = 160, .rev_nat_index = svc->rev_nat_index};

		__builtin_memcpy(k.addr, t->saddr, 16);
		return bpf_map_lookup_elem(&tsct_lb6_source_range, &k) != 0;
	}
}

/* A new connection to a service, or a packet of a load-balanced one whose
 * backend must be chosen again: the service's choice, or the drop reason. */
static __always_inline __u32 lb_choose(const struct pkt *p, struct lb_io *io, __u32 *backend_id)
{
	/* The tracker found a new connection's frontend already. */
	struct lb_service *svc = io->lb == CT_LB_SERVICE && io->has_service ? &io->service : lb_service_of(&p->t);
	struct tuple wild = p->t;
	__u32 id;

	if (!svc) {
		wild.dport = 0;
		wild.proto = 0;
		/* A known VIP, on a port or protocol it does not serve: refused,
		 * not forwarded to whatever the address would route to. */
		return lb_service_of(&wild) ? REASON_DROP_LB_PORT_NOT_SERVED : REASON_DROP_LB_NO_BACKEND;
	}
	io->rev_nat_index = svc->rev_nat_index;
	io->snat = svc->flags & LB_SVC_F_SNAT ? LB_SNAT_FULL : LB_SNAT_NONE;
	if ((svc->flags & LB_SVC_F_SOURCE_RANGE) && !lb_source_allowed(svc, &p->t))
		return REASON_DROP_LB_SOURCE_RANGE;
	if (!svc->table_size)
		return svc->flags & LB_SVC_F_LOCAL ? REASON_DROP_LB_NO_LOCAL_BACKEND : REASON_DROP_LB_NO_BACKEND;
	id = svc->flags & LB_SVC_F_AFFINITY ? lb_affinity_select(svc, &p->t, io->now) : lb_select(svc, &p->t);
	if (!id)
		return REASON_DROP_LB_NO_BACKEND;
	*backend_id = id;
	return 0;
}

/* The load balancer stage, after the tracker found a service entry or a new
 * connection to a service (io->lb). On success io->to_addr and to_port are
 * the backend the packet is to go to; returns 0 or a drop reason. Nothing is
 * created for a connection that is refused. */
static __always_inline int lb_stage(struct pkt *p, struct lb_io *io)
{
	struct lb_backend *b = 0;
	__u32 id = 0, reason, is_new = 0;

	if (!p || !io)
		return 0;
	if (io->lb == CT_LB_FRONT) {
		b = lb_backend_of(io->backend_id);
		id = io->backend_id;
		/* A SYN on a service entry opens a new connection on its tuple. */
		if (p->t.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_F_SYN | TCP_F_ACK)) == TCP_F_SYN)
			b = 0;
		else if (!lb_keep_backend(b, p, p->t.family) && p->t.proto == IPPROTO_TCP)
			return REASON_DROP_LB_BACKEND_GONE;
	}
	/* Otherwise the service entry's backend, service id and full NAT, as the
	 * tracker handed them on: no service lookup for a packet of a
	 * connection that keeps its backend. */
	if (!lb_keep_backend(b, p, p->t.family)) {
		int reselect = io->lb == CT_LB_FRONT;

		reason = lb_choose(p, io, &id);
		if (reason)
			return reason;
		/* New: a new connection, or a SYN on a service entry's tuple;
		 * a UDP flow leaving its backend is the same flow. */
		is_new = !reselect || p->t.proto == IPPROTO_TCP;
		if (reselect && p->t.proto != IPPROTO_TCP)
			metrics_count(REASON_LB_RESELECTED, HOOK_INGRESS, 0);
		id = lb_front_create(p, io, id, io->rev_nat_index);
		b = lb_backend_of(id);
		if (!b || b->state == LB_BE_NONE)
			return REASON_DROP_LB_NO_BACKEND;
	}
	if (!b)
		return REASON_DROP_LB_NO_BACKEND;
	io->backend_id = id;
	__builtin_memcpy(io->to_addr, b->addr, 16);
	io->to_port = b->port;
	/* A backend connecting to its own service: sent back to itself from
	 * its own address it would drop as a martian; it gets the service
	 * loopback address as the source instead. */
	if (!addr6_cmp(b->addr, p->t.saddr))
		io->snat = LB_SNAT_HAIRPIN;
	if (is_new)
		metrics_count(REASON_LB_NEW, HOOK_INGRESS, 0);
	metrics_count(REASON_LB_DNAT, HOOK_INGRESS, 0);
	lb_stats_add(io->rev_nat_index, p->l3_len, is_new);
	return 0;
}

/* Whether a refusal of the load balancer is answered (kube-proxy's REJECT:
 * no backend, a port the VIP does not serve, a TCP connection whose backend
 * went), rather than silently dropped (traffic policy Local with none here,
 * a source outside the ranges: kube-proxy's DROP). */
static __always_inline int lb_reason_rejects(__u32 reason)
{
	return reason == REASON_DROP_LB_NO_BACKEND || reason == REASON_DROP_LB_PORT_NOT_SERVED ||
	       reason == REASON_DROP_LB_BACKEND_GONE;
}

/* What a backend's reply gets back: the service's address and port. */
static __always_inline struct lb_reverse_nat *lb_reverse_nat_of(__u16 rev_nat_index)
{
	__u32 k = rev_nat_index;

	return k ? bpf_map_lookup_elem(&tsct_lb_reverse_nat, &k) : 0;
}

#endif
