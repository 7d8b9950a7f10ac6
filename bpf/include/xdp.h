/* SPDX-License-Identifier: GPL-2.0 */
/* The XDP fast path (--bpf-xdp-fast-path): a packet forwarded between two
 * managed devices that both carry DEVICE_F_XDP is tracked, translated and
 * redirected before the kernel builds an skb for it, and never meets tc or
 * the stack. It takes the common shapes only: Ethernet, IPv4 without options
 * or fragmentation or IPv6 without extension headers, TCP or UDP, a TTL above
 * one, and a destination the FIB resolves to a neighbour. Everything else
 * passes, untouched and untracked, to the tc datapath, which judges it in
 * full (invalid reasons, ICMP, fragments, local traffic, neighbour
 * resolution).
 *
 * Nothing that decides whether the packet can be forwarded here comes after
 * the connection is updated, so that a packet handed on to tc is never
 * tracked twice: the NAT reverse lookup and the FIB lookup are read only and
 * come first; after the tracker, the only outcomes are the redirect, or a
 * drop for a NAT failure (as tc would drop it at egress). */
#ifndef TSCT_XDP_H
#define TSCT_XDP_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "drop.h"
#include "fastpath.h" /* AF_INET, AF_INET6 */
#include "lb.h"
#include "maps.h"
#include "metrics.h"
#include "nat.h"
#include "parse.h"
#include "policy.h"

/* nat_rewrite_at needs this much of the L4 header in the frame. */
#define XDP_L4_MIN 20

struct xdp_l3 {
	__u8 ttl; /* or hop limit */
	__u8 tos;
};

/* The L4 header, checked by the tc parser's own rules (parse_tcp_hdr). */
static __always_inline int xdp_parse_l4(void *l4, void *end, struct pkt *p)
{
	if (l4 + XDP_L4_MIN > end)
		return -1;
	if (p->t.proto == IPPROTO_TCP)
		return parse_tcp_hdr(p, l4, ETH_HLEN + p->l3_len) ? -1 : 0;
	if (p->t.proto == IPPROTO_UDP) {
		parse_udp_hdr(p, l4);
		return 0;
	}
	return -1;
}

/* Returns 0 for a packet of a shape the fast path takes, -1 otherwise: the
 * headers as the tc parser checks them (parse_ipv4_hdr, parse_ipv6_hdr), and
 * none of what only tc handles (IPv4 options and fragments, IPv6 extension
 * headers). */
static __always_inline int xdp_parse(void *data, void *end, struct pkt *p, struct xdp_l3 *l3)
{
	struct ethhdr *eth = data;
	__u32 len = end - data;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl != 5 ||
		    (ip->frag_off & bpf_htons(IP4_FRAG_MF | IP4_FRAG_OFFSET_MASK)) || parse_ipv4_hdr(p, ip, len))
			return -1;
		l3->ttl = ip->ttl;
		l3->tos = ip->tos;
		return xdp_parse_l4(ip + 1, end, p);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || parse_ipv6_hdr(p, ip6, len))
			return -1;
		l3->ttl = ip6->hop_limit;
		l3->tos = 0;
		return xdp_parse_l4(ip6 + 1, end, p);
	}
	return -1;
}

/* The reverse NAT lookup, as a global function the XDP program shares no
 * stack with: read only; the caller rewrites. */
__attribute__((noinline)) int tsct_rev_lookup(struct pkt *p, struct nat_io *io)
{
	if (!p || !io)
		return 0;
	io->xlate = 0;
	return nat_rev_map(p, io);
}

/* Decrements the TTL or hop limit, and writes the Ethernet addresses the FIB
 * resolved. */
static __always_inline int xdp_forward_rewrite(void *data, void *end, const struct pkt *p,
					       const struct bpf_fib_lookup *fib)
{
	struct ethhdr *eth = data;

	if (p->t.family == 4) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end)
			return -1;
		ip4_decrease_ttl(ip);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return -1;
		ip6->hop_limit--;
	}
	eth_set_fib_addrs(eth, fib);
	return 0;
}

static __always_inline int xdp_fast_path(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct xdp_scratch *x;
	struct bpf_fib_lookup *fib;
	struct pkt *p;
	struct device_info *in_dev, *out_dev;
	struct nat_io *nio;
	struct ct_io *cio;
	struct fw_control *fw;
	struct xdp_l3 l3 = {};
	__u32 in_if = ctx->ingress_ifindex, out_if, reason, rev = 0, zero = 0;
	long rc;

	in_dev = bpf_map_lookup_elem(&tsct_devices, &in_if);
	if (!in_dev || !(in_dev->flags & DEVICE_F_XDP))
		return XDP_PASS;
	if (!(config_flags(config_get()) & CFG_F_FAST_PATH))
		return XDP_PASS;
	x = bpf_map_lookup_elem(&tsct_xdp_scratch, &zero);
	if (!x)
		return XDP_PASS;
	p = &x->p;
	fib = &x->fib;
	nio = &x->nio;
	cio = &x->cio;
	__builtin_memset(p, 0, sizeof(*p));
	__builtin_memset(nio, 0, sizeof(*nio));
	__builtin_memset(cio, 0, sizeof(*cio));
	if (xdp_parse(data, end, p, &l3) || l3.ttl <= 1)
		return XDP_PASS;

	nio->now = bpf_ktime_get_coarse_ns();
	nio->zone = in_dev->zone;
	nio->ifindex = in_if;
	if ((in_dev->flags & DEVICE_F_MASQUERADE) || nat_to_node(p, in_dev, config_get())) {
		if (tsct_rev_lookup(p, nio))
			return XDP_PASS;
		if (nio->xlate) {
			rev = 1;
			nat_rev_tuple(p, nio);
		}
	}

	fib_params_of(fib, p, in_if, l3.tos);
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	out_if = fib->ifindex;
	out_dev = bpf_map_lookup_elem(&tsct_devices, &out_if);
	if (!out_dev || !(out_dev->flags & DEVICE_F_XDP))
		return XDP_PASS;

	/* From here the packet is this path's: tracked, then sent or dropped. */
	cio->now = nio->now;
	cio->ifindex = in_if;
	cio->zone = nio->zone;
	cio->hook = HOOK_INGRESS;
	cio->lb = 1;
	/* With a rule set, only a direction whose verdict is cached under the
	 * live rules is forwarded here; tc judges the rest (firewall.h). Read
	 * first, without a change, so that what passes is tracked once. */
	fw = fw_control_get();
	if (fw && (fw->flags & FW_CTL_ACTIVE)) {
		cio->lookup_only = 1;
		reason = tsct_ct(p, cio);
		if (reason || cio->lb != CT_LB_NONE || !fw_verdict_cached(cio, fw))
			return XDP_PASS;
		cio->lookup_only = 0;
		cio->lb = 1;
	}
	reason = tsct_ct(p, cio);
	if (reason || !(cio->state & CT_STATE_TRK) || (cio->state & (CT_STATE_INV | CT_STATE_REL)))
		return XDP_PASS; /* no state was changed: tc judges and counts it */
	/* A packet to a service goes to tc, which chooses or keeps its backend
	 * (the tracker only found the service entry or nothing). */
	if (cio->lb != CT_LB_NONE)
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	/* The parser checked XDP_L4_MIN bytes of L4 header: the rewrites cannot
	 * fail. A reply is translated back here, with what the lookup found. */
	if (rev && nat_rewrite_at(data, end, p, 0, nio->to_addr, nio->to_port))
		return xdp_drop(REASON_DROP_WRITE_ERROR, p->l3_len);
	/* A backend's reply: the service's address back as its source. */
	if (cio->dir == CT_DIR_REPLY && (cio->state & CT_STATE_DNAT)) {
		struct lb_reverse_nat *r = lb_reverse_nat_of(cio->rev_nat_index);

		if (r && nat_rewrite_at(data, end, p, 1, r->addr, r->port))
			return xdp_drop(REASON_DROP_WRITE_ERROR, p->l3_len);
		if (r) {
			__builtin_memcpy(p->t.saddr, r->addr, 16);
			p->t.sport = r->port;
			metrics_count(REASON_LB_REVDNAT, HOOK_INGRESS, 0);
		}
	}
	nio->xlate = 0;
	if (out_dev->flags & DEVICE_F_MASQUERADE) {
		nio->ct_state = cio->state;
		nio->ct_dir = cio->dir;
		nio->zone = cio->zone;
		nio->ifindex = out_if;
		nio->dev = *out_dev;
		nat_io_from_ct(nio, cio);
		reason = tsct_snat_map(p, nio);
		if (reason)
			return xdp_drop(reason, p->l3_len);
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (nio->xlate && nat_rewrite_at(data, end, p, 1, nio->to_addr, nio->to_port))
			return xdp_drop(REASON_DROP_WRITE_ERROR, p->l3_len);
	}
	if (xdp_forward_rewrite(data, end, p, fib))
		return xdp_drop(REASON_DROP_WRITE_ERROR, p->l3_len);
	if (rev)
		metrics_count(REASON_NAT_REVSNAT, HOOK_INGRESS, 0);
	if (nio->xlate)
		metrics_count(REASON_NAT_SNAT, HOOK_EGRESS, 0);
	metrics_count(REASON_XDP_FAST_PATH, HOOK_INGRESS, 0);
	metrics_count(REASON_FORWARDED, HOOK_INGRESS, p->l3_len);
	return bpf_redirect(out_if, 0);
}

#endif
