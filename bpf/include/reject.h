/* SPDX-License-Identifier: GPL-2.0 */
/* Refusing a packet the way a host would, so that a client learns at once
 * instead of retransmitting into nothing: a TCP segment is answered with an
 * RST (RFC 9293 3.10.7.1: SEQ = the segment's ACK, or ACK = its SEQ + length),
 * a UDP datagram over IPv4 with ICMP port unreachable. The packet is turned
 * into the answer in place and sent back out of the device it came in on
 * (tc ingress: the peer is on that link). The refusal is counted under its
 * reason as a drop; an answer that cannot be built leaves a plain drop. */
#ifndef TSCT_REJECT_H
#define TSCT_REJECT_H

#include "common.h"
#include "csum.h"
#include "drop.h"
#include "packet.h"

#define REJECT_TTL 64

/* One's complement sum of a buffer on the stack, folded (len a multiple of 4, at most 512). */
static __always_inline __u16 reject_csum(void *buf, __u32 len, __u32 seed)
{
	__s64 s = bpf_csum_diff(0, 0, buf, len, seed);

	return s < 0 ? 0 : csum_fold((__u32)s);
}

struct reject_tcp4 {
	struct iphdr ip;
	struct tcphdr tcp;
};

struct reject_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
	struct tcphdr tcp;
};

/* The RST for a TCP segment over IPv4 without options, as its IP and TCP headers. */
static __always_inline int reject_tcp4_build(struct __sk_buff *skb, const struct pkt *p, struct reject_tcp4 *r)
{
	struct reject_pseudo4 ps = {};
	struct iphdr ip;
	struct tcphdr th;
	__u32 payload;

	if (p->l4_off != ETH_HLEN + sizeof(ip) || pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)) ||
	    pkt_load(skb, p->l4_off, &th, sizeof(th)) || th.rst)
		return -1;
	payload = p->l3_len - sizeof(ip) - th.doff * 4;
	__builtin_memset(r, 0, sizeof(*r));
	r->ip.version = 4;
	r->ip.ihl = 5;
	r->ip.tot_len = bpf_htons(sizeof(*r));
	r->ip.ttl = REJECT_TTL;
	r->ip.protocol = IPPROTO_TCP;
	r->ip.saddr = ip.daddr;
	r->ip.daddr = ip.saddr;
	r->tcp.source = th.dest;
	r->tcp.dest = th.source;
	r->tcp.doff = 5;
	r->tcp.rst = 1;
	if (th.ack) {
		r->tcp.seq = th.ack_seq;
	} else {
		r->tcp.ack = 1;
		r->tcp.ack_seq = bpf_htonl(bpf_ntohl(th.seq) + payload + th.syn + th.fin);
	}
	r->ip.check = reject_csum(&r->ip, sizeof(r->ip), 0);
	ps.saddr = r->ip.saddr;
	ps.daddr = r->ip.daddr;
	ps.proto = IPPROTO_TCP;
	ps.len = bpf_htons(sizeof(struct tcphdr));
	ps.tcp = r->tcp;
	r->tcp.check = reject_csum(&ps, sizeof(ps), 0);
	return 0;
}

struct reject_icmp4 {
	struct iphdr ip;
	struct icmp_hdr icmp;
	__u8 quote[28]; /* the offending IP header (without options) and 8 bytes of its payload */
};

/* ICMP port unreachable for a UDP datagram over IPv4 without options. */
static __always_inline int reject_udp4_build(struct __sk_buff *skb, const struct pkt *p, struct reject_icmp4 *r)
{
	struct iphdr ip;

	if (p->l4_off != ETH_HLEN + sizeof(ip) || pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)) ||
	    pkt_load(skb, ETH_HLEN, r->quote, sizeof(r->quote)))
		return -1;
	__builtin_memset(r, 0, offsetof(struct reject_icmp4, quote));
	r->ip.version = 4;
	r->ip.ihl = 5;
	r->ip.tot_len = bpf_htons(sizeof(*r));
	r->ip.ttl = REJECT_TTL;
	r->ip.protocol = IPPROTO_ICMP;
	r->ip.saddr = ip.daddr;
	r->ip.daddr = ip.saddr;
	r->ip.check = reject_csum(&r->ip, sizeof(r->ip), 0);
	r->icmp.type = ICMP_DEST_UNREACH_;
	r->icmp.code = 3; /* port unreachable */
	r->icmp.checksum = reject_csum(&r->icmp, sizeof(r->icmp) + sizeof(r->quote), 0);
	return 0;
}

/* Writes `len` bytes of answer after the Ethernet header, its addresses
 * swapped, and sends it back out of the device the packet came in on. */
static __always_inline int reject_send(struct __sk_buff *skb, void *answer, __u32 len)
{
	__u8 mac[2 * ETH_ALEN];
	__u8 swapped[2 * ETH_ALEN];

	if (pkt_load(skb, 0, mac, sizeof(mac)))
		return -1;
	__builtin_memcpy(swapped, mac + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(swapped + ETH_ALEN, mac, ETH_ALEN);
	if (bpf_skb_change_tail(skb, ETH_HLEN + len, 0) || bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, answer, len, 0))
		return -1;
	return bpf_redirect(skb->ifindex, 0);
}

/* Drops a packet under `reason` and, where one can be built, sends its sender
 * the refusal. At tc ingress only. A global function: the answer is built in
 * a frame of its own. */
__attribute__((noinline)) int tsct_reject(struct __sk_buff *skb, const struct pkt *p, __u32 reason, __u32 hook)
{
	if (!skb || !p)
		return TC_ACT_SHOT;
	metrics_count(reason, hook & 1, skb->len);
	if (hook != HOOK_INGRESS || p->t.family != 4 || p->frag != FRAG_NONE || p->kind != PKT_NORMAL)
		return TC_ACT_SHOT;
	if (p->t.proto == IPPROTO_TCP) {
		struct reject_tcp4 r;

		if (!reject_tcp4_build(skb, p, &r) && reject_send(skb, &r, sizeof(r)) == TC_ACT_REDIRECT)
			return TC_ACT_REDIRECT;
	} else if (p->t.proto == IPPROTO_UDP) {
		struct reject_icmp4 r;

		/* The datagram grows by the ICMP and IP headers in front of its quote. */
		if (!reject_udp4_build(skb, p, &r) &&
		    !bpf_skb_change_tail(skb, ETH_HLEN + sizeof(r) > skb->len ? ETH_HLEN + sizeof(r) : skb->len, 0) &&
		    reject_send(skb, &r, sizeof(r)) == TC_ACT_REDIRECT)
			return TC_ACT_REDIRECT;
	}
	return TC_ACT_SHOT;
}

#endif
