/* SPDX-License-Identifier: GPL-2.0 */
/* The stateful firewall's stage of the tc pipeline, between the tracker and
 * the NAT stages: which hook judges the packet, the verdict cached on its
 * connection, the classifier (policy.h) when there is none, and the
 * tracker's part of the verdict: a new connection is created only when the
 * rules accept it (commit on accept, as nf_conntrack confirms and OVS
 * commits), with the mark and label its rule sets; a connection the changed
 * rules no longer accept is cut.
 *
 * The verdict is cached per direction, with whether the direction was
 * established, under the rule-set epoch: the rules are a function of the
 * connection's addresses, ports, devices, zone, mark, label and state, which
 * stay the same for the packets of one direction in one state. Rules on the
 * packet's own skb mark or ICMP type are judged on the first packet of each. */
#ifndef TSCT_FIREWALL_H
#define TSCT_FIREWALL_H

#include "common.h"
#include "conntrack.h"
#include "fastpath.h"
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "policy.h"

/* Counters a cached verdict names besides a rule's (struct ct_entry's
 * fw_counter): the default policy of hook h is FW_COUNTER_POLICY - h, and a
 * hook with nothing to judge counts nothing. */
#define FW_COUNTER_UNJUDGED (FW_COUNTER_POLICY - FW_HOOKS)

/* tsct_fw_stage's answer "accepted: create the connection now", which the
 * pipeline does with tsct_ct itself (both frames together would pass the
 * verifier's 512 bytes of stack). Not a reason. */
#define FW_STAGE_COMMIT 0xffff

static __always_inline int fw_active(void)
{
	struct fw_control *ctl = fw_control_get();

	return ctl && (ctl->flags & FW_CTL_ACTIVE);
}

static __always_inline void fw_tuple_swap(struct tuple *to, const struct tuple *t)
{
	*to = *t;
	__builtin_memcpy(to->saddr, t->daddr, 16);
	__builtin_memcpy(to->daddr, t->saddr, 16);
	to->sport = t->dport;
	to->dport = t->sport;
}

/* The hook that judges the packet and its devices: at egress, output for
 * the node's own packets and forward for those from an unmanaged device; at
 * ingress, the FIB says whether it is for the node (input) or goes on to
 * another device (forward). */
static __always_inline __u8 fw_hook_of(struct __sk_buff *skb, const struct pkt *p, __u32 tc_hook, struct fw_io *f)
{
	struct fast_path_route *r;
	__u32 zero = 0;

	if (tc_hook == HOOK_EGRESS) {
		f->in_ifindex = skb->ingress_ifindex;
		f->out_ifindex = skb->ifindex;
		return skb->ingress_ifindex ? FW_HOOK_FORWARD : FW_HOOK_OUTPUT;
	}
	f->in_ifindex = skb->ifindex;
	r = bpf_map_lookup_elem(&tsct_fast_path_scratch, &zero);
	if (!r)
		return FW_HOOK_INPUT;
	fib_params_of(&r->fib, p, skb->ifindex, 0);
	r->rc = bpf_fib_lookup(skb, &r->fib, sizeof(r->fib), 0);
	if (r->rc == BPF_FIB_LKUP_RET_SUCCESS || r->rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		f->out_ifindex = r->fib.ifindex;
		return FW_HOOK_FORWARD;
	}
	return FW_HOOK_INPUT;
}

/* The connection's original tuple, as the client dialled it: a reply's
 * reversed, and a load-balanced connection's destination its service's. */
static __always_inline void fw_orig_of(struct fw_io *f, const struct pkt *p, const struct ct_io *io,
				       const struct tuple *before_lb, int new_lb)
{
	struct lb_reverse_nat *rn;

	if (new_lb) {
		f->orig = *before_lb;
		return;
	}
	if (io->dir == CT_DIR_REPLY)
		fw_tuple_swap(&f->orig, &p->t);
	else
		f->orig = p->t;
	if (io->state & CT_STATE_DNAT) {
		rn = lb_reverse_nat_of(io->rev_nat_index);
		if (rn) {
			__builtin_memcpy(f->orig.daddr, rn->addr, 16);
			f->orig.dport = rn->port;
		}
	}
}

/* Hands the rule's commit settings and the verdict to store to the tracker. */
static __always_inline void fw_ct_request(struct ct_io *io, __u8 op, const struct fw_io *f, __u16 epoch, __u8 cache,
					  __u16 counter)
{
	io->fw_op = op;
	io->lb = 0;
	io->fw_epoch = epoch;
	io->fw_cache = cache;
	io->fw_counter = counter;
	io->commit_mark_value = f->commit_flags & FW_COMMIT_MARK ? f->commit_mark_value : 0;
	if (f->commit_flags & FW_COMMIT_LABEL)
		__builtin_memcpy(io->commit_label_value, f->commit_label_value, sizeof(io->commit_label_value));
	else
		__builtin_memset(io->commit_label_value, 0, sizeof(io->commit_label_value));
}

/* Whether the packet's direction passed in its state under the live rules
 * already: then it passes, counted on the rule that decided, without the
 * stage's call (the established packet's path). Ingress only. */
static __always_inline int fw_cached_pass(const struct ct_io *io, __u32 tc_hook, __u32 l3_len)
{
	struct fw_control *ctl = fw_control_get();
	__u16 counter;

	if (!ctl || tc_hook != HOOK_INGRESS || io->fw_pending || !fw_verdict_cached(io, ctl))
		return 0;
	counter = io->fw_counter;
	if (counter < FW_COUNTER_UNJUDGED)
		fw_count(ctl->generation & 1, 0, counter, l3_len);
	else if (counter > FW_COUNTER_UNJUDGED)
		fw_count(ctl->generation & 1, FW_COUNTER_POLICY - counter, FW_COUNTER_POLICY, l3_len);
	return 1;
}

/* The firewall's stage for a tracked packet (or, with `invalid`, one the
 * tracker found invalid). Returns 0 to pass, a drop reason
 * (REASON_DROP_POLICY_*), or FW_STAGE_COMMIT with s->cio set up for
 * tsct_ct to create the accepted connection. A global function, with its
 * own frame. */
__attribute__((noinline)) int tsct_fw_stage(struct __sk_buff *skb, struct pipeline_scratch *s, __u32 tc_hook,
					    __u32 invalid)
{
	struct fw_control *ctl = fw_control_get();
	struct pkt *p;
	struct ct_io *io;
	struct fw_io *f;
	__u32 state, dir, k;
	__u16 epoch, counter;
	__u8 h, cache, pending;

	if (!skb || !s || !ctl || !(ctl->flags & FW_CTL_ACTIVE))
		return 0;
	p = &s->p;
	io = &s->cio;
	f = &s->fio;
	state = invalid ? CT_STATE_TRK | CT_STATE_INV : io->state;
	if (!(state & CT_STATE_TRK))
		return 0; /* passed untracked (a full table, CFG_F_CT_FULL_PASS) */
	dir = io->dir & 1;
	epoch = ctl->epoch & 0xffff;
	pending = invalid ? 0 : io->fw_pending;
	cache = FW_CACHE_PASSED | (state & CT_STATE_EST ? FW_CACHE_EST : 0);
	/* The verdict is cached by the hooks at tc ingress (input, forward)
	 * only (fw_cached_pass): a packet of the node's own on loopback meets
	 * output at egress and then input at ingress, and each must judge it.
	 * The output hook judges every packet. */
	if (tc_hook == HOOK_EGRESS)
		cache = 0;
	__builtin_memset(f, 0, sizeof(*f));
	h = fw_hook_of(skb, p, tc_hook, f);
	f->hook = h;
	f->zone = io->zone;
	f->pkt_mark = skb->mark;
	f->icmp_type = p->icmp_type;
	f->icmp_code = p->icmp_code;
	f->t = p->t;
	if (!(ctl->hooks & (1 << h))) {
		counter = FW_COUNTER_UNJUDGED;
		goto accepted;
	}
	f->ct_mark = invalid ? 0 : io->mark;
	/* Read here, not by the tracker for every packet: only the packets
	 * judged here need it. */
	if (!pending && !invalid) {
		struct ct_entry *e = ct_find(p, io->zone);

		if (e)
			__builtin_memcpy(f->label, e->label, sizeof(f->label));
	}
	if (!invalid) {
		f->has_orig = 1;
		fw_orig_of(f, p, io, &s->before_lb, pending && (state & CT_STATE_DNAT));
	}
	/* The rules changed since this connection was judged: would they
	 * accept it now, as the new connection it was? */
	if (!invalid && !pending && !(state & CT_STATE_REL) && io->fw_epoch != epoch &&
	    !(ctl->flags & FW_CTL_KEEP_ESTABLISHED)) {
		f->state = CT_STATE_TRK | CT_STATE_NEW | (state & (CT_STATE_SNAT | CT_STATE_DNAT));
		if (dir == CT_DIR_REPLY) {
			k = f->in_ifindex;
			f->in_ifindex = f->out_ifindex;
			f->out_ifindex = k;
			fw_tuple_swap(&f->t, &p->t);
		}
		tsct_policy(f, 0);
		if (f->verdict != FW_ACT_ACCEPT) {
			fw_ct_request(io, FW_OP_CUT, f, epoch, 0, 0);
			tsct_ct_fw(p, io);
			return REASON_DROP_POLICY_CUT;
		}
		/* Judged as it is below. */
		f->t = p->t;
		k = f->in_ifindex;
		if (dir == CT_DIR_REPLY) {
			f->in_ifindex = f->out_ifindex;
			f->out_ifindex = k;
		}
	}
	f->state = state & 0xff;
	tsct_policy(f, p->l3_len);
	if (f->verdict == FW_ACT_DROP)
		return REASON_DROP_POLICY_DENIED;
	if (f->verdict == FW_ACT_REJECT)
		return REASON_DROP_POLICY_REJECTED;
	counter = f->counter == FW_COUNTER_POLICY ? FW_COUNTER_POLICY - h : f->counter;
accepted:
	if (invalid)
		return 0;
	if (pending) {
		fw_ct_request(io, FW_OP_COMMIT, f, epoch, cache, counter);
		return FW_STAGE_COMMIT;
	}
	if (cache && !(state & CT_STATE_REL)) {
		fw_ct_request(io, FW_OP_CACHE, f, epoch, cache, counter);
		tsct_ct_fw(p, io);
	}
	return 0;
}

#endif
