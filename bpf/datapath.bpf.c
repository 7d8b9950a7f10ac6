// SPDX-License-Identifier: GPL-2.0
/* The tsct datapath: tc programs for the ingress and egress of each managed
 * device, and an optional XDP fast path in front of them (xdp.h). Each packet is parsed, tracked (conntrack.h) and counted; its
 * ct_state is left in skb->cb for the stages that follow and for tests. */
#include "common.h"
#include "maps.h"
#include "metrics.h"
#include "parse.h"
#include "conntrack.h"
#include "nat.h"
#include "fastpath.h"
#include "xdp.h"

/* Keeps the enums in the object's BTF for the TypeScript layout generator. */
struct tsct_btf_anchor {
	enum ct_state_bit ct_state;
	enum ct_dir dir;
	enum tsct_hook hook;
	enum tcp_ct_state tcp_state;
	enum tsct_reason reason;
	enum ct_entry_flag entry_flag;
	enum tsct_config_flag config_flag;
	enum tsct_cb_slot cb_slot;
	enum ct_table table;
	enum device_flag device_flag;
	enum nat_dir nat_dir;
	enum ct_event_type event_type;
	/* Written only through bpf_ringbuf_reserve: not otherwise in BTF. */
	struct ct_event ct_event;
};
const volatile struct tsct_btf_anchor tsct_btf_anchor;

static __always_inline void cb_write(struct __sk_buff *skb, __u32 state, __u32 mark, __u32 reason, __u32 zone,
				     __u32 dir, enum tsct_hook hook)
{
	skb->cb[CB_CT_STATE] = state;
	skb->cb[CB_CT_MARK] = mark;
	skb->cb[CB_REASON] = reason;
	skb->cb[CB_ZONE_DIR] = zone << 16 | dir << 8 | hook;
}

static __always_inline int verdict_invalid(struct __sk_buff *skb, __u32 reason, enum tsct_hook hook,
					   const struct tsct_config *cfg, __u16 zone)
{
	metrics_count(reason, hook, skb->len);
	cb_write(skb, CT_STATE_TRK | CT_STATE_INV, 0, reason, zone, 0, hook);
	if (config_flags(cfg) & CFG_F_DROP_INVALID) {
		metrics_count(REASON_DROP_INVALID, hook, skb->len);
		return TC_ACT_SHOT;
	}
	metrics_count(REASON_FORWARDED, hook, skb->len);
	return TC_ACT_OK;
}

static __always_inline int tsct_handle(struct __sk_buff *skb, enum tsct_hook hook)
{
	struct tsct_config *cfg;
	struct pkt p = {};
	/* One for the NAT stages of the packet, each of which fills it: the
	 * stack has no room for one per stage next to the tracker's. */
	struct nat_io nio = {};
	struct device_info *dev;
	__u32 reason, ifindex = skb->ifindex, state, mark, dir;
	__u16 zone = 0;
	__u8 lookup_only = 0;
	__u64 now;

	/* Sent here by the fast path, which did this hook's work already. */
	if (hook == HOOK_EGRESS && (skb->tc_index & TC_INDEX_F_EGRESS_DONE)) {
		skb->tc_index &= ~TC_INDEX_F_EGRESS_DONE;
		metrics_count(REASON_TWICE_SKIPPED, hook, 0);
		metrics_count(REASON_FORWARDED, hook, skb->len);
		return TC_ACT_OK;
	}
	dev = bpf_map_lookup_elem(&tsct_devices, &ifindex);
	if (dev)
		zone = dev->zone;
	/* Forwarded from another managed device: tracked and counted there, in
	 * that device's zone. Here it needs work only when this device
	 * translates; otherwise it passes untouched, before any parsing. */
	if (hook == HOOK_EGRESS && skb->ingress_ifindex) {
		__u32 in = skb->ingress_ifindex;
		struct device_info *from = bpf_map_lookup_elem(&tsct_devices, &in);

		if (from) {
			lookup_only = 1;
			zone = from->zone;
			if (!dev || !(dev->flags & DEVICE_F_MASQUERADE)) {
				metrics_count(REASON_TWICE_SKIPPED, hook, 0);
				metrics_count(REASON_FORWARDED, hook, skb->len);
				return TC_ACT_OK;
			}
		}
	}
	/* Read only by packets that are processed here, not by those passed above. */
	cfg = config_get();
	reason = tsct_parse(skb, &p);
	if (reason == REASON_UNTRACKED) {
		metrics_count(REASON_UNTRACKED, hook, skb->len);
		metrics_count(REASON_FORWARDED, hook, skb->len);
		cb_write(skb, 0, 0, 0, 0, 0, hook);
		return TC_ACT_OK;
	}
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, zone);

	now = bpf_ktime_get_coarse_ns();
	/* Replies to translated connections get their destination back before
	 * the lookup, so that the connection is found by its original tuple. */
	if (hook == HOOK_INGRESS && dev && (dev->flags & DEVICE_F_MASQUERADE)) {
		nio.now = now;
		nio.zone = zone;
		nio.ifindex = ifindex;
		reason = tsct_nat_ingress(skb, &p, &nio);
		if (reason)
			return verdict_invalid(skb, reason, hook, cfg, zone);
		zone = nio.zone;
	}
	{
		struct ct_io cio = {
			.now = now, .ifindex = ifindex, .zone = zone, .hook = hook, .lookup_only = lookup_only};

		reason = tsct_ct(&p, &cio);
		state = cio.state;
		mark = cio.mark;
		dir = cio.dir;
		nat_io_from_ct(&nio, &cio);
	}
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, zone);
	nio.now = now;
	nio.zone = zone;
	nio.ct_state = state;
	nio.ct_dir = dir;
	if (hook == HOOK_EGRESS && dev && (dev->flags & DEVICE_F_MASQUERADE)) {
		nio.ifindex = ifindex;
		nio.dev = *dev;
		reason = tsct_snat_map(&p, &nio);
		if (!reason)
			reason = tsct_snat_rewrite(skb, &p, &nio);
		if (reason) {
			metrics_count(reason, hook, skb->len);
			cb_write(skb, state, mark, reason, zone, dir, hook);
			return TC_ACT_SHOT;
		}
		state = nio.ct_state;
	}
	if (lookup_only)
		metrics_count(REASON_TWICE_SKIPPED, hook, 0);
	cb_write(skb, state, mark, 0, zone, dir, hook);
	metrics_count(REASON_FORWARDED, hook, skb->len);
	if (hook == HOOK_INGRESS && (config_flags(cfg) & CFG_F_FAST_PATH) && (state & CT_STATE_TRK) &&
	    ((state & CT_STATE_EST) || ((state & CT_STATE_NEW) && (config_flags(cfg) & CFG_F_FAST_PATH_NEW))) &&
	    !(state & (CT_STATE_INV | CT_STATE_REL))) {
		int act = tsct_fast_path(skb, &p, &nio);

		/* Out of a masquerading device: translated here, which spares
		 * its egress hook parsing the packet and looking it up again.
		 * A failure leaves it to the stack, and to that hook, which
		 * drops it for the same reason and counts it. */
		if (act == FAST_PATH_SNAT)
			act = tsct_snat_map(&p, &nio) || tsct_snat_rewrite(skb, &p, &nio)
				      ? -1
				      : tsct_fast_path_send(skb, &p);

		if (act == TC_ACT_REDIRECT) {
			metrics_count(REASON_FAST_PATH, hook, 0);
			return act;
		}
	}
	return TC_ACT_OK;
}

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

	gc_delete(map, key, tsct_gc_judge4(&k, e, w), w);
	return 0;
}

static long gc_entry6(struct bpf_map *map, struct ct6_key *key, struct ct_entry *e, struct gc_sweep *w)
{
	struct ct6_key k = *key;

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
		if (nat_in_alive(bpf_map_lookup_elem(k->proto == IPPROTO_TCP ? (void *)&tsct_ct4_global
									     : (void *)&tsct_ct_any4_global,
						     &ck),
				 nat_addr, k->dport, e, w->now)) {
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
		if (nat_in_alive(bpf_map_lookup_elem(k->proto == IPPROTO_TCP ? (void *)&tsct_ct6_global
									     : (void *)&tsct_ct_any6_global,
						     &ck),
				 k->daddr, k->dport, e, w->now)) {
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
	args->nat_deleted[0] = w.nat_deleted;
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

SEC("tc")
int tsct_ingress(struct __sk_buff *skb)
{
	return tsct_handle(skb, HOOK_INGRESS);
}

SEC("tc")
int tsct_egress(struct __sk_buff *skb)
{
	return tsct_handle(skb, HOOK_EGRESS);
}

SEC("xdp")
int tsct_xdp(struct xdp_md *ctx)
{
	return xdp_fast_path(ctx);
}

char LICENSE[] SEC("license") = "GPL";
