/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing: Ethernet, IPv4, IPv6 with its extension headers, TCP, UDP,
 * ICMP and ICMPv6, fragments, and the inner header of ICMP errors. Headers
 * are copied to the stack (directly from linear data when it is there, with
 * bpf_skb_load_bytes otherwise), so non-linear skbs parse the same. Every
 * failure is a named reason; nothing here touches connection state. */
#ifndef TSCT_PARSE_H
#define TSCT_PARSE_H

#include "common.h"
#include "packet.h"
/* Header checks shared by this parser and the XDP fast path's (xdp.h), which
 * reads the same headers in place: one definition of what a valid header is. */

/* The TCP header: its length within the IP packet, and nf_conntrack's valid
 * flag combinations. Returns 0 or the invalid reason. */
static __always_inline __u32 parse_tcp_hdr(struct pkt *p, const struct tcphdr *th, __u32 l3_end)
{
	if (th->doff < 5 || p->l4_off + th->doff * 4 > l3_end)
		return REASON_INV_TCP_HEADER_LEN;
	p->t.sport = th->source;
	p->t.dport = th->dest;
	p->tcp_flags = ((const __u8 *)th)[13];
	if (!(TCP_VALID_FLAGS_MASK & (1ULL << (p->tcp_flags & TCP_F_JUDGED))))
		return REASON_INV_TCP_FLAGS;
	return 0;
}

static __always_inline void parse_udp_hdr(struct pkt *p, const struct udphdr *uh)
{
	p->t.sport = uh->source;
	p->t.dport = uh->dest;
}

/* The IPv4 header: version, header and total length (the packet holds at
 * least ETH_HLEN + tot_len bytes: `len`), and the tuple's addresses. */
static __always_inline __u32 parse_ipv4_hdr(struct pkt *p, const struct iphdr *ip, __u32 len)
{
	if (ip->version != 4)
		return REASON_INV_IP_VERSION;
	if (ip->ihl < 5)
		return REASON_INV_IP_HEADER_LEN;
	p->l3_len = bpf_ntohs(ip->tot_len);
	if (p->l3_len < ip->ihl * 4 || ETH_HLEN + p->l3_len > len)
		return REASON_INV_IP_TOTAL_LEN;
	p->t.family = 4;
	p->t.proto = ip->protocol;
	p->t.saddr[0] = ip->saddr;
	p->t.daddr[0] = ip->daddr;
	p->l4_off = ETH_HLEN + ip->ihl * 4;
	return 0;
}

/* The IPv6 fixed header: version, payload length within `len`, addresses;
 * the caller walks the extension headers from ip6->nexthdr. */
static __always_inline __u32 parse_ipv6_hdr(struct pkt *p, const struct ipv6hdr *ip6, __u32 len)
{
	if (ip6->version != 6)
		return REASON_INV_IP_VERSION;
	p->l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (ETH_HLEN + p->l3_len > len)
		return REASON_INV_IP_TOTAL_LEN;
	p->t.family = 6;
	__builtin_memcpy(p->t.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->t.daddr, &ip6->daddr, 16);
	p->t.proto = ip6->nexthdr;
	p->l4_off = ETH_HLEN + sizeof(*ip6);
	return 0;
}

/* Ports (or the ICMP identifier) of an L4 header at off; for the inner
 * header of an ICMP error too, where only 8 bytes are guaranteed. */
static __always_inline int parse_l4_ports(struct __sk_buff *skb, __u32 off, struct tuple *t, __u8 *icmp_type)
{
	struct icmp_hdr h;

	if (pkt_load(skb, off, &h, sizeof(h)))
		return -1;
	switch (t->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		/* source and destination port are the first 4 bytes */
		t->sport = *(__be16 *)&h;
		t->dport = *((__be16 *)&h + 1);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		*icmp_type = h.type;
		t->sport = h.id;
		t->dport = h.id;
		break;
	default:
		break;
	}
	return 0;
}

static __always_inline int is_icmp4_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH_ || type == ICMP_TIME_EXCEEDED_ || type == ICMP_PARAMETERPROB_;
}

static __always_inline int is_icmp6_error(__u8 type)
{
	return type == ICMPV6_DEST_UNREACH_ || type == ICMPV6_PKT_TOOBIG_ || type == ICMPV6_TIME_EXCEED_ ||
	       type == ICMPV6_PARAMPROB_;
}

/* Link-local control that nf_conntrack does not track either. */
static __always_inline int is_icmp6_untracked(__u8 type)
{
	return (type >= ICMPV6_MLD_QUERY_ && type <= ICMPV6_MLD_DONE_) ||
	       (type >= ICMPV6_ND_FIRST_ && type <= ICMPV6_ND_LAST_) || type == ICMPV6_MLD2_REPORT_;
}

/* The L4 part shared by both families: TCP flags and sanity, ICMP kinds.
 * Returns 0 or a reason. */
static __always_inline __u32 parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 l3_end)
{
	__u32 off = p->l4_off;

	switch (p->t.proto) {
	case IPPROTO_TCP: {
		struct tcphdr th;

		if (off + sizeof(th) > l3_end || pkt_load(skb, off, &th, sizeof(th)))
			return REASON_INV_TRUNCATED_L4;
		return parse_tcp_hdr(p, &th, l3_end);
	}
	case IPPROTO_UDP: {
		struct udphdr uh;

		if (off + sizeof(uh) > l3_end || pkt_load(skb, off, &uh, sizeof(uh)))
			return REASON_INV_TRUNCATED_L4;
		parse_udp_hdr(p, &uh);
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_: {
		struct icmp_hdr ih;
		int v6 = p->t.proto == IPPROTO_ICMPV6_;

		if (off + sizeof(ih) > l3_end || pkt_load(skb, off, &ih, sizeof(ih)))
			return REASON_INV_TRUNCATED_L4;
		p->icmp_type = ih.type;
		p->icmp_code = ih.code;
		if ((!v6 && (ih.type == ICMP_ECHO_ || ih.type == ICMP_ECHOREPLY_)) ||
		    (v6 && (ih.type == ICMPV6_ECHO_REQUEST_ || ih.type == ICMPV6_ECHO_REPLY_))) {
			p->t.sport = ih.id;
			p->t.dport = ih.id;
			if (ih.type == ICMP_ECHOREPLY_ || ih.type == ICMPV6_ECHO_REPLY_)
				p->kind = PKT_ICMP_REPLY;
			return 0;
		}
		if (v6 ? is_icmp6_error(ih.type) : is_icmp4_error(ih.type)) {
			p->kind = PKT_ICMP_ERROR;
			return 0;
		}
		if (v6 && is_icmp6_untracked(ih.type))
			return REASON_UNTRACKED;
		/* Other informational types: tracked by addresses and protocol. */
		return 0;
	}
	default:
		return 0;
	}
}

/* The offending packet inside an ICMP error, as its sender sent it. */
static __always_inline __u32 parse_icmp4_inner(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	__u32 off = p->l4_off + sizeof(struct icmp_hdr);
	__u8 type = 0;

	if (pkt_load(skb, off, &ip, sizeof(ip)))
		return REASON_INV_ICMP_ERROR_TRUNCATED;
	if (ip.version != 4 || ip.ihl < 5)
		return REASON_INV_ICMP_ERROR_TRUNCATED;
	p->inner.family = 4;
	p->inner.proto = ip.protocol;
	p->inner.saddr[0] = ip.saddr;
	p->inner.daddr[0] = ip.daddr;
	if (ip.protocol == IPPROTO_ICMP || ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		if (parse_l4_ports(skb, off + ip.ihl * 4, &p->inner, &type))
			return REASON_INV_ICMP_ERROR_TRUNCATED;
		/* An error about an error is not related to anything. */
		if (ip.protocol == IPPROTO_ICMP && type != ICMP_ECHO_ && type != ICMP_ECHOREPLY_)
			return REASON_INV_ICMP_ERROR_UNKNOWN;
	}
	return 0;
}

static __always_inline __u32 parse_icmp6_inner(struct __sk_buff *skb, struct pkt *p)
{
	struct ipv6hdr ip6;
	__u32 off = p->l4_off + sizeof(struct icmp_hdr);
	__u8 type = 0;

	if (pkt_load(skb, off, &ip6, sizeof(ip6)))
		return REASON_INV_ICMP_ERROR_TRUNCATED;
	if (ip6.version != 6)
		return REASON_INV_ICMP_ERROR_TRUNCATED;
	p->inner.family = 6;
	p->inner.proto = ip6.nexthdr;
	__builtin_memcpy(p->inner.saddr, &ip6.saddr, 16);
	__builtin_memcpy(p->inner.daddr, &ip6.daddr, 16);
	if (ip6.nexthdr == IPPROTO_ICMPV6_ || ip6.nexthdr == IPPROTO_TCP || ip6.nexthdr == IPPROTO_UDP) {
		if (parse_l4_ports(skb, off + sizeof(ip6), &p->inner, &type))
			return REASON_INV_ICMP_ERROR_TRUNCATED;
		if (ip6.nexthdr == IPPROTO_ICMPV6_ && type != ICMPV6_ECHO_REQUEST_ && type != ICMPV6_ECHO_REPLY_)
			return REASON_INV_ICMP_ERROR_UNKNOWN;
	}
	return 0;
}

static __always_inline __u32 parse_ipv4(struct __sk_buff *skb, struct pkt *p)
{
	struct iphdr ip;
	__u32 l3_end, frag, reason;

	if (pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)))
		return REASON_INV_TRUNCATED_L3;
	reason = parse_ipv4_hdr(p, &ip, skb->len);
	if (reason)
		return reason;
	l3_end = ETH_HLEN + p->l3_len;

	frag = bpf_ntohs(ip.frag_off);
	if (frag & IP4_FRAG_OFFSET_MASK) {
		p->frag = FRAG_LATER;
		p->kind = PKT_FRAG_LATER;
		p->frag_id = ip.id;
		return 0;
	}
	if (frag & IP4_FRAG_MF) {
		p->frag = FRAG_FIRST;
		p->frag_id = ip.id;
	}
	return parse_l4(skb, p, l3_end);
}

static __always_inline __u32 parse_ipv6(struct __sk_buff *skb, struct pkt *p)
{
	struct ipv6hdr ip6;
	__u32 off = ETH_HLEN + sizeof(ip6), l3_end, reason;
	__u8 next;
	int i;

	if (pkt_load(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return REASON_INV_TRUNCATED_L3;
	reason = parse_ipv6_hdr(p, &ip6, skb->len);
	if (reason)
		return reason;
	l3_end = ETH_HLEN + p->l3_len;
	next = ip6.nexthdr;

#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		if (next == IPPROTO_FRAGMENT_) {
			struct ipv6_frag_hdr fh;
			__u16 fo;

			if (off + sizeof(fh) > l3_end || pkt_load(skb, off, &fh, sizeof(fh)))
				return REASON_INV_TRUNCATED_L3;
			fo = bpf_ntohs(fh.frag_off);
			p->frag_id = fh.id;
			next = fh.nexthdr;
			off += sizeof(fh);
			if (fo & 0xfff8) {
				p->t.proto = next;
				p->l4_off = off;
				p->frag = FRAG_LATER;
				p->kind = PKT_FRAG_LATER;
				return 0;
			}
			if (fo & 1)
				p->frag = FRAG_FIRST;
			continue;
		}
		if (next == IPPROTO_HOPOPTS_ || next == IPPROTO_ROUTING_ || next == IPPROTO_DSTOPTS_ ||
		    next == IPPROTO_AH_) {
			struct ipv6_ext_hdr eh;

			if (off + sizeof(eh) > l3_end || pkt_load(skb, off, &eh, sizeof(eh)))
				return REASON_INV_TRUNCATED_L3;
			next = eh.nexthdr;
			off += next == IPPROTO_AH_ ? (eh.hdrlen + 2) * 4 : (eh.hdrlen + 1) * 8;
			if (off > MAX_L4_OFFSET)
				return REASON_INV_IPV6_EXT_HEADERS;
			continue;
		}
		break;
	}
	if (next == IPPROTO_HOPOPTS_ || next == IPPROTO_ROUTING_ || next == IPPROTO_DSTOPTS_ || next == IPPROTO_AH_ ||
	    next == IPPROTO_FRAGMENT_)
		return REASON_INV_IPV6_EXT_HEADERS;
	p->t.proto = next;
	p->l4_off = off;
	return parse_l4(skb, p, l3_end);
}

/* Parses the packet into p. Returns 0, REASON_UNTRACKED for what is not
 * tracked by design, or an invalid reason. */
static __always_inline __u32 parse_packet(struct __sk_buff *skb, struct pkt *p)
{
	struct ethhdr eth;
	__u32 rc;

	if (pkt_load(skb, 0, &eth, sizeof(eth)))
		return REASON_INV_TRUNCATED_L2;
	if (eth.h_proto == bpf_htons(ETH_P_IP))
		rc = parse_ipv4(skb, p);
	else if (eth.h_proto == bpf_htons(ETH_P_IPV6))
		rc = parse_ipv6(skb, p);
	else
		return REASON_UNTRACKED;
	if (rc)
		return rc;
	if (p->kind == PKT_ICMP_ERROR)
		return p->t.family == 4 ? parse_icmp4_inner(skb, p) : parse_icmp6_inner(skb, p);
	return 0;
}

/* The parser as a global function: its header copies live in its own stack
 * frame, not in that of the program, which calls the tracker and NAT after it. */
__attribute__((noinline)) int tsct_parse(struct __sk_buff *skb, struct pkt *p)
{
	if (!skb || !p)
		return REASON_INV_TRUNCATED_L2;
	return parse_packet(skb, p);
}

#endif
