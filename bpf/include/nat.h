/* SPDX-License-Identifier: GPL-2.0 */
/* Source NAT (masquerade) on chosen egress devices, and its reverse on the
 * way back in, before the connection lookup. TCP and UDP ports and ICMP echo
 * identifiers are translated; ICMP errors about a translated connection have
 * their outer and inner headers translated back. Every checksum is updated
 * incrementally. */
#ifndef TSCT_NAT_H
#define TSCT_NAT_H

#include "common.h"
#include "config.h"
#include "csum.h"
#include "ct_map.h"
#include "maps.h"
#include "metrics.h"
#include "packet.h"
#include "conntrack.h" /* struct ct_io */

/* nf_nat's probing: up to 128 candidates from a random offset, then half as
 * many from a new offset, down to 16. */
#define NAT_FIRST_ROUND 128
#define NAT_LAST_ROUND	16
#define NAT_MAX_TRIES	(128 + 64 + 32 + 16)

#ifndef BPF_F_MARK_MANGLED_0
#define BPF_F_MARK_MANGLED_0 (1ULL << 5)
#endif

/* The port (or echo identifier) field of an L4 header: `src` picks the source. */
static __always_inline __u32 l4_port_off(__u8 proto, __u32 l4, int src)
{
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6_)
		return l4 + 4;
	return src ? l4 : l4 + 2;
}

/* Rewrites an address (4 or 16 bytes) at addr_off and fixes the IPv4 header
 * checksum and the L4 checksum (pseudo-header) of the packet, through the skb
 * helpers. Returns 0, REASON_DROP_CSUM or REASON_DROP_WRITE_ERROR. */
static __always_inline __u32 rewrite_addr(struct __sk_buff *skb, const struct pkt *p, __u32 addr_off,
					  const __be32 *from, const __be32 *to)
{
	__u32 csum_off = 0;
	int has_l4 = p->frag != FRAG_LATER && l4_csum_off(p->t.proto, p->l4_off, &csum_off);

	if (p->t.family == 4) {
		if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, from[0], to[0], 4))
			return REASON_DROP_CSUM;
		/* ICMPv4 has no pseudo-header; UDP over IPv4 may have no checksum. */
		if (has_l4 && p->t.proto != IPPROTO_ICMP) {
			__u16 cur = 0;

			if (p->t.proto == IPPROTO_UDP && (pkt_load(skb, csum_off, &cur, 2) || !cur))
				has_l4 = 0;
			if (has_l4 &&
			    bpf_l4_csum_replace(skb, csum_off, from[0], to[0],
						BPF_F_PSEUDO_HDR | 4 |
							(p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0)))
				return REASON_DROP_CSUM;
		}
		return bpf_skb_store_bytes(skb, addr_off, to, 4, 0) ? REASON_DROP_WRITE_ERROR : 0;
	}
	if (has_l4) {
		__s64 diff = bpf_csum_diff((__be32 *)from, 16, (__be32 *)to, 16, 0);

		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR))
			return REASON_DROP_CSUM;
	}
	return bpf_skb_store_bytes(skb, addr_off, to, 16, 0) ? REASON_DROP_WRITE_ERROR : 0;
}

/* Rewrites a port (or echo identifier) and the L4 checksum over it. Returns
 * 0, REASON_DROP_CSUM or REASON_DROP_WRITE_ERROR. */
static __always_inline __u32 rewrite_port(struct __sk_buff *skb, const struct pkt *p, int src, __be16 from, __be16 to)
{
	__u32 csum_off = 0;

	if (from == to || p->frag == FRAG_LATER)
		return 0;
	if (l4_csum_off(p->t.proto, p->l4_off, &csum_off)) {
		__u16 cur = 1;

		if (p->t.family == 4 && p->t.proto == IPPROTO_UDP && (pkt_load(skb, csum_off, &cur, 2) || !cur))
			cur = 0;
		if (cur && bpf_l4_csum_replace(skb, csum_off, from, to,
					       2 | (p->t.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0)))
			return REASON_DROP_CSUM;
	}
	return bpf_skb_store_bytes(skb, l4_port_off(p->t.proto, p->l4_off, src), &to, 2, 0) ? REASON_DROP_WRITE_ERROR
											    : 0;
}

/* Rewrites one address and port (source or destination) of a TCP, UDP, ICMP
 * or ICMPv6 packet in place (data..data_end: the Ethernet frame), with the
 * checksums computed here (RFC 1624) instead of through four skb helpers: the
 * path every packet of a translated connection takes. Returns -1, leaving the packet untouched, when the headers
 * are not in the linear data; the helpers then do it. */
static __always_inline int nat_rewrite_at(void *data, void *data_end, const struct pkt *p, int src,
					  const __be32 *to_addr, __be16 to_port)
{
	__u64 off = p->l4_off;
	__u8 proto = p->t.proto;
	int v4 = p->t.family == 4;
	__be16 *port, *sum = 0;
	__u16 c;
	int i;

	asm volatile("%0 &= 0x3ff" : "+r"(off));
	if (p->frag == FRAG_LATER || data + off + 20 > data_end)
		return -1;
	switch (proto) {
	case IPPROTO_TCP:
		sum = data + off + 16;
		port = data + off + (src ? 0 : 2);
		break;
	case IPPROTO_UDP:
		sum = data + off + 6;
		port = data + off + (src ? 0 : 2);
		if (v4 && !*sum)
			sum = 0; /* no UDP checksum: it stays none */
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		sum = data + off + 2;
		port = data + off + 4;
		break;
	default:
		return -1;
	}
	if (v4) {
		struct iphdr *ip = data + ETH_HLEN;
		__be32 *addr;
		__be32 from;

		if ((void *)(ip + 1) > data_end)
			return -1;
		addr = src ? &ip->saddr : &ip->daddr;
		from = *addr;
		ip->check = csum_replace32(ip->check, from, to_addr[0]);
		if (sum) {
			c = *sum;
			if (proto != IPPROTO_ICMP) /* ICMPv4 has no pseudo-header */
				c = csum_replace32(c, from, to_addr[0]);
			c = csum_replace16(c, *port, to_port);
			*sum = (proto == IPPROTO_UDP && !c) ? 0xffff : c;
		}
		*addr = to_addr[0];
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;
		__be32 *addr;

		if ((void *)(ip6 + 1) > data_end || !sum)
			return -1;
		addr = src ? (__be32 *)&ip6->saddr : (__be32 *)&ip6->daddr;
		c = *sum;
#pragma unroll
		for (i = 0; i < 4; i++) {
			c = csum_replace32(c, addr[i], to_addr[i]);
			addr[i] = to_addr[i];
		}
		c = csum_replace16(c, *port, to_port);
		*sum = (proto == IPPROTO_UDP && !c) ? 0xffff : c;
	}
	*port = to_port;
	return 0;
}

/* Rewrites the source (src) or destination address and port of a packet:
 * in place with the checksums computed here when the headers are in the
 * linear data, through the skb helpers otherwise. Returns 0 or the drop
 * reason. */
static __always_inline __u32 nat_rewrite_skb(struct __sk_buff *skb, const struct pkt *p, int src, const __be32 *to_addr,
					     __be16 to_port)
{
	int v6 = p->t.family == 6;
	__u32 reason;

	if (!nat_rewrite_at(ctx_data(skb), ctx_data_end(skb), p, src, to_addr, to_port))
		return 0;
	reason = rewrite_addr(skb, p, src ? (v6 ? IP6_SADDR_OFF : IP4_SADDR_OFF) : (v6 ? IP6_DADDR_OFF : IP4_DADDR_OFF),
			      src ? p->t.saddr : p->t.daddr, to_addr);
	if (reason)
		return reason;
	return rewrite_port(skb, p, src, src ? p->t.sport : p->t.dport, to_port);
}

static __always_inline int nat_proto_ok(const struct pkt *p)
{
	return p->t.proto == IPPROTO_TCP || p->t.proto == IPPROTO_UDP ||
	       ((p->t.proto == IPPROTO_ICMP || p->t.proto == IPPROTO_ICMPV6_) && p->kind != PKT_ICMP_ERROR);
}

static __always_inline void nat4_key_of(struct nat4_key *k, const struct tuple *t, __u8 dir)
{
	k->saddr = t->saddr[0];
	k->daddr = t->daddr[0];
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->dir = dir;
	k->pad = 0;
}

static __always_inline void nat6_key_of(struct nat6_key *k, const struct tuple *t, __u8 dir)
{
	__builtin_memcpy(k->saddr, t->saddr, 16);
	__builtin_memcpy(k->daddr, t->daddr, 16);
	k->sport = t->sport;
	k->dport = t->dport;
	k->proto = t->proto;
	k->dir = dir;
	k->pad = 0;
}

/* Port allocation state, for bpf_loop. The IN entry claims the port: it is
 * inserted with BPF_NOEXIST, so two CPUs can never hand out the same one. */
struct nat_alloc {
	union {
		struct nat6_key in6;
		struct nat4_key in4;
	};
	struct nat_entry in_val;
	__u32 min;
	__u32 range;
	__u32 off;
	__u32 attempts;
	__u32 i;
	__u32 retries;
	__u16 port; /* host order; 0: none found */
	__u8 v6;
	__u8 table_full;
	/* ICMP echo: the identifier is both "ports" of the reply's key. */
	__u8 icmp;
};

/* Completes the IN key with the port it claims (ICMP echo: the identifier
 * is both of the reply's "ports"). */
static __always_inline void nat_alloc_port(struct nat_alloc *a, __u16 port)
{
	if (a->v6) {
		a->in6.dport = bpf_htons(port);
		if (a->icmp)
			a->in6.sport = a->in6.dport;
	} else {
		a->in4.dport = bpf_htons(port);
		if (a->icmp)
			a->in4.sport = a->in4.dport;
	}
}

/* Whether an IN entry maps back to the source a is mapping. */
static __always_inline int nat_same_source(const struct nat_entry *cur, const struct nat_alloc *a)
{
	return cur->to_port == a->in_val.to_port && cur->zone == a->in_val.zone &&
	       !addr6_cmp(cur->to_addr, a->in_val.to_addr);
}

/* The table an allocation's IN entry goes to, and its key there. */
static __always_inline void *nat_in_map(const struct nat_alloc *a)
{
	return a->v6 ? (void *)&tsct_snat_v6_external : (void *)&tsct_snat_v4_external;
}

static __always_inline void *nat_in_key(struct nat_alloc *a)
{
	return a->v6 ? (void *)&a->in6 : (void *)&a->in4;
}

static __always_inline int nat_claim(struct nat_alloc *a, __u16 port)
{
	void *map = nat_in_map(a);
	void *key = nat_in_key(a);
	struct nat_entry *cur;
	long rc;

	nat_alloc_port(a, port);
	rc = bpf_map_update_elem(map, key, &a->in_val, BPF_NOEXIST);
	if (rc == -EEXIST) {
		/* Taken by this very source: a connection reopened on the same
		 * tuple, or another CPU mapping the same new connection. It
		 * keeps the port rather than take a second one. */
		cur = bpf_map_lookup_elem(map, key);
		return cur && nat_same_source(cur, a);
	}
	if (rc)
		a->table_full = 1;
	return rc == 0;
}

static long nat_try_port(__u32 idx, struct nat_alloc *a)
{
	__u16 port;

	if (!a->range || a->table_full)
		return 1;
	port = a->min + (a->off + a->i) % a->range;
	if (nat_claim(a, port)) {
		a->port = port;
		return 1;
	}
	a->retries++;
	if (++a->i >= a->attempts) {
		if (a->attempts >= a->range || a->attempts < NAT_LAST_ROUND * 2)
			return 1;
		a->attempts /= 2;
		a->i = 0;
		a->off = bpf_get_prandom_u32();
	}
	return 0;
}

/* Whether a source is to be masqueraded on this device. */
static __always_inline int masq_source(const struct tuple *t, const struct device_info *dev,
				       const struct tsct_config *cfg)
{
	if (t->family == 4) {
		struct masq4_key k = {.prefixlen = 32, .addr = t->saddr[0]};

		if (t->saddr[0] == dev->snat4)
			return 0;
		if (cfg && (cfg->flags & CFG_F_MASQ_ALL_SOURCES))
			return 1;
		return bpf_map_lookup_elem(&tsct_masq_src4, &k) != 0;
	} else {
		struct masq6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, t->saddr, 16);
		if (!addr6_cmp(t->saddr, dev->snat6))
			return 0;
		if (cfg && (cfg->flags & CFG_F_MASQ_ALL_SOURCES))
			return 1;
		return bpf_map_lookup_elem(&tsct_masq_src6, &k) != 0;
	}
}

/* The NAT stage's interface is struct nat_io (maps.h). */

/* Whether a packet arriving on a device that does not masquerade may be a
 * reply to a translated connection all the same: one to the device's own
 * address (full NAT) or to the service loopback address (hairpin). A compare,
 * so that other traffic pays no NAT lookup. */
static __always_inline int nat_to_node(const struct pkt *p, const struct device_info *dev,
				       const struct tsct_config *cfg)
{
	if (p->t.family == 4)
		return (dev->snat4 && p->t.daddr[0] == dev->snat4) ||
		       (cfg && cfg->lb_loopback4 && p->t.daddr[0] == cfg->lb_loopback4);
	return !addr6_cmp(p->t.daddr, dev->snat6) && (dev->snat6[0] | dev->snat6[1] | dev->snat6[2] | dev->snat6[3]);
}

/* The translation the tracker found on the packet's connection. */
static __always_inline void nat_io_from_ct(struct nat_io *io, const struct ct_io *cio)
{
	__builtin_memcpy(io->to_addr, cio->nat_addr, 16);
	io->to_port = cio->nat_port;
}

/* The IN entry of a new mapping of tuple t to snat: a reply's key, the
 * original source as its value. */
static __always_inline void nat_alloc_init(struct nat_alloc *a, const struct tuple *t, const __be32 *snat, __u16 zone,
					   __u64 now)
{
	a->v6 = t->family == 6;
	a->icmp = t->proto == IPPROTO_ICMP || t->proto == IPPROTO_ICMPV6_;
	a->in_val.created_ns = now;
	a->in_val.needs_ct = 1;
	__builtin_memcpy(a->in_val.to_addr, t->saddr, 16);
	a->in_val.to_port = t->sport;
	a->in_val.zone = zone;
	if (a->v6) {
		__builtin_memcpy(a->in6.saddr, t->daddr, 16);
		__builtin_memcpy(a->in6.daddr, snat, 16);
		a->in6.sport = t->dport;
		a->in6.proto = t->proto;
		a->in6.dir = NAT_DIR_IN;
	} else {
		a->in4.saddr = t->daddr[0];
		a->in4.daddr = snat[0];
		a->in4.sport = t->dport;
		a->in4.proto = t->proto;
		a->in4.dir = NAT_DIR_IN;
	}
}

/* Finds or creates the mapping of a packet leaving by a masquerading device;
 * the rewrite is the caller's (tc and XDP write packets differently).
 *
 * The mapping lives in the connection's entry (nat_addr, nat_port, CT_F_SNAT),
 * as nf_conntrack keeps its NAT binding in the conntrack: a packet of a
 * translated connection is translated from what the tracker's lookup
 * returned, with no lookup here. The NAT table holds only the reverse index
 * (the IN entries) that replies are looked up by; a new mapping claims its
 * port by inserting that entry. */
static __always_inline __u32 nat_snat_map(struct pkt *p, const struct device_info *dev, const struct tsct_config *cfg,
					  struct nat_io *io)
{
	struct ct_entry *entry;
	struct nat_alloc a = {};
	__be32 snat[4] = {};
	__u16 orig_port;

	if ((io->ct_state & (CT_STATE_INV | CT_STATE_REL)) || io->ct_dir != CT_DIR_ORIGINAL ||
	    (!io->force && !masq_source(&p->t, dev, cfg)))
		return 0;
	/* Passed untracked (a full table, CFG_F_CT_FULL_PASS): a mapping would
	 * have no connection to live in, and one made per packet would leak. */
	if (!(io->ct_state & CT_STATE_TRK))
		return nat_proto_ok(p) ? REASON_DROP_NAT_NO_CT : 0;
	if (!nat_proto_ok(p)) {
		metrics_count(REASON_NAT_UNSUPPORTED, HOOK_EGRESS, 0);
		return 0;
	}
	if ((io->ct_state & CT_STATE_SNAT) && io->to_port) {
		io->xlate = 1;
		return 0;
	}

	/* A new mapping, recorded in the connection, which the tracker has just
	 * found or made: without it there is nowhere to keep the mapping. */
	entry = ct_find(p, io->zone);
	if (!entry)
		return REASON_DROP_NAT_NO_CT;
	if (p->t.family == 6)
		__builtin_memcpy(snat, dev->snat6, 16);
	else
		snat[0] = dev->snat4;
	nat_alloc_init(&a, &p->t, snat, io->zone, io->now);
	a.min = cfg && cfg->nat_port_min ? cfg->nat_port_min : DEFAULT_NAT_PORT_MIN;
	a.range = (cfg && cfg->nat_port_max ? cfg->nat_port_max : DEFAULT_NAT_PORT_MAX) - a.min + 1;
	orig_port = bpf_ntohs(p->t.sport);
	/* A connection whose mapping was flushed keeps its port if it can. */
	if (entry->nat_port && nat_claim(&a, bpf_ntohs(entry->nat_port))) {
		a.port = bpf_ntohs(entry->nat_port);
		metrics_count(REASON_NAT_RECREATED, HOOK_EGRESS, 0);
	} else if ((!cfg || !(cfg->flags & CFG_F_NAT_RANGE_STRICT) ||
		    (orig_port >= a.min && orig_port < a.min + a.range)) &&
		   orig_port && nat_claim(&a, orig_port)) {
		a.port = orig_port;
	} else if (!a.table_full) {
		a.attempts = a.range < NAT_FIRST_ROUND ? a.range : NAT_FIRST_ROUND;
		a.off = bpf_get_prandom_u32();
		bpf_loop(NAT_MAX_TRIES, nat_try_port, &a, 0);
	}
	if (a.retries)
		metrics_count(REASON_NAT_PORT_RETRY, HOOK_EGRESS, a.retries);
	if (!a.port)
		return a.table_full ? REASON_DROP_NAT_TABLE_FULL : REASON_DROP_NAT_PORT_EXHAUSTED;
	metrics_count(REASON_NAT_NEW, HOOK_EGRESS, 0);

	/* The translation before the flag: whoever sees +snat finds it. Two CPUs
	 * mapping the same new connection at once both get here: on its original
	 * port they share one IN entry (nat_claim); probing, they may take two
	 * ports, and then the last writer's mapping stays and the orphan sweep
	 * removes the other's IN entry. */
	__builtin_memcpy(entry->nat_addr, snat, 16);
	entry->nat_port = bpf_htons(a.port);
	if (!(entry->flags & CT_F_SNAT))
		__sync_fetch_and_or(&entry->flags, CT_F_SNAT);

	io->ct_state |= CT_STATE_SNAT;
	__builtin_memcpy(io->to_addr, snat, 16);
	io->to_port = bpf_htons(a.port);
	io->xlate = 1;
	return 0;
}

/* An ICMP error about a translated connection, arriving for the NAT address:
 * the inner packet (as we sent it: from the NAT address and port) and the
 * outer destination go back to the original client. Every checksum the
 * change touches is fixed: the outer IPv4 header, the inner IPv4 header, the
 * inner UDP or TCP checksum when quoted, and the ICMP checksum over it all. */
static __always_inline __u32 nat_rev_icmp_error(struct __sk_buff *skb, struct pkt *p, struct nat_io *io)
{
	struct tuple *in = &p->inner;
	struct nat_entry *e;
	__u32 icmp_csum = p->l4_off + 2;
	__u32 inner_ip = p->l4_off + sizeof(struct icmp_hdr);
	__u32 inner_l4, inner_csum_off = 0;
	__be16 old_port = in->sport, new_port;
	int v6 = p->t.family == 6;

	if (!(in->proto == IPPROTO_TCP || in->proto == IPPROTO_UDP || in->proto == IPPROTO_ICMP ||
	      in->proto == IPPROTO_ICMPV6_))
		return 0;
	if (v6) {
		struct nat6_key k;

		__builtin_memcpy(k.saddr, in->daddr, 16);
		__builtin_memcpy(k.daddr, in->saddr, 16);
		k.sport = in->dport;
		k.dport = in->sport;
		k.proto = in->proto;
		k.dir = NAT_DIR_IN;
		k.pad = 0;
		e = bpf_map_lookup_elem(&tsct_snat_v6_external, &k);
		inner_l4 = inner_ip + sizeof(struct ipv6hdr);
	} else {
		struct nat4_key k = {
			.saddr = in->daddr[0],
			.daddr = in->saddr[0],
			.sport = in->dport,
			.dport = in->sport,
			.proto = in->proto,
			.dir = NAT_DIR_IN,
		};
		struct iphdr ih;

		e = bpf_map_lookup_elem(&tsct_snat_v4_external, &k);
		if (!e || pkt_load(skb, inner_ip, &ih, sizeof(ih)))
			return 0;
		inner_l4 = inner_ip + ih.ihl * 4;
		/* Inner IPv4 header: source address and its checksum. */
		{
			__u16 new_check = csum_replace32(ih.check, in->saddr[0], e->to_addr[0]);

			if (bpf_skb_store_bytes(skb, inner_ip + 12, e->to_addr, 4, 0) ||
			    bpf_skb_store_bytes(skb, inner_ip + 10, &new_check, 2, 0) ||
			    bpf_l4_csum_replace(skb, icmp_csum, in->saddr[0], e->to_addr[0], 4) ||
			    bpf_l4_csum_replace(skb, icmp_csum, ih.check, new_check, 2))
				return REASON_INV_ICMP_ERROR_TRUNCATED;
		}
	}
	if (!e)
		return 0;
	new_port = e->to_port;

	if (v6) {
		__s64 diff = bpf_csum_diff(in->saddr, 16, e->to_addr, 16, 0);

		if (diff < 0 || bpf_skb_store_bytes(skb, inner_ip + 8, e->to_addr, 16, 0) ||
		    bpf_l4_csum_replace(skb, icmp_csum, 0, diff, 0))
			return REASON_INV_ICMP_ERROR_TRUNCATED;
	}
	/* The quoted L4 checksum, when the error quotes it. */
	if (in->proto == IPPROTO_UDP)
		inner_csum_off = inner_l4 + 6;
	else if (in->proto == IPPROTO_TCP && skb->len >= inner_l4 + 18)
		inner_csum_off = inner_l4 + 16;
	if (inner_csum_off) {
		__u16 old_sum = 0, new_sum;

		if (!pkt_load(skb, inner_csum_off, &old_sum, 2) && old_sum) {
			new_sum = csum_replace16(old_sum, old_port, new_port);
			if (v6) {
				int i;

#pragma unroll
				for (i = 0; i < 4; i++)
					new_sum = csum_replace32(new_sum, in->saddr[i], e->to_addr[i]);
			} else {
				new_sum = csum_replace32(new_sum, in->saddr[0], e->to_addr[0]);
			}
			if (bpf_skb_store_bytes(skb, inner_csum_off, &new_sum, 2, 0) ||
			    bpf_l4_csum_replace(skb, icmp_csum, old_sum, new_sum, 2))
				return REASON_INV_ICMP_ERROR_TRUNCATED;
		}
	}
	/* The quoted source port (or echo identifier). */
	if (old_port != new_port) {
		__u32 at = (in->proto == IPPROTO_ICMP || in->proto == IPPROTO_ICMPV6_) ? inner_l4 + 4 : inner_l4;

		if (bpf_skb_store_bytes(skb, at, &new_port, 2, 0) ||
		    bpf_l4_csum_replace(skb, icmp_csum, old_port, new_port, 2))
			return REASON_INV_ICMP_ERROR_TRUNCATED;
	}
	/* The outer destination: IPv4 header checksum; for ICMPv6, its pseudo-header. */
	if (v6) {
		__s64 diff = bpf_csum_diff(p->t.daddr, 16, e->to_addr, 16, 0);

		if (diff < 0 || bpf_l4_csum_replace(skb, icmp_csum, 0, diff, BPF_F_PSEUDO_HDR) ||
		    bpf_skb_store_bytes(skb, IP6_DADDR_OFF, e->to_addr, 16, 0))
			return REASON_INV_ICMP_ERROR_TRUNCATED;
	} else if (bpf_l3_csum_replace(skb, IP4_CSUM_OFF, p->t.daddr[0], e->to_addr[0], 4) ||
		   bpf_skb_store_bytes(skb, IP4_DADDR_OFF, e->to_addr, 4, 0)) {
		return REASON_INV_ICMP_ERROR_TRUNCATED;
	}
	__builtin_memcpy(in->saddr, e->to_addr, 16);
	in->sport = new_port;
	__builtin_memcpy(p->t.daddr, e->to_addr, 16);
	io->zone = e->zone;
	metrics_count(REASON_NAT_RELATED, HOOK_INGRESS, 0);
	return 0;
}

/* Ingress on a masquerading device, before the connection lookup: a reply to
 * a translated connection gets its original destination back. This finds
 * the translation (read only); nat_rev applies it to an skb. */
static __always_inline __u32 nat_rev_map(struct pkt *p, struct nat_io *io)
{
	struct nat_entry *e;
	int v6 = p->t.family == 6;

	if (!nat_proto_ok(p) || p->frag == FRAG_LATER)
		return 0;
	if (v6) {
		struct nat6_key k;

		nat6_key_of(&k, &p->t, NAT_DIR_IN);
		e = bpf_map_lookup_elem(&tsct_snat_v6_external, &k);
	} else {
		struct nat4_key k;

		nat4_key_of(&k, &p->t, NAT_DIR_IN);
		e = bpf_map_lookup_elem(&tsct_snat_v4_external, &k);
	}
	if (!e)
		return 0;
	__builtin_memcpy(io->to_addr, e->to_addr, 16);
	io->to_port = e->to_port;
	io->zone = e->zone;
	io->xlate = 1;
	return 0;
}

/* The packet's tuple once its destination is translated back. */
static __always_inline void nat_rev_tuple(struct pkt *p, const struct nat_io *io)
{
	__builtin_memcpy(p->t.daddr, io->to_addr, 16);
	if (p->t.proto == IPPROTO_ICMP || p->t.proto == IPPROTO_ICMPV6_)
		p->t.sport = io->to_port;
	p->t.dport = io->to_port;
}

static __always_inline __u32 nat_rev(struct __sk_buff *skb, struct pkt *p, struct nat_io *io)
{
	__u32 reason;

	if (p->kind == PKT_ICMP_ERROR)
		return nat_rev_icmp_error(skb, p, io);
	reason = nat_rev_map(p, io);
	if (reason || !io->xlate)
		return reason;
	reason = nat_rewrite_skb(skb, p, 0, io->to_addr, io->to_port);
	if (reason)
		return reason;
	nat_rev_tuple(p, io);
	metrics_count(REASON_NAT_REVSNAT, HOOK_INGRESS, 0);
	return 0;
}

/* The NAT stages, as global functions: verified once each, on their own,
 * rather than along every path of the tracker that leads to them. Return 0
 * or a reason (an invalid one on ingress, a drop on egress). */
__attribute__((noinline)) int tsct_snat_map(struct pkt *p, struct nat_io *io)
{
	if (!p || !io)
		return 0;
	io->xlate = 0;
	if (!(io->dev.flags & DEVICE_F_MASQUERADE) && !io->force)
		return 0;
	return nat_snat_map(p, &io->dev, config_get(), io);
}

/* Applies the translation tsct_snat_map found to an skb (a separate global
 * function: nested in the other, their frames would not fit the stack). */
__attribute__((noinline)) int tsct_snat_rewrite(struct __sk_buff *skb, struct pkt *p, struct nat_io *io)
{
	__u32 reason;

	if (!skb || !p || !io || !io->xlate)
		return 0;
	reason = nat_rewrite_skb(skb, p, 1, io->to_addr, io->to_port);
	if (reason)
		return reason;
	metrics_count(REASON_NAT_SNAT, HOOK_EGRESS, 0);
	return 0;
}

__attribute__((noinline)) int tsct_nat_ingress(struct __sk_buff *skb, struct pkt *p, struct nat_io *io)
{
	if (!skb || !p || !io)
		return 0;
	io->xlate = 0;
	return nat_rev(skb, p, io);
}

/* The IN entry of a translated connection, from its canonical key and its
 * entry: the key a reply is looked up by, and the value it maps back to. */
static __always_inline void nat_alloc_of_ct(struct nat_alloc *a, __u32 family, const void *key,
					    const struct ct_entry *e, __u64 now)
{
	struct tuple t = {};

	ct_orig_tuple(&t, family, key, e);
	nat_alloc_init(a, &t, e->nat_addr, e->zone, now);
	nat_alloc_port(a, bpf_ntohs(e->nat_port));
}

/* Removes a translated connection's IN entry, with the connection. Returns 1
 * when it was there. */
static __always_inline int nat_delete_for_ct(__u32 family, const void *key, const struct ct_entry *e)
{
	struct nat_alloc a = {};

	nat_alloc_of_ct(&a, family, key, e, 0);
	return bpf_map_delete_elem(nat_in_map(&a), nat_in_key(&a)) == 0;
}

/* What the GC found of a live translated connection's IN entry. */
enum nat_keep_result {
	NAT_KEPT = 0,
	NAT_PUT_BACK = 1, /* lost, and put back */
	NAT_LOST = 2,	  /* lost, and its port taken since: the connection gives up its mapping */
};

/* A live translated connection keeps its IN entry: one lost (deleted by
 * hand, or by a race with the orphan sweep) is put back, so that replies find
 * their way again; when its port has meanwhile gone to another connection,
 * the caller clears CT_F_SNAT, and the connection's next packet out takes a
 * new mapping. */
static __always_inline int nat_keep_for_ct(__u32 family, const void *key, const struct ct_entry *e, __u64 now)
{
	struct nat_alloc a = {};
	struct nat_entry *cur;

	nat_alloc_of_ct(&a, family, key, e, now);
	cur = bpf_map_lookup_elem(nat_in_map(&a), nat_in_key(&a));
	if (cur && nat_same_source(cur, &a))
		return NAT_KEPT;
	if (!cur && bpf_map_update_elem(nat_in_map(&a), nat_in_key(&a), &a.in_val, BPF_NOEXIST) == 0)
		return NAT_PUT_BACK;
	return NAT_LOST;
}

/* Makes a connection forget its mapping (CT_F_SNAT cleared; the port stays
 * recorded, so that its next packet out takes it again while it is free),
 * when it still carries the one given. */
static __always_inline int nat_forget(struct nat_forget_args *a)
{
	struct ct_entry *e;
	__u8 proto = a->family == 4 ? a->key.k4.proto : a->key.k6.proto;

	e = bpf_map_lookup_elem(ct_map_for(a->family, proto), a->family == 4 ? (void *)&a->key.k4 : (void *)&a->key.k6);
	if (!e || !(e->flags & CT_F_SNAT) || e->nat_port != a->nat_port || addr6_cmp(e->nat_addr, a->nat_addr))
		return 0;
	__sync_fetch_and_and(&e->flags, ~CT_F_SNAT);
	return 1;
}
#endif
