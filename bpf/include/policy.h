/* SPDX-License-Identifier: GPL-2.0 */
/* The stateful firewall's classifier: which rule of a hook decides a packet,
 * by the linear bit-vector search of bpf-iptables (Miano et al. 2019) over
 * the tables src/policy/compile.ts writes (its header comment describes them
 * and the algorithm; src/policy/classify.ts is the same search in TypeScript,
 * which the tests hold this one to). Per indexed field one lookup gives a
 * vector of the rules that accept the packet's value; the vectors are ANDed
 * word by word over the intersection of their non-zero ranges; each set bit
 * is a candidate whose residual checks decide. */
#ifndef TSCT_POLICY_H
#define TSCT_POLICY_H

#include "common.h"
#include "maps.h"

/* Steps of the search: one per word visited and one per candidate tried. */
#define FW_SEARCH_STEPS (FW_MAX_RULES + 256 + 8)

static __always_inline struct fw_control *fw_control_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tsct_fw_control, &zero);
}

/* Whether the connection's verdict for this packet's direction and state is
 * cached under the live rule set (struct ct_entry's fw_cache and fw_epoch,
 * as the tracker reported them in io). Read only: the tc pipeline
 * (firewall.h) and the XDP path both ask it. */
static __always_inline int fw_verdict_cached(const struct ct_io *io, const struct fw_control *ctl)
{
	__u8 want = FW_CACHE_PASSED | (io->state & CT_STATE_EST ? FW_CACHE_EST : 0);

	if (!(io->state & CT_STATE_TRK) || (io->state & (CT_STATE_INV | CT_STATE_REL)))
		return 0;
	return io->fw_epoch == (ctl->epoch & 0xffff) && ((io->fw_cache >> ((io->dir & 1) * 2)) & 3) == want;
}

/* The index of the lowest set bit of a non-zero x (BPF has no ctz). */
static __always_inline __u32 fw_ctz64(__u64 x)
{
	__u32 n = 0;

	x &= -x;
	if (!(x & 0xffffffffULL)) {
		n += 32;
		x >>= 32;
	}
	if (!(x & 0xffffULL)) {
		n += 16;
		x >>= 16;
	}
	if (!(x & 0xffULL)) {
		n += 8;
		x >>= 8;
	}
	if (!(x & 0xfULL)) {
		n += 4;
		x >>= 4;
	}
	if (!(x & 0x3ULL)) {
		n += 2;
		x >>= 2;
	}
	if (!(x & 0x1ULL))
		n += 1;
	return n;
}

/* Whether address or port `data` is in residual set `set` (the original
 * tuple's matches). A miss is "not in it". */
static __always_inline int fw_in_set(__u32 gen, __u8 kind, __u32 set, const void *data, __u32 len)
{
	struct fw_residual_key k = {};
	__u8 *v;

	k.prefixlen = 64 + len * 8;
	k.gen = gen;
	k.kind = kind;
	k.set = bpf_htonl(set);
	if (len == 2)
		__builtin_memcpy(k.data, data, 2);
	else if (len == 4)
		__builtin_memcpy(k.data, data, 4);
	else
		__builtin_memcpy(k.data, data, 16);
	v = bpf_map_lookup_elem(&tsct_fw_residual, &k);
	return v && *v == 1;
}

/* One residual check of a rule. A global function: the search loop calls it
 * per check without the verifier walking every op of every check. */
__attribute__((noinline)) int tsct_fw_check(const struct fw_check *c, const struct fw_io *f, __u32 gen)
{
	__u32 alen, x;

	if (!c || !f)
		return 0;
	alen = f->t.family == 4 ? 4 : 16;
	switch (c->op) {
	case FW_CHECK_ZONE:
		return f->zone == c->value;
	case FW_CHECK_CT_MARK:
		return (f->ct_mark & c->mask) == c->value;
	case FW_CHECK_PACKET_MARK:
		return (f->pkt_mark & c->mask) == c->value;
	case FW_CHECK_CT_LABEL:
		x = f->label[c->arg & 3];
		return (x & c->mask) == c->value;
	case FW_CHECK_ICMP:
		if (f->t.proto != IPPROTO_ICMP && f->t.proto != IPPROTO_ICMPV6_)
			return 0;
		return ((f->icmp_type | (__u32)f->icmp_code << 8) & c->mask) == c->value;
	case FW_CHECK_ORIG_SRC:
		return f->has_orig && fw_in_set(gen, f->t.family, c->arg, f->orig.saddr, alen);
	case FW_CHECK_ORIG_DST:
		return f->has_orig && fw_in_set(gen, f->t.family, c->arg, f->orig.daddr, alen);
	case FW_CHECK_ORIG_SPORT:
		return f->has_orig && fw_in_set(gen, 0, c->arg, &f->orig.sport, 2);
	case FW_CHECK_ORIG_DPORT:
		return f->has_orig && fw_in_set(gen, 0, c->arg, &f->orig.dport, 2);
	default:
		return 0;
	}
}

static __always_inline int fw_rule_matches(const struct fw_rule *r, const struct fw_io *f, __u32 gen)
{
	int k;

	for (k = 0; k < FW_MAX_CHECKS; k++) {
		if (k >= r->n_checks)
			break;
		if (!tsct_fw_check(&r->checks[k], f, gen))
			return 0;
	}
	return 1;
}

/* The packet being classified: tsct_policy is asked about the pipeline's
 * scratch fw_io, which the search's steps read from there. */
static __always_inline const struct fw_io *fw_io_get(void)
{
	struct pipeline_scratch *ps;
	__u32 zero = 0;

	ps = bpf_map_lookup_elem(&tsct_pipeline_scratch, &zero);
	return ps ? &ps->fio : 0;
}

static __always_inline __u64 fw_clear_below(__u64 x, __u32 k)
{
	k &= 63;
	return k ? x & (~0ULL << k) : x;
}

/* One step of the search: AND the next word, or try the next candidate. */
static long fw_search_step(__u32 i, struct fw_search *s)
{
	const struct fw_rule *r;
	const struct fw_io *f;
	__u32 bit, idx, k;

	if (!s->cur) {
		__u64 acc = ~0ULL;

		if (s->w > s->hi)
			return 1;
#pragma unroll
		for (k = 0; k < FW_MAX_FIELDS; k++) {
			__u64 *word;

			if (!(s->present & (1 << k)))
				continue;
			idx = s->base[k] + s->w;
			word = bpf_map_lookup_elem(&tsct_fw_vector_words, &idx);
			acc &= word ? *word : 0;
		}
		if (s->w == s->from >> 6)
			acc = fw_clear_below(acc, s->from);
		s->cur = acc;
		s->cw = s->w;
		s->w++;
		return 0;
	}
	bit = fw_ctz64(s->cur);
	s->cur &= s->cur - 1;
	idx = s->rule_base + s->cw * 64 + bit;
	r = bpf_map_lookup_elem(&tsct_fw_rules, &idx);
	f = fw_io_get();
	if (!r || !f)
		return 1;
	if (!fw_rule_matches(r, f, s->gen))
		return 0;
	if (r->action != FW_ACT_SKIP) {
		s->decided = 1;
		s->rule = idx;
		return 1;
	}
	/* A matched return: the search goes on at its target. */
	s->from = r->skip_to;
	if (s->from >> 6 == s->cw) {
		s->cur = fw_clear_below(s->cur, s->from);
	} else {
		s->cur = 0;
		s->w = s->from >> 6;
		if (s->w < s->lo)
			s->w = s->lo;
	}
	return 0;
}

/* The search over [s->lo, s->hi]: a global function, so that the loop is
 * verified once, not once per combination of fields the caller looked up. */
__attribute__((noinline)) int tsct_fw_search(__u32 unused)
{
	struct pipeline_scratch *ps;
	struct fw_search local;
	__u32 zero = 0;

	ps = bpf_map_lookup_elem(&tsct_pipeline_scratch, &zero);
	if (!ps)
		return 0;
	/* bpf_loop's context must live on this frame's stack. */
	__builtin_memcpy(&local, &ps->search, sizeof(local));
	bpf_loop(FW_SEARCH_STEPS, fw_search_step, &local, 0);
	ps->search.decided = local.decided;
	ps->search.rule = local.rule;
	return 0;
}

/* Vector `id` into field slot `slot` (a constant): its range narrows [lo, hi]. */
static __always_inline void fw_vector_of(struct fw_search *s, __u32 slot, __u32 id, __u32 *lo, __u32 *hi)
{
	__u32 idx = s->gen * FW_MAX_VECTORS + id;
	struct fw_vector *v = bpf_map_lookup_elem(&tsct_fw_vectors, &idx);

	if (!v) {
		*hi = 0;
		*lo = 1;
		return;
	}
	if (v->lo > *lo)
		*lo = v->lo;
	if (v->hi < *hi)
		*hi = v->hi;
	s->base[slot] = s->gen * FW_MAX_VECTOR_WORDS + v->off - v->lo;
	s->present |= 1 << slot;
}

static __always_inline void fw_count(__u32 gen, __u32 hook, __u32 counter, __u32 bytes)
{
	struct fw_counter *c;
	__u32 idx;

	if (counter == FW_COUNTER_POLICY) {
		idx = gen * FW_HOOKS + hook;
		c = bpf_map_lookup_elem(&tsct_fw_policy_counters, &idx);
	} else {
		idx = gen * FW_MAX_COUNTERS + counter;
		c = bpf_map_lookup_elem(&tsct_fw_counters, &idx);
	}
	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Whether hook h of the live generation judges this packet's devices. */
static __always_inline int fw_judges(__u8 gen, __u8 h, const struct fw_io *f)
{
	struct fw_judged_key k = {.gen = gen, .hook = h};

	if (h != FW_HOOK_OUTPUT && f->in_ifindex) {
		k.ifindex = f->in_ifindex;
		if (bpf_map_lookup_elem(&tsct_fw_judged, &k))
			return 1;
	}
	if (h != FW_HOOK_INPUT && f->out_ifindex) {
		k.ifindex = f->out_ifindex;
		if (bpf_map_lookup_elem(&tsct_fw_judged, &k))
			return 1;
	}
	return 0;
}

static __always_inline __u32 fw_device_vector(__u8 gen, __u8 h, __u8 field, __u32 ifindex, __u32 other)
{
	struct fw_device_key k = {.gen = gen, .hook = h, .field = field, .ifindex = ifindex};
	__u32 *v = bpf_map_lookup_elem(&tsct_fw_devices, &k);

	return v ? *v : other;
}

/* Classifies f against its hook in the live generation: f->verdict, the
 * counter, and on accept what to commit. Counts the decision under `bytes`
 * (the packet's length). A global function: verified once, with its own
 * frame. */
__attribute__((noinline)) int tsct_policy(struct fw_io *f, __u32 bytes)
{
	struct pipeline_scratch *ps;
	struct fw_search *s;
	struct fw_control *ctl = fw_control_get();
	struct fw_hook *meta;
	const struct fw_rule *r;
	__u32 idx, lo = 0, hi, *id, k, zero = 0;
	__u8 h, gen;

	if (!f)
		return 0;
	f->verdict = FW_ACT_ACCEPT;
	f->counter = FW_COUNTER_POLICY;
	f->commit_flags = 0;
	f->helper = 0;
	ps = bpf_map_lookup_elem(&tsct_pipeline_scratch, &zero);
	if (!ctl || !ps)
		return 0;
	s = &ps->search;
	__builtin_memset(s, 0, sizeof(*s));
	gen = ctl->generation & 1;
	h = f->hook;
	if (h >= FW_HOOKS)
		return 0;
	idx = gen * FW_HOOKS + h;
	meta = bpf_map_lookup_elem(&tsct_fw_hooks, &idx);
	if (!meta)
		return 0;
	if (!meta->judge_all && !fw_judges(gen, h, f))
		return 0;
	s->gen = gen;
	hi = meta->words ? meta->words - 1 : 0;
	if (!meta->words)
		lo = 1;
	idx = (gen * FW_HOOKS + h) * 256 + f->state;
	id = bpf_map_lookup_elem(&tsct_fw_ct_state, &idx);
	fw_vector_of(s, 0, id ? *id : 0, &lo, &hi);
	if (meta->fields & (FW_FIELD_SRC | FW_FIELD_DST)) {
		struct fw_addr_key ak = {.gen = gen, .hook = h, .family = f->t.family};
		__u32 len = f->t.family == 4 ? 32 : 128;

		ak.prefixlen = 32 + len;
		if (meta->fields & FW_FIELD_SRC) {
			ak.field = 0;
			__builtin_memcpy(ak.addr, f->t.saddr, 16);
			id = bpf_map_lookup_elem(&tsct_fw_addr, &ak);
			fw_vector_of(s, 1, id ? *id : 0, &lo, &hi);
		}
		if (meta->fields & FW_FIELD_DST) {
			ak.field = 1;
			__builtin_memcpy(ak.addr, f->t.daddr, 16);
			id = bpf_map_lookup_elem(&tsct_fw_addr, &ak);
			fw_vector_of(s, 2, id ? *id : 0, &lo, &hi);
		}
	}
	if (meta->fields & (FW_FIELD_DPORT | FW_FIELD_SPORT)) {
		/* Only TCP, UDP and SCTP carry ports; other protocols look up port 0. */
		int ported = f->t.proto == IPPROTO_TCP || f->t.proto == IPPROTO_UDP || f->t.proto == IPPROTO_SCTP;
		struct fw_port_key pk = {.prefixlen = 48, .gen = gen, .hook = h, .proto = f->t.proto};

		if (meta->fields & FW_FIELD_DPORT) {
			pk.field = 0;
			pk.port = ported ? f->t.dport : 0;
			id = bpf_map_lookup_elem(&tsct_fw_port, &pk);
			fw_vector_of(s, 3, id ? *id : 0, &lo, &hi);
		}
		if (meta->fields & FW_FIELD_SPORT) {
			pk.field = 1;
			pk.port = ported ? f->t.sport : 0;
			id = bpf_map_lookup_elem(&tsct_fw_port, &pk);
			fw_vector_of(s, 4, id ? *id : 0, &lo, &hi);
		}
	}
	if (meta->fields & FW_FIELD_IN_DEV)
		fw_vector_of(s, 5, fw_device_vector(gen, h, 0, f->in_ifindex, meta->in_dev_other), &lo, &hi);
	if (meta->fields & FW_FIELD_OUT_DEV)
		fw_vector_of(s, 6, fw_device_vector(gen, h, 1, f->out_ifindex, meta->out_dev_other), &lo, &hi);
	s->lo = lo;
	s->w = lo;
	s->hi = hi;
	s->rule_base = (gen * FW_HOOKS + h) * FW_MAX_RULES;
	if (lo <= hi)
		tsct_fw_search(0);
	r = s->decided ? bpf_map_lookup_elem(&tsct_fw_rules, &s->rule) : 0;
	if (r) {

		f->verdict = r->action;
		f->counter = r->counter;
		if (r->action == FW_ACT_ACCEPT) {
			f->helper = r->helper;
			f->commit_flags = r->commit_flags;
			f->commit_mark_value = r->commit_mark_value;
			f->commit_mark_mask = r->commit_mark_mask;
#pragma unroll
			for (k = 0; k < 4; k++) {
				f->commit_label_value[k] = r->commit_label_value[k];
				f->commit_label_mask[k] = r->commit_label_mask[k];
			}
		}
	} else {
		f->verdict = meta->policy ? FW_ACT_DROP : FW_ACT_ACCEPT;
	}
	/* bytes 0: a connection judged again after a rule change, not a packet decided. */
	if (bytes)
		fw_count(gen, h, f->counter, bytes);
	return 0;
}

#endif
