/* SPDX-License-Identifier: GPL-2.0 */
/* The tc pipeline of a managed device, ingress and egress: parse, zone, NAT
 * reverse translation (ingress), track, source NAT (egress), count, and the
 * fast path (ingress). Each packet's ct_state is left in skb->cb for the
 * stages that follow and for BPF_PROG_TEST_RUN. */
#ifndef TSCT_PIPELINE_H
#define TSCT_PIPELINE_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "drop.h"
#include "fastpath.h"
#include "firewall.h"
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "nat.h"
#include "parse.h"
#include "reject.h"

/* A load-balanced packet on its way to its backend: the load balancer's
 * choice (lb_stage) and the destination rewritten; io is then ready for the
 * tracker to track the backend's own connection (+dnat). A global function,
 * with its own frame. */
__attribute__((noinline)) int tsct_lb_forward(struct __sk_buff *skb, struct pkt *p, struct ct_io *io)
{
	struct lb_io lio = {};
	__u32 reason;

	if (!skb || !p || !io)
		return 0;
	lio.now = io->now;
	lio.backend_id = io->backend_id;
	lio.zone = io->zone;
	lio.lb = io->lb;
	lio.rev_nat_index = io->rev_nat_index;
	lio.snat = io->lb_snat;
	lio.has_service = io->has_service;
	lio.service = io->service;
	reason = lb_stage(p, &lio);
	if (reason)
		return reason;
	reason = nat_rewrite_skb(skb, p, 0, lio.to_addr, lio.to_port);
	if (reason)
		return reason;
	__builtin_memcpy(p->t.daddr, lio.to_addr, 16);
	p->t.dport = lio.to_port;
	io->lb = 0;
	io->backend_id = lio.backend_id;
	io->rev_nat_index = lio.rev_nat_index;
	io->lb_snat = lio.snat;
	return 0;
}

/* Full NAT and hairpin: which device's address (or the service loopback
 * address) a load-balanced connection's source is translated to, into nio
 * for the NAT stage. The FIB says which device leads to the backend. */
__attribute__((noinline)) int tsct_lb_snat_prepare(struct __sk_buff *skb, struct pkt *p, struct nat_io *nio, __u32 kind)
{
	const struct tsct_config *cfg = config_get();
	struct fast_path_route *r;
	struct device_info *out;
	__u32 zero = 0, out_if;

	if (!skb || !p || !nio)
		return -1;
	nio->force = 1;
	if (kind == LB_SNAT_HAIRPIN) {
		if (p->t.family != 4 || !cfg || !cfg->lb_loopback4)
			return -1;
		__builtin_memset(&nio->dev, 0, sizeof(nio->dev));
		nio->dev.snat4 = cfg->lb_loopback4;
		return 0;
	}
	r = bpf_map_lookup_elem(&tsct_fast_path_scratch, &zero);
	if (!r)
		return -1;
	fib_params_of(&r->fib, p, skb->ingress_ifindex, 0);
	r->rc = bpf_fib_lookup(skb, &r->fib, sizeof(r->fib), 0);
	if (r->rc != BPF_FIB_LKUP_RET_SUCCESS && r->rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	out_if = r->fib.ifindex;
	out = bpf_map_lookup_elem(&tsct_devices, &out_if);
	if (!out)
		return -1;
	nio->dev = *out;
	nio->ifindex = out_if;
	return 0;
}

/* A backend's reply to a load-balanced connection: its source becomes the
 * service's address and port again. */
__attribute__((noinline)) int tsct_lb_reply(struct __sk_buff *skb, struct pkt *p, __u32 rev_nat_index)
{
	struct lb_reverse_nat *r = lb_reverse_nat_of(rev_nat_index);
	__u32 reason;

	if (!skb || !p || !r)
		return 0;
	reason = nat_rewrite_skb(skb, p, 1, r->addr, r->port);
	if (reason)
		return reason;
	__builtin_memcpy(p->t.saddr, r->addr, 16);
	p->t.sport = r->port;
	lb_stats_add(rev_nat_index, p->l3_len, 0);
	metrics_count(REASON_LB_REVDNAT, HOOK_INGRESS, 0);
	return 0;
}

static __always_inline void cb_write(struct __sk_buff *skb, __u32 state, __u32 mark, __u32 reason, __u32 zone,
				     __u32 dir, enum tsct_hook hook)
{
	skb->cb[CB_CT_STATE] = state;
	skb->cb[CB_CT_MARK] = mark;
	skb->cb[CB_REASON] = reason;
	skb->cb[CB_ZONE_DIR] = zone << 16 | dir << 8 | hook;
}

static __always_inline int verdict_invalid(struct __sk_buff *skb, __u32 reason, enum tsct_hook hook,
					   const struct tsct_config *cfg, __u16 zone, struct pipeline_scratch *s)
{
	/* Named and counted whether it then passes or not: an invalid packet
	 * is not a drop unless configured to be one. */
	metrics_count(reason, hook, skb->len);
	cb_write(skb, CT_STATE_TRK | CT_STATE_INV, 0, reason, zone, 0, hook);
	if (config_flags(cfg) & CFG_F_DROP_INVALID)
		return tc_drop(skb, REASON_DROP_INVALID, hook);
	/* The firewall's +inv rules (s: the packet was parsed). */
	if (s && fw_active() && tsct_fw_stage(skb, s, hook, 1))
		return tc_drop(skb, REASON_DROP_POLICY_DENIED, hook);
	metrics_count(REASON_FORWARDED, hook, skb->len);
	return TC_ACT_OK;
}

static __always_inline int tsct_handle(struct __sk_buff *skb, enum tsct_hook hook)
{
	struct tsct_config *cfg;
	struct pipeline_scratch *s;
	struct pkt *p;
	struct ct_io *cio;
	__u32 zero = 0;
	/* One for the NAT stages of the packet, each of which fills it; in the
	 * scratch map, as the stack has no room for it next to the tracker's. */
	struct nat_io *nio;
	struct device_info *dev;
	__u32 reason, ifindex = skb->ifindex, state, mark, dir;
	__u16 zone = 0;
	__u8 lookup_only = 0, lb_forward = 0;
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
	s = bpf_map_lookup_elem(&tsct_pipeline_scratch, &zero);
	if (!s)
		return TC_ACT_OK;
	p = &s->p;
	cio = &s->cio;
	nio = &s->nio;
	__builtin_memset(p, 0, sizeof(*p));
	__builtin_memset(nio, 0, sizeof(*nio));
	reason = tsct_parse(skb, p);
	if (reason == REASON_UNTRACKED) {
		metrics_count(REASON_UNTRACKED, hook, skb->len);
		metrics_count(REASON_FORWARDED, hook, skb->len);
		cb_write(skb, 0, 0, 0, 0, 0, hook);
		return TC_ACT_OK;
	}
	if (reason) {
		/* The firewall's +inv rules see it in its device's zone, with
		 * no connection (a forwarded packet was judged where it entered). */
		__builtin_memset(cio, 0, sizeof(*cio));
		cio->zone = zone;
		return verdict_invalid(skb, reason, hook, cfg, zone, lookup_only || !p->t.family ? 0 : s);
	}

	now = bpf_ktime_get_coarse_ns();
	/* Replies to translated connections get their destination back before
	 * the lookup, so that the connection is found by its original tuple. */
	if (hook == HOOK_INGRESS && dev && ((dev->flags & DEVICE_F_MASQUERADE) || nat_to_node(p, dev, cfg))) {
		nio->now = now;
		nio->zone = zone;
		nio->ifindex = ifindex;
		reason = tsct_nat_ingress(skb, p, nio);
		if (reason_is_drop(reason)) {
			cb_write(skb, 0, 0, reason, zone, 0, hook);
			return tc_drop(skb, reason, hook);
		}
		if (reason)
			return verdict_invalid(skb, reason, hook, cfg, zone, s);
		zone = nio->zone;
	}
	{
		__builtin_memset(cio, 0, sizeof(*cio));
		cio->now = now;
		cio->ifindex = ifindex;
		cio->zone = zone;
		cio->hook = hook;
		cio->lookup_only = lookup_only;
		cio->lb = hook == HOOK_INGRESS;
		/* With a rule set, a new connection is created only once the
		 * rules accept it (firewall.h). */
		cio->fw_op = !lookup_only && fw_active() ? FW_OP_DEFER : FW_OP_NONE;
		reason = tsct_ct(p, cio);
		/* The load balancer: at ingress, where a client's packet enters
		 * and a backend's reply comes back. */
		if (!reason && hook == HOOK_INGRESS && cio->lb != CT_LB_NONE) {
			if (cio->fw_op == FW_OP_DEFER)
				s->before_lb = p->t;
			reason = tsct_lb_forward(skb, p, cio);
			if (!reason)
				reason = tsct_ct(p, cio);
		}
		if (!reason && cio->fw_op == FW_OP_DEFER && !fw_cached_pass(cio, hook, p->l3_len)) {
			reason = tsct_fw_stage(skb, s, hook, 0);
			if (reason == FW_STAGE_COMMIT) {
				reason = tsct_ct(p, cio);
				if (!reason && (cio->state & CT_STATE_TRK))
					metrics_count(REASON_POLICY_COMMITTED, hook, 0);
			}
		}
		if (!reason && hook == HOOK_INGRESS && cio->dir == CT_DIR_REPLY && (cio->state & CT_STATE_DNAT))
			reason = tsct_lb_reply(skb, p, cio->rev_nat_index);
		state = cio->state;
		mark = cio->mark;
		dir = cio->dir;
		nat_io_from_ct(nio, cio);
	}
	if (reason_is_drop(reason)) {
		cb_write(skb, 0, 0, reason, zone, 0, hook);
		/* A service that cannot take the connection refuses it as
		 * kube-proxy's REJECT does: the client learns at once. */
		if (lb_reason_rejects(reason) || reason == REASON_DROP_POLICY_REJECTED)
			return tsct_reject(skb, p, reason, hook);
		return tc_drop(skb, reason, hook);
	}
	if (reason)
		return verdict_invalid(skb, reason, hook, cfg, zone, lookup_only ? 0 : s);
	nio->now = now;
	nio->zone = zone;
	nio->ct_state = state;
	nio->ct_dir = dir;
	/* A load-balanced connection whose client is translated too (full NAT,
	 * hairpin): here at ingress, after its backend's connection is tracked. */
	if (hook == HOOK_INGRESS && cio->lb_snat && dir == CT_DIR_ORIGINAL) {
		if (tsct_lb_snat_prepare(skb, p, nio, cio->lb_snat) == 0) {
			reason = tsct_snat_map(p, nio);
			if (!reason)
				reason = tsct_snat_rewrite(skb, p, nio);
			if (reason) {
				cb_write(skb, state, mark, reason, zone, dir, hook);
				return tc_drop(skb, reason, hook);
			}
			state = nio->ct_state;
			/* Its source is now the node's: the stack would drop it as
			 * a martian, so it is forwarded from here (fast path). */
			lb_forward = 1;
		}
		nio->force = 0;
	}
	if (hook == HOOK_EGRESS && dev && (dev->flags & DEVICE_F_MASQUERADE)) {
		nio->ifindex = ifindex;
		nio->dev = *dev;
		reason = tsct_snat_map(p, nio);
		if (!reason)
			reason = tsct_snat_rewrite(skb, p, nio);
		if (reason) {
			cb_write(skb, state, mark, reason, zone, dir, hook);
			return tc_drop(skb, reason, hook);
		}
		state = nio->ct_state;
	}
	if (lookup_only)
		metrics_count(REASON_TWICE_SKIPPED, hook, 0);
	cb_write(skb, state, mark, 0, zone, dir, hook);
	metrics_count(REASON_FORWARDED, hook, skb->len);
	if (hook == HOOK_INGRESS &&
	    (lb_forward ||
	     ((config_flags(cfg) & CFG_F_FAST_PATH) && (state & CT_STATE_TRK) &&
	      ((state & CT_STATE_EST) || ((state & CT_STATE_NEW) && (config_flags(cfg) & CFG_F_FAST_PATH_NEW))) &&
	      !(state & (CT_STATE_INV | CT_STATE_REL))))) {
		int act = tsct_fast_path(skb, p, nio);

		/* Out of a masquerading device: translated here, which spares
		 * its egress hook parsing the packet and looking it up again.
		 * A failure leaves it to the stack, and to that hook, which
		 * drops it for the same reason and counts it. */
		if (act == FAST_PATH_SNAT)
			act = tsct_snat_map(p, nio) || tsct_snat_rewrite(skb, p, nio) ? -1
										      : tsct_fast_path_send(skb, p);

		if (act == TC_ACT_REDIRECT) {
			metrics_count(REASON_FAST_PATH, hook, 0);
			return act;
		}
	}
	return TC_ACT_OK;
}

#endif
