/* SPDX-License-Identifier: GPL-2.0 */
/* Checksums: one's complement arithmetic on raw (network order) words for
 * rewrites made in place (RFC 1624), and where each header keeps its
 * checksum. */
#ifndef TSCT_CSUM_H
#define TSCT_CSUM_H

#include "common.h"
#include "packet.h"

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

/* Offsets in an Ethernet frame of the IP header fields NAT rewrites. */
#define IP4_CSUM_OFF  (ETH_HLEN + offsetof(struct iphdr, check))
#define IP4_SADDR_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP4_DADDR_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))
#define IP6_SADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, saddr))
#define IP6_DADDR_OFF (ETH_HLEN + offsetof(struct ipv6hdr, daddr))

/* One's complement arithmetic on raw (network order) 16-bit words. */
static __always_inline __u16 csum_fold(__u32 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to)
{
	/* RFC 1624: HC' = ~(~HC + ~m + m') */
	return csum_fold((__u32)(__u16)~check + (__u16)~from + to);
}

static __always_inline __u16 csum_replace32(__u16 check, __be32 from, __be32 to)
{
	check = csum_replace16(check, (__u16)from, (__u16)to);
	return csum_replace16(check, (__u16)(from >> 16), (__u16)(to >> 16));
}

/* Offset of an L4 checksum, and whether it is there to update. */
static __always_inline int l4_csum_off(__u8 proto, __u32 l4, __u32 *off)
{
	switch (proto) {
	case IPPROTO_TCP:
		*off = l4 + offsetof(struct tcphdr, check);
		return 1;
	case IPPROTO_UDP:
		*off = l4 + offsetof(struct udphdr, check);
		return 1;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		*off = l4 + offsetof(struct icmp_hdr, checksum);
		return 1;
	}
	return 0;
}

#endif
