/* SPDX-License-Identifier: GPL-2.0 */
/* Forwarding established connections from tc ingress: a FIB lookup, the TTL
 * or hop limit decremented, and a redirect to the egress device (with the
 * Ethernet addresses the FIB resolved, or through bpf_redirect_neigh when it
 * has none yet), whose own tc egress program still runs (SNAT, count once). Everything the
 * stack must see goes to it: new and invalid packets, ICMP errors,
 * fragments, local traffic, TTL expiry, packets that need fragmenting, and
 * destinations the FIB cannot resolve. Like Cilium's BPF host routing, this
 * path does not traverse the stack's netfilter hooks. */
#ifndef TSCT_FASTPATH_H
#define TSCT_FASTPATH_H

#include "common.h"
#include "parse.h"
#include "nat.h" /* csum_replace16 */

#ifndef AF_INET
#define AF_INET 2
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

/* Returns TC_ACT_REDIRECT when it took the packet, or -1 for the stack. */
__attribute__((noinline)) int tsct_fast_path(struct __sk_buff *skb, struct pkt *p)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (!skb || !p || p->frag != FRAG_NONE || p->kind != PKT_NORMAL)
		return -1;
	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = p->t.proto;
	fib.sport = p->t.sport;
	fib.dport = p->t.dport;
	fib.tot_len = p->l3_len;
	if (p->t.family == 4) {
		void *data = ctx_data(skb), *end = ctx_data_end(skb);
		struct ethhdr *eth = data;
		struct iphdr *ip = data + ETH_HLEN;

		/* Direct access: the headers are in the linear data (the parser
		 * read them there), and a tc program may write them in place. */
		if ((void *)(ip + 1) > end || ip->ttl <= 1)
			return -1;
		fib.family = AF_INET;
		fib.tos = ip->tos;
		fib.ipv4_src = p->t.saddr[0];
		fib.ipv4_dst = p->t.daddr[0];
		rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
			return -1;
		/* The helper may have moved the data: look again. */
		data = ctx_data(skb);
		end = ctx_data_end(skb);
		eth = data;
		ip = data + ETH_HLEN;
		if ((void *)(ip + 1) > end)
			return -1;
		ip4_decrease_ttl(ip);
		if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
			eth_set_fib_addrs(eth, &fib);
			return bpf_redirect(fib.ifindex, 0);
		}
		return fast_path_send(skb, &fib, rc, 0);
	} else {
		struct ipv6hdr ip6;

		if (pkt_load(skb, ETH_HLEN, &ip6, sizeof(ip6)) || ip6.hop_limit <= 1)
			return -1;
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, p->t.saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, p->t.daddr, 16);
		rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
			return -1;
		ip6.hop_limit--;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + 7, &ip6.hop_limit, 1, 0))
			return -1;
	}
	return fast_path_send(skb, &fib, rc, p->t.family == 6);
}

#endif
