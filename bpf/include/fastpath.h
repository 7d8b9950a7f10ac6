/* SPDX-License-Identifier: GPL-2.0 */
/* Forwarding established connections from tc ingress: a FIB lookup, the TTL
 * or hop limit decremented, the source masqueraded when the egress device
 * masquerades, and a redirect to the egress device (with the Ethernet
 * addresses the FIB resolved, or through bpf_redirect_neigh when it has none
 * yet), whose own tc egress program then has nothing left to do. New
 * connections' packets take it too with CFG_F_FAST_PATH_NEW. Everything the
 * stack must see goes to it: new packets otherwise, invalid ones, ICMP errors,
 * fragments, local traffic, TTL expiry, packets that need fragmenting, and
 * destinations the FIB cannot resolve. Like Cilium's BPF host routing, this
 * path does not traverse the stack's netfilter hooks. */
#ifndef TSCT_FASTPATH_H
#define TSCT_FASTPATH_H

#include "common.h"
#include "parse.h"
#include "csum.h"
#include "maps.h"

#ifndef AF_INET
#define AF_INET	 2
#define AF_INET6 10
#endif

/* ip_decrease_ttl: RFC 1624 on the TTL/protocol word. The caller checked the
 * header is in bounds and the TTL above one. */
static __always_inline void ip4_decrease_ttl(struct iphdr *ip)
{
	ip->check = csum_replace16(ip->check, bpf_htons(ip->ttl << 8), bpf_htons((ip->ttl - 1) << 8));
	ip->ttl--;
}

/* The Ethernet addresses the FIB resolved for the next hop. */
static __always_inline void eth_set_fib_addrs(struct ethhdr *eth, const struct bpf_fib_lookup *fib)
{
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
}

/* The FIB lookup's arguments for a parsed packet that arrived on ifindex
 * (tos: IPv4's; IPv6 has none to give). */
static __always_inline void fib_params_of(struct bpf_fib_lookup *fib, const struct pkt *p, __u32 ifindex, __u8 tos)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->ifindex = ifindex;
	fib->l4_protocol = p->t.proto;
	fib->sport = p->t.sport;
	fib->dport = p->t.dport;
	fib->tot_len = p->l3_len;
	if (p->t.family == 4) {
		fib->family = AF_INET;
		fib->tos = tos;
		fib->ipv4_src = p->t.saddr[0];
		fib->ipv4_dst = p->t.daddr[0];
	} else {
		fib->family = AF_INET6;
		__builtin_memcpy(fib->ipv6_src, p->t.saddr, 16);
		__builtin_memcpy(fib->ipv6_dst, p->t.daddr, 16);
	}
}

/* Sends the packet on: with the neighbour resolved by the FIB, its addresses
 * and a plain redirect; without, bpf_redirect_neigh with the next hop the FIB
 * found (so that it need not look the route up again). */
static __always_inline int fast_path_send(struct __sk_buff *skb, struct bpf_fib_lookup *fib, long rc, int v6)
{
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib->dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib->smac, ETH_ALEN, 0))
			return -1;
		return bpf_redirect(fib->ifindex, 0);
	} else {
		struct bpf_redir_neigh nh = {};

		if (v6) {
			nh.nh_family = AF_INET6;
			__builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, 16);
		} else {
			nh.nh_family = AF_INET;
			nh.ipv4_nh = fib->ipv4_dst;
		}
		return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
	}
}

/* Set in skb->tc_index on a packet the fast path sent out of a masquerading
 * device with its source already translated: that device's egress hook lets
 * it pass without parsing it or looking it up again (and clears the bit).
 * tc_index is the skb's classifier scratch, which nothing in the kernel this
 * datapath runs with uses between the two hooks. */
#define TC_INDEX_F_EGRESS_DONE 0x8000

/* tsct_fast_path's answer when the packet leaves by a masquerading device:
 * the caller translates it, then sends it with tsct_fast_path_send. */
#define FAST_PATH_SNAT 1

/* Decrements the TTL or hop limit (checked above one) and sends the packet
 * where the FIB said. */
static __always_inline int fast_path_forward(struct __sk_buff *skb, struct pkt *p, struct fast_path_route *r)
{
	if (p->t.family == 4) {
		void *data = ctx_data(skb), *end = ctx_data_end(skb);
		struct ethhdr *eth = data;
		struct iphdr *ip = data + ETH_HLEN;

		/* Direct access: the headers are in the linear data (the parser
		 * read them there), and a tc program may write them in place. */
		if ((void *)(ip + 1) > end)
			return -1;
		ip4_decrease_ttl(ip);
		if (r->rc == BPF_FIB_LKUP_RET_SUCCESS) {
			eth_set_fib_addrs(eth, &r->fib);
			return bpf_redirect(r->fib.ifindex, 0);
		}
	} else {
		__u8 hop_limit;

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 7, &hop_limit, 1))
			return -1;
		hop_limit--;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + 7, &hop_limit, 1, 0))
			return -1;
	}
	return fast_path_send(skb, &r->fib, r->rc, p->t.family == 6);
}

/* Routes a tracked packet (established, or new with CFG_F_FAST_PATH_NEW): returns TC_ACT_REDIRECT when it sent it,
 * FAST_PATH_SNAT when it leaves by a masquerading device (io->ifindex and
 * io->dev say which), or -1 for the stack. */
__attribute__((noinline)) int tsct_fast_path(struct __sk_buff *skb, struct pkt *p, struct nat_io *io)
{
	struct fast_path_route *r;
	struct bpf_fib_lookup *fib;
	struct device_info *out;
	__u32 zero = 0, out_if;
	__u8 tos = 0;

	if (!skb || !p || !io || p->frag != FRAG_NONE || p->kind != PKT_NORMAL)
		return -1;
	r = bpf_map_lookup_elem(&tsct_fast_path_scratch, &zero);
	if (!r)
		return -1;
	fib = &r->fib;
	if (p->t.family == 4) {
		void *data = ctx_data(skb), *end = ctx_data_end(skb);
		struct iphdr *ip = data + ETH_HLEN;

		if ((void *)(ip + 1) > end || ip->ttl <= 1)
			return -1;
		tos = ip->tos;
	} else {
		__u8 hop_limit;

		if (bpf_skb_load_bytes(skb, ETH_HLEN + 7, &hop_limit, 1) || hop_limit <= 1)
			return -1;
	}
	fib_params_of(fib, p, skb->ingress_ifindex, tos);
	r->rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (r->rc != BPF_FIB_LKUP_RET_SUCCESS && r->rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	out_if = fib->ifindex;
	out = bpf_map_lookup_elem(&tsct_devices, &out_if);
	if (out && (out->flags & DEVICE_F_MASQUERADE)) {
		io->ifindex = out_if;
		io->dev = *out;
		return FAST_PATH_SNAT;
	}
	return fast_path_forward(skb, p, r);
}

/* Sends a packet tsct_fast_path routed and the caller translated; its
 * egress hook has nothing left to do. */
__attribute__((noinline)) int tsct_fast_path_send(struct __sk_buff *skb, struct pkt *p)
{
	struct fast_path_route *r;
	__u32 zero = 0;

	if (!skb || !p)
		return -1;
	r = bpf_map_lookup_elem(&tsct_fast_path_scratch, &zero);
	if (!r)
		return -1;
	skb->tc_index |= TC_INDEX_F_EGRESS_DONE;
	return fast_path_forward(skb, p, r);
}

#endif
