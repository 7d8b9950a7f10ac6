// SPDX-License-Identifier: GPL-2.0
/* The tsct datapath: tc programs for the ingress and egress of each managed
 * device. Each packet is parsed, tracked (conntrack.h) and counted; its
 * ct_state is left in skb->cb for the stages that follow and for tests. */
#include "common.h"
#include "maps.h"
#include "metrics.h"
#include "parse.h"
#include "conntrack.h"

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
	struct tsct_config *cfg = config_get();
	struct pkt p = {};
	struct ct_result res = {};
	struct ct_ctx c = {
		.p = &p,
		.cfg = cfg,
		.res = &res,
		.ifindex = skb->ifindex,
		.hook = hook,
	};
	struct device_info *dev;
	__u32 reason, ifindex = skb->ifindex;

	reason = parse_packet(skb, &p);
	if (reason == REASON_UNTRACKED) {
		metrics_count(REASON_UNTRACKED, hook, skb->len);
		metrics_count(REASON_FORWARDED, hook, skb->len);
		cb_write(skb, 0, 0, 0, 0, 0, hook);
		return TC_ACT_OK;
	}
	dev = bpf_map_lookup_elem(&tsct_devices, &ifindex);
	if (dev)
		c.zone = dev->zone;
	/* Forwarded from another managed device: tracked and counted there, in
	 * that device's zone; here it is only looked up. */
	if (hook == HOOK_EGRESS && skb->ingress_ifindex) {
		__u32 in = skb->ingress_ifindex;
		struct device_info *from = bpf_map_lookup_elem(&tsct_devices, &in);

		if (from) {
			c.lookup_only = 1;
			c.zone = from->zone;
		}
	}
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, c.zone);

	c.now = bpf_ktime_get_coarse_ns();
	reason = p.t.family == 4 ? ct4_handle(&c) : ct6_handle(&c);
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, c.zone);
	if (c.lookup_only)
		metrics_count(REASON_TWICE_SKIPPED, hook, 0);
	cb_write(skb, res.state, res.mark, 0, c.zone, res.dir, hook);
	metrics_count(REASON_FORWARDED, hook, skb->len);
	return TC_ACT_OK;
}

/* Garbage collection, in the kernel: one pass over each table deletes what
 * has expired. The expiry is read and the entry deleted within the same
 * callback, so a connection refreshed by a packet is never judged on a stale
 * copy (as a user-space batch sweep would). */
struct bpf_map;

struct gc_sweep {
	__u64 now;
	struct gc_table_stats s;
};

static long gc_entry(struct bpf_map *map, void *key, struct ct_entry *e, struct gc_sweep *w)
{
	__u32 st = e->tcp_state;

	asm volatile("" : "+r"(st));
	if (st >= TCP_CT_MAX)
		st = TCP_CT_NONE;
	w->s.scanned++;
	if (e->expires_ns < w->now) {
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

#define GC_SWEEP(table, map)                                                \
	if (tables & (1 << (table))) {                                      \
		__builtin_memset(&w.s, 0, sizeof(w.s));                     \
		bpf_for_each_map_elem(&(map), gc_entry, &w, 0);             \
		args->stats[table] = w.s;                                   \
	}

SEC("syscall")
int tsct_gc(struct gc_args *args)
{
	/* The coarse clock the datapath stamps with is not offered to syscall
	 * programs; the precise one runs at most a tick ahead of it. */
	struct gc_sweep w = { .now = args->now_ns ? args->now_ns : bpf_ktime_get_ns() };
	__u32 tables = args->tables ? args->tables : 0xf;

	GC_SWEEP(CT_TABLE_TCP4, tsct_ct4_global);
	GC_SWEEP(CT_TABLE_ANY4, tsct_ct_any4_global);
	GC_SWEEP(CT_TABLE_TCP6, tsct_ct6_global);
	GC_SWEEP(CT_TABLE_ANY6, tsct_ct_any6_global);
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

char LICENSE[] SEC("license") = "GPL";
