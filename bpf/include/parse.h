/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing: Ethernet, IPv4, IPv6 with its extension headers, TCP, UDP,
 * ICMP and ICMPv6, fragments, and the inner header of ICMP errors. Headers
 * are copied to the stack (directly from linear data when it is there, with
 * bpf_skb_load_bytes otherwise), so non-linear skbs parse the same. Every
 * failure is a named reason; nothing here touches connection state. */
#ifndef TSCT_PARSE_H
#define TSCT_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "common.h"
#include "maps.h"

/* Protocol numbers and types not worth a libc-dependent header. */
#define IPPROTO_HOPOPTS_  0
#define IPPROTO_ROUTING_  43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ESP_	  50
#define IPPROTO_AH_	  51
#define IPPROTO_ICMPV6_	  58
#define IPPROTO_NONE_	  59
#define IPPROTO_DSTOPTS_  60

#define ICMP_ECHOREPLY_	    0
#define ICMP_DEST_UNREACH_  3
#define ICMP_ECHO_	    8
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PARAMETERPROB_ 12

#define ICMPV6_DEST_UNREACH_ 1
#define ICMPV6_PKT_TOOBIG_   2
#define ICMPV6_TIME_EXCEED_  3
#define ICMPV6_PARAMPROB_    4
#define ICMPV6_ECHO_REQUEST_ 128
#define ICMPV6_ECHO_REPLY_   129
#define ICMPV6_MLD_QUERY_    130
#define ICMPV6_MLD_DONE_     132
#define ICMPV6_ND_FIRST_     133 /* router solicitation */
#define ICMPV6_ND_LAST_	     137 /* redirect */
#define ICMPV6_MLD2_REPORT_  143

#define TCP_F_FIN 0x01
#define TCP_F_SYN 0x02
#define TCP_F_RST 0x04
#define TCP_F_PSH 0x08
#define TCP_F_ACK 0x10
#define TCP_F_URG 0x20
/* nf_conntrack judges flags with PSH, ECE and CWR masked out. */
#define TCP_F_JUDGED (TCP_F_FIN | TCP_F_SYN | TCP_F_RST | TCP_F_ACK | TCP_F_URG)
/* Valid combinations of the judged flags, as nf_conntrack's tcp_valid_flags:
 * SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK, ACK|URG. */
#define TCP_VALID_FLAGS_MASK                                                                           \
	((1ULL << TCP_F_SYN) | (1ULL << (TCP_F_SYN | TCP_F_URG)) | (1ULL << (TCP_F_SYN | TCP_F_ACK)) | \
	 (1ULL << TCP_F_RST) | (1ULL << (TCP_F_RST | TCP_F_ACK)) | (1ULL << (TCP_F_FIN | TCP_F_ACK)) | \
	 (1ULL << (TCP_F_FIN | TCP_F_ACK | TCP_F_URG)) | (1ULL << TCP_F_ACK) | (1ULL << (TCP_F_ACK | TCP_F_URG)))

#define IPV6_MAX_EXT_HEADERS 6
#define MAX_L4_OFFSET	     512
#define IP4_FRAG_OFFSET_MASK 0x1fff
#define IP4_FRAG_MF	     0x2000

struct icmp_hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 seq;
};

struct ipv6_ext_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

/* A connection tuple as the packet carries it: source is the sender. */
struct tuple {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u16 pad;
};

enum pkt_kind {
	PKT_NORMAL = 0,
	PKT_ICMP_ERROR = 1, /* carries `inner`: an error about another packet */
	PKT_ICMP_REPLY = 2, /* echo reply: never starts a connection */
	PKT_FRAG_LATER = 3, /* non-first fragment: ports come from tsct_frag* */
};

enum pkt_frag {
	FRAG_NONE = 0,
	FRAG_FIRST = 1,
	FRAG_LATER = 2,
};

struct pkt {
	struct tuple t;
	struct tuple inner;
	__u32 l3_len; /* bytes counted: the IP packet's length */
	__u32 frag_id;
	__u16 l4_off;
	__u8 tcp_flags;
	__u8 kind; /* enum pkt_kind */
	__u8 frag; /* enum pkt_frag */
	__u8 icmp_type;
	__u16 pad;
};

/* skb->data and skb->data_end, read so that clang cannot fold the context
 * offset into a shared pointer (the verifier refuses a modified ctx pointer). */
static __always_inline void *ctx_data(struct __sk_buff *skb)
{
	void *d;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(d) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data)));
	return d;
}

static __always_inline void *ctx_data_end(struct __sk_buff *skb)
{
	void *d;

	asm volatile("%0 = *(u32 *)(%1 + %2)"
		     : "=r"(d)
		     : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data_end)));
	return d;
}

/* Copies len (a constant) bytes at off into to. */
static __always_inline int pkt_load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);

	if (off <= MAX_L4_OFFSET) {
		__u64 o = off;

		/* An explicit bound the verifier sees even where clang moved the
		 * check; constant offsets need none and stay constants. */
		if (!__builtin_constant_p(off))
			asm volatile("%0 &= 0x3ff" : "+r"(o));
		if (data + o + len <= data_end) {
			__builtin_memcpy(to, data + o, len);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, len);
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
		__u8 judged;

		if (off + sizeof(th) > l3_end || pkt_load(skb, off, &th, sizeof(th)))
			return REASON_INV_TRUNCATED_L4;
		if (th.doff < 5 || off + th.doff * 4 > l3_end)
			return REASON_INV_TCP_HEADER_LEN;
		p->t.sport = th.source;
		p->t.dport = th.dest;
		p->tcp_flags = ((__u8 *)&th)[13];
		judged = p->tcp_flags & TCP_F_JUDGED;
		if (!(TCP_VALID_FLAGS_MASK & (1ULL << judged)))
			return REASON_INV_TCP_FLAGS;
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr uh;

		if (off + sizeof(uh) > l3_end || pkt_load(skb, off, &uh, sizeof(uh)))
			return REASON_INV_TRUNCATED_L4;
		p->t.sport = uh.source;
		p->t.dport = uh.dest;
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_: {
		struct icmp_hdr ih;
		int v6 = p->t.proto == IPPROTO_ICMPV6_;

		if (off + sizeof(ih) > l3_end || pkt_load(skb, off, &ih, sizeof(ih)))
			return REASON_INV_TRUNCATED_L4;
		p->icmp_type = ih.type;
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
	__u32 l3_end, frag;

	if (pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)))
		return REASON_INV_TRUNCATED_L3;
	if (ip.version != 4)
		return REASON_INV_IP_VERSION;
	if (ip.ihl < 5)
		return REASON_INV_IP_HEADER_LEN;
	p->l3_len = bpf_ntohs(ip.tot_len);
	if (p->l3_len < ip.ihl * 4)
		return REASON_INV_IP_TOTAL_LEN;
	if (ETH_HLEN + p->l3_len > skb->len)
		return REASON_INV_IP_TOTAL_LEN;
	l3_end = ETH_HLEN + p->l3_len;
	p->t.family = 4;
	p->t.proto = ip.protocol;
	p->t.saddr[0] = ip.saddr;
	p->t.daddr[0] = ip.daddr;
	p->l4_off = ETH_HLEN + ip.ihl * 4;

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
	__u32 off = ETH_HLEN + sizeof(ip6), l3_end;
	__u8 next;
	int i;

	if (pkt_load(skb, ETH_HLEN, &ip6, sizeof(ip6)))
		return REASON_INV_TRUNCATED_L3;
	if (ip6.version != 6)
		return REASON_INV_IP_VERSION;
	p->l3_len = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
	if (ETH_HLEN + p->l3_len > skb->len)
		return REASON_INV_IP_TOTAL_LEN;
	l3_end = ETH_HLEN + p->l3_len;
	p->t.family = 6;
	__builtin_memcpy(p->t.saddr, &ip6.saddr, 16);
	__builtin_memcpy(p->t.daddr, &ip6.daddr, 16);
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
