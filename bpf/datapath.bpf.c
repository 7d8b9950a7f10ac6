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
