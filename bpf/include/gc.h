/* SPDX-License-Identifier: GPL-2.0 */
/* Garbage collection, in the kernel (SEC("syscall") tsct_gc): one pass over
 * each connection table deletes what has expired, with its NAT entry and its
 * DESTROY event, and a pass over the NAT tables removes orphans. */
#ifndef TSCT_GC_H
#define TSCT_GC_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "ct_map.h"
#include "events.h"
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "nat.h"

/* Garbage collection, in the kernel: one pass over each table deletes what
 * has expired. The expiry is read and the entry deleted within the same
 * callback, so a connection refreshed by a packet is never judged on a stale
 * copy (as a user-space batch sweep would). */
struct bpf_map;

struct gc_sweep {
	__u64 now;
	__u32 events; /* emit DESTROY events; 2 once the ring was found full */
	__u16 shard;
	__u16 shards;
	__u64 nat_deleted;
	__u64 nat_recreated;
	struct gc_table_stats s;
};

/* A DESTROY event for a connection the sweep removes, which names it by its
 * original direction. */
static __always_inline int gc_destroy_event(__u32 family, const void *key, const struct ct_entry *e, __u64 now)
{
	struct tuple t = {};

	ct_orig_tuple(&t, family, key, e);
	return ct_event_write(CT_EVENT_DESTROY, &t, e, now);
}

/* When the connection a service entry sent to its backend expires (0 when
 * it or the backend is gone): the entry is kept as long as that. Global
 * functions, one per family, so that their frames are not the judge's. */
static __always_inline __u64 gc_service_until(struct tuple *t, const struct ct_entry *e)
{
	struct lb_backend *b = lb_backend_of(e->backend_id);
	struct ct_entry *main;

	if (!b || b->state == LB_BE_NONE)
		return 0;
	__builtin_memcpy(t->daddr, b->addr, 16);
	t->dport = b->port;
	if (t->family == 4) {
		struct ct4_key k;

		ct4_key_from(&k, t, e->zone);
		main = bpf_map_lookup_elem(ct_map_for(4, t->proto), &k);
	} else {
		struct ct6_key k;

		ct6_key_from(&k, t, e->zone);
		main = bpf_map_lookup_elem(ct_map_for(6, t->proto), &k);
	}
	return main ? main->expires_ns : 0;
}

__attribute__((noinline)) __u64 tsct_gc_service4(const struct ct4_key *key, const struct ct_entry *e)
{
	struct tuple t = {};

	if (!key || !e)
		return 0;
	ct_orig_tuple(&t, 4, key, e);
	return gc_service_until(&t, e);
}

__attribute__((noinline)) __u64 tsct_gc_service6(const struct ct6_key *key, const struct ct_entry *e)
{
	struct tuple t = {};

	if (!key || !e)
		return 0;
	ct_orig_tuple(&t, 6, key, e);
	return gc_service_until(&t, e);
}

/* Judges one connection: counts it, and for an expired one writes its
 * DESTROY event and removes its NAT entry. Returns its TCP state when it is
 * to be deleted (the caller deletes it: the map is the caller's), or
 * GC_KEEP. */
#define GC_KEEP (-1)

static __always_inline int gc_judge(__u32 family, const void *key, struct ct_entry *e, struct gc_sweep *w)
{
	__u32 st = e->tcp_state;

	if (w->shards > 1) {
		__u16 ports = family == 4
				      ? ((const struct ct4_key *)key)->port_a ^ ((const struct ct4_key *)key)->port_b
				      : ((const struct ct6_key *)key)->port_a ^ ((const struct ct6_key *)key)->port_b;
		__u32 h = ports ^ (ports >> 8);

		if (h % w->shards != w->shard)
			return GC_KEEP;
	}

	asm volatile("" : "+r"(st));
	if (st >= TCP_CT_MAX)
		st = TCP_CT_NONE;
	w->s.scanned++;
	/* A service entry, kept as long as its backend's connection (gc_entry4
	 * and gc_entry6 extend it): no event or NAT entry of its own. */
	if (e->flags & CT_F_SERVICE) {
		if (e->expires_ns < w->now)
			return st;
		w->s.alive++;
		w->s.alive_by_state[st]++;
		return GC_KEEP;
	}
	if (e->expires_ns < w->now) {
		/* A sweep that finds the ring full stops trying: the rest of its
		 * destroy events are counted as lost, at no cost per entry. */
		if (w->events == 2)
			w->s.events_lost++;
		else if (w->events && gc_destroy_event(family, key, e, w->now)) {
			w->events = 2;
			w->s.events_lost++;
		}
		/* NAT entries go with their connection, in the same pass. */
		if (e->flags & CT_F_SNAT)
			w->nat_deleted += nat_delete_for_ct(family, key, e);
		return st;
	}
	if (e->flags & CT_F_SNAT) {
		int r = nat_keep_for_ct(family, key, e, w->now);

		if (r == NAT_PUT_BACK)
			w->nat_recreated++;
		else if (r == NAT_LOST)
			__sync_fetch_and_and(&e->flags, ~CT_F_SNAT);
	}
	w->s.alive++;
	w->s.alive_by_state[st]++;
	return GC_KEEP;
}

/* As global functions, one per family: verified once each, on their own,
 * rather than again for every state the sweep's loop reaches them in. */
__attribute__((noinline)) int tsct_gc_judge4(const struct ct4_key *key, struct ct_entry *e, struct gc_sweep *w)
{
	if (!key || !e || !w)
		return GC_KEEP;
	return gc_judge(4, key, e, w);
}

__attribute__((noinline)) int tsct_gc_judge6(const struct ct6_key *key, struct ct_entry *e, struct gc_sweep *w)
{
	if (!key || !e || !w)
		return GC_KEEP;
	return gc_judge(6, key, e, w);
}

/* The sweep's callbacks, one per family. The key is copied: a map's key is
 * read only, and a global function's pointer arguments count as writable. */
static __always_inline void gc_delete(struct bpf_map *map, void *key, int st, struct gc_sweep *w)
{
	if (st < 0 || st >= TCP_CT_MAX)
		return;
	if (bpf_map_delete_elem(map, key) == 0) {
		w->s.deleted++;
		w->s.deleted_by_state[st]++;
	}
}

static long gc_entry4(struct bpf_map *map, struct ct4_key *key, struct ct_entry *e, struct gc_sweep *w)
{
	struct ct4_key k = *key;

	if (e->flags & CT_F_SERVICE) {
		__u64 until = tsct_gc_service4(&k, e);

		if (until > e->expires_ns)
			e->expires_ns = until;
	}
	gc_delete(map, key, tsct_gc_judge4(&k, e, w), w);
	return 0;
}

static long gc_entry6(struct bpf_map *map, struct ct6_key *key, struct ct_entry *e, struct gc_sweep *w)
{
	struct ct6_key k = *key;

	if (e->flags & CT_F_SERVICE) {
		__u64 until = tsct_gc_service6(&k, e);

		if (until > e->expires_ns)
			e->expires_ns = until;
	}
	gc_delete(map, key, tsct_gc_judge6(&k, e, w), w);
	return 0;
}

#define GC_SWEEP(table, map, callback)                          \
	if (tables & (1 << (table))) {                          \
		__builtin_memset(&w.s, 0, sizeof(w.s));         \
		bpf_for_each_map_elem(&(map), callback, &w, 0); \
		args->stats[table] = w.s;                       \
	}

/* NAT entries whose connection is gone (lost to a race, a connection
 * flushed by hand) are removed. An IN entry lives while its connection
 * carries its mapping; one whose connection does not carry it yet is spared
 * for NAT_ORPHAN_GRACE_NS, the time a mapping takes to be recorded after its
 * port is claimed. OUT entries, which versions before the mapping moved into
 * the connection kept, are removed on sight. */
#define NAT_ORPHAN_GRACE_NS 1000000000ULL

struct nat_sweep {
	__u64 now;
	__u64 orphans;
	__u64 alive;
};

/* Whether an IN entry belongs to the connection it maps back to. */
static __always_inline int nat_in_alive(const struct ct_entry *c, const __be32 *nat_addr, __be16 nat_port,
					const struct nat_entry *e, __u64 now)
{
	if (!c)
		return 0;
	if (c->flags & CT_F_SNAT)
		return c->nat_port == nat_port && !addr6_cmp(c->nat_addr, nat_addr);
	return now < e->created_ns + NAT_ORPHAN_GRACE_NS;
}

static long nat4_orphan(struct bpf_map *map, struct nat4_key *k, struct nat_entry *e, struct nat_sweep *w)
{
	/* The connection's original tuple: the client's address and port the
	 * entry maps back to, towards the peer that replies. */
	struct tuple t = {
		.family = 4,
		.proto = k->proto,
		.saddr = {e->to_addr[0]},
		.daddr = {k->saddr},
		.sport = e->to_port,
		.dport = k->proto == IPPROTO_ICMP ? e->to_port : k->sport,
	};
	__be32 nat_addr[4] = {k->daddr};
	struct ct4_key ck;

	if (k->dir == NAT_DIR_IN) {
		ct4_key_from(&ck, &t, e->zone);
		if (nat_in_alive(bpf_map_lookup_elem(ct_map_for(4, k->proto), &ck), nat_addr, k->dport, e, w->now)) {
			w->alive++;
			return 0;
		}
	}
	if (bpf_map_delete_elem(map, k) == 0)
		w->orphans++;
	return 0;
}

static long nat6_orphan(struct bpf_map *map, struct nat6_key *k, struct nat_entry *e, struct nat_sweep *w)
{
	struct tuple t = {.family = 6, .proto = k->proto};
	struct ct6_key ck;

	if (k->dir == NAT_DIR_IN) {
		__builtin_memcpy(t.saddr, e->to_addr, 16);
		__builtin_memcpy(t.daddr, k->saddr, 16);
		t.sport = e->to_port;
		t.dport = k->proto == IPPROTO_ICMPV6_ ? e->to_port : k->sport;
		ct6_key_from(&ck, &t, e->zone);
		if (nat_in_alive(bpf_map_lookup_elem(ct_map_for(6, k->proto), &ck), k->daddr, k->dport, e, w->now)) {
			w->alive++;
			return 0;
		}
	}
	if (bpf_map_delete_elem(map, k) == 0)
		w->orphans++;
	return 0;
}

SEC("syscall")
int tsct_gc(struct gc_args *args)
{
	/* The coarse clock the datapath stamps with is not offered to syscall
	 * programs; the precise one runs at most a tick ahead of it. */
	struct gc_sweep w = {.now = args->now_ns ? args->now_ns : bpf_ktime_get_ns()};
	struct tsct_config *cfg = config_get();

	/* The lease is on the real clock, whatever time the sweep judges by. */
	w.events = events_on(cfg, CFG_F_EVENTS) && events_read(bpf_ktime_get_ns());
	w.shard = args->shard;
	w.shards = args->shards;
	__u32 tables = args->tables ? args->tables : 0xf;

	struct nat_sweep n = {.now = w.now};

	GC_SWEEP(CT_TABLE_TCP4, tsct_ct4_global, gc_entry4);
	GC_SWEEP(CT_TABLE_ANY4, tsct_ct_any4_global, gc_entry4);
	GC_SWEEP(CT_TABLE_TCP6, tsct_ct6_global, gc_entry6);
	GC_SWEEP(CT_TABLE_ANY6, tsct_ct_any6_global, gc_entry6);
	args->nat_deleted = w.nat_deleted;
	args->nat_recreated = w.nat_recreated;
	metrics_add(REASON_NAT_RECREATED, HOOK_EGRESS, w.nat_recreated, 0);
	metrics_add(REASON_EVENT_LOST, HOOK_INGRESS,
		    args->stats[0].events_lost + args->stats[1].events_lost + args->stats[2].events_lost +
			    args->stats[3].events_lost,
		    0);
	if (args->shards > 1 && args->shard != 0)
		return 0;
	bpf_for_each_map_elem(&tsct_snat_v4_external, nat4_orphan, &n, 0);
	args->nat_orphans[0] = n.orphans;
	args->nat_alive[0] = n.alive;
	n.orphans = 0;
	n.alive = 0;
	bpf_for_each_map_elem(&tsct_snat_v6_external, nat6_orphan, &n, 0);
	args->nat_orphans[1] = n.orphans;
	args->nat_alive[1] = n.alive;
	return 0;
}

#endif
