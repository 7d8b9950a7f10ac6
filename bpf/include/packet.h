/* SPDX-License-Identifier: GPL-2.0 */
/* What a parsed packet is: protocol numbers, header shapes, the tuple and
 * struct pkt that every stage reads, and the loaders that copy headers out of
 * an skb. Types only, so that maps.h (scratch maps) and every stage can share
 * them without pulling in the parser. */
#ifndef TSCT_PACKET_H
#define TSCT_PACKET_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include "common.h"

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
	__u8 icmp_code;
	__u8 pad;
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

#endif
