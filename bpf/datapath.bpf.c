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
		struct nat_io io = { .now = now, .zone = zone, .ifindex = ifindex };

		reason = tsct_nat_ingress(skb, &p, &io);
		if (reason)
			return verdict_invalid(skb, reason, hook, cfg, zone);
		zone = io.zone;
	}
	{
		struct ct_io io = { .now = now, .ifindex = ifindex, .zone = zone, .hook = hook, .lookup_only = lookup_only };

		reason = tsct_ct(&p, &io);
		state = io.state;
		mark = io.mark;
		dir = io.dir;
	}
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, zone);
	if (hook == HOOK_EGRESS && dev && (dev->flags & DEVICE_F_MASQUERADE)) {
		struct nat_io io = { .now = now, .zone = zone, .ifindex = ifindex, .ct_state = state, .ct_dir = dir, .dev = *dev };

		reason = tsct_snat_map(&p, &io);
		if (!reason)
			reason = tsct_snat_rewrite(skb, &p, &io);
		if (reason) {
			metrics_count(reason, hook, skb->len);
			cb_write(skb, state, mark, reason, zone, dir, hook);
			return TC_ACT_SHOT;
		}
		state = io.ct_state;
	}
	if (lookup_only)
		metrics_count(REASON_TWICE_SKIPPED, hook, 0);
	cb_write(skb, state, mark, 0, zone, dir, hook);
	metrics_count(REASON_FORWARDED, hook, skb->len);
	if (hook == HOOK_INGRESS && (config_flags(cfg) & CFG_F_FAST_PATH) && (state & CT_STATE_TRK) &&
	    ((state & CT_STATE_EST) || ((state & CT_STATE_NEW) && (config_flags(cfg) & CFG_F_FAST_PATH_NEW))) &&
	    !(state & (CT_STATE_INV | CT_STATE_REL))) {
		struct nat_io io = { .now = now, .zone = zone, .ct_state = state, .ct_dir = dir };
		int act = tsct_fast_path(skb, &p, &io);

		/* Out of a masquerading device: translated here, which spares
		 * its egress hook parsing the packet and looking it up again.
		 * A failure leaves it to the stack, and to that hook, which
		 * drops it for the same reason and counts it. */
		if (act == FAST_PATH_SNAT)
			act = tsct_snat_map(&p, &io) || tsct_snat_rewrite(skb, &p, &io) ? -1 : tsct_fast_path_send(skb, &p);

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
	struct gc_table_stats s;
};

/* A DESTROY event for a connection the sweep removes: the tuple in its
 * original direction comes from the canonical key and the entry's flag. */
static __always_inline int gc_destroy_event(__u32 family, const void *key, const struct ct_entry *e, __u64 now)
{
	struct tuple t = { .family = family };
	int b = (e->flags & CT_F_ORIG_IS_B) != 0;

	if (family == 4) {
		const struct ct4_key *k = key;

		t.saddr[0] = b ? k->addr_b : k->addr_a;
		t.daddr[0] = b ? k->addr_a : k->addr_b;
		t.sport = b ? k->port_b : k->port_a;
		t.dport = b ? k->port_a : k->port_b;
		t.proto = k->proto;
	} else {
		const struct ct6_key *k = key;

		__builtin_memcpy(t.saddr, b ? k->addr_b : k->addr_a, 16);
		__builtin_memcpy(t.daddr, b ? k->addr_a : k->addr_b, 16);
		t.sport = b ? k->port_b : k->port_a;
		t.dport = b ? k->port_a : k->port_b;
		t.proto = k->proto;
	}
	return ct_event_write(CT_EVENT_DESTROY, &t, e, now);
}

static __always_inline long gc_entry(struct bpf_map *map, void *key, struct ct_entry *e, struct gc_sweep *w, __u32 family)
{
	__u32 st = e->tcp_state;

	if (w->shards > 1) {
		__u16 ports = family == 4 ? ((struct ct4_key *)key)->port_a ^ ((struct ct4_key *)key)->port_b
					  : ((struct ct6_key *)key)->port_a ^ ((struct ct6_key *)key)->port_b;
		__u32 h = ports ^ (ports >> 8);

		if (h % w->shards != w->shard)
			return 0;
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
		if (bpf_map_delete_elem(map, key) == 0) {
			w->s.deleted++;
			w->s.deleted_by_state[st]++;
		}
		return 0;
	}
	w->s.alive++;
	w->s.alive_by_state[st]++;
	return 0;
}

/* One callback per family: the verifier sees the family as a constant. */
static long gc_entry4(struct bpf_map *map, void *key, struct ct_entry *e, struct gc_sweep *w)
{
	return gc_entry(map, key, e, w, 4);
}

static long gc_entry6(struct bpf_map *map, void *key, struct ct_entry *e, struct gc_sweep *w)
{
	return gc_entry(map, key, e, w, 6);
}

#define GC_SWEEP(table, map, fam)                                           \
	if (tables & (1 << (table))) {                                      \
		__builtin_memset(&w.s, 0, sizeof(w.s));                     \
		bpf_for_each_map_elem(&(map), (fam) == 4 ? gc_entry4 : gc_entry6, &w, 0); \
		args->stats[table] = w.s;                                   \
	}

/* NAT entries whose connection is gone (lost to a race, or a connection
 * flushed by hand) are removed: the OUT entry when its connection is, the IN
 * entry when its OUT entry is. */
struct nat_sweep {
	__u64 orphans;
	__u64 alive;
};

static long nat4_orphan(struct bpf_map *map, struct nat4_key *k, struct nat_entry *e, struct nat_sweep *w)
{
	struct tuple t = { .family = 4, .proto = k->proto };

	if (k->dir == NAT_DIR_OUT) {
		struct ct4_key ck;

		t.saddr[0] = k->saddr;
		t.daddr[0] = k->daddr;
		t.sport = k->sport;
		t.dport = k->dport;
		ct4_key_from(&ck, &t, e->zone);
		if (bpf_map_lookup_elem(k->proto == IPPROTO_TCP ? (void *)&tsct_ct4_global : (void *)&tsct_ct_any4_global, &ck))
			goto alive;
		/* Its IN partner goes too, whichever the sweep meets first. */
		{
			struct nat4_key in = {
				.saddr = k->daddr,
				.daddr = e->to_addr[0],
				.sport = k->proto == IPPROTO_ICMP ? e->to_port : k->dport,
				.dport = e->to_port,
				.proto = k->proto,
				.dir = NAT_DIR_IN,
			};

			if (bpf_map_delete_elem(map, &in) == 0)
				w->orphans++;
		}
	} else {
		struct nat4_key out = {
			.saddr = e->to_addr[0],
			.daddr = k->saddr,
			.sport = e->to_port,
			.dport = k->proto == IPPROTO_ICMP ? e->to_port : k->sport,
			.proto = k->proto,
			.dir = NAT_DIR_OUT,
		};

		if (bpf_map_lookup_elem(&tsct_snat_v4_external, &out))
			goto alive;
	}
	if (bpf_map_delete_elem(map, k) == 0)
		w->orphans++;
	return 0;
alive:
	w->alive++;
	return 0;
}

static long nat6_orphan(struct bpf_map *map, struct nat6_key *k, struct nat_entry *e, struct nat_sweep *w)
{
	struct tuple t = { .family = 6, .proto = k->proto };

	if (k->dir == NAT_DIR_OUT) {
		struct ct6_key ck;

		__builtin_memcpy(t.saddr, k->saddr, 16);
		__builtin_memcpy(t.daddr, k->daddr, 16);
		t.sport = k->sport;
		t.dport = k->dport;
		ct6_key_from(&ck, &t, e->zone);
		if (bpf_map_lookup_elem(k->proto == IPPROTO_TCP ? (void *)&tsct_ct6_global : (void *)&tsct_ct_any6_global, &ck))
			goto alive;
		{
			struct nat6_key in = { .proto = k->proto, .dir = NAT_DIR_IN };

			__builtin_memcpy(in.saddr, k->daddr, 16);
			__builtin_memcpy(in.daddr, e->to_addr, 16);
			in.sport = k->proto == IPPROTO_ICMPV6_ ? e->to_port : k->dport;
			in.dport = e->to_port;
			if (bpf_map_delete_elem(map, &in) == 0)
				w->orphans++;
		}
	} else {
		struct nat6_key out = { .proto = k->proto, .dir = NAT_DIR_OUT };

		__builtin_memcpy(out.saddr, e->to_addr, 16);
		__builtin_memcpy(out.daddr, k->saddr, 16);
		out.sport = e->to_port;
		out.dport = k->proto == IPPROTO_ICMPV6_ ? e->to_port : k->sport;
		if (bpf_map_lookup_elem(&tsct_snat_v6_external, &out))
			goto alive;
	}
	if (bpf_map_delete_elem(map, k) == 0)
		w->orphans++;
	return 0;
alive:
	w->alive++;
	return 0;
}

SEC("syscall")
int tsct_gc(struct gc_args *args)
{
	/* The coarse clock the datapath stamps with is not offered to syscall
	 * programs; the precise one runs at most a tick ahead of it. */
	struct gc_sweep w = { .now = args->now_ns ? args->now_ns : bpf_ktime_get_ns() };
	struct tsct_config *cfg = config_get();

	/* The lease is on the real clock, whatever time the sweep judges by. */
	w.events = events_on(cfg, CFG_F_EVENTS) && events_read(bpf_ktime_get_ns());
	w.shard = args->shard;
	w.shards = args->shards;
	__u32 tables = args->tables ? args->tables : 0xf;

	struct nat_sweep n = {};

	GC_SWEEP(CT_TABLE_TCP4, tsct_ct4_global, 4);
	GC_SWEEP(CT_TABLE_ANY4, tsct_ct_any4_global, 4);
	GC_SWEEP(CT_TABLE_TCP6, tsct_ct6_global, 6);
	GC_SWEEP(CT_TABLE_ANY6, tsct_ct_any6_global, 6);
	args->nat_deleted[0] = w.nat_deleted;
	metrics_add(REASON_EVENT_LOST, HOOK_INGRESS,
		    args->stats[0].events_lost + args->stats[1].events_lost + args->stats[2].events_lost + args->stats[3].events_lost, 0);
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
