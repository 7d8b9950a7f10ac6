/* SPDX-License-Identifier: GPL-2.0 */
/* The connection tables: canonical keys, and which table (and eviction ring)
 * a connection of a family and protocol lives in, chosen in one place. */
#ifndef TSCT_CT_MAP_H
#define TSCT_CT_MAP_H

#include "common.h"
#include "maps.h"
#include "packet.h"

/* Canonical keys. The return value says whether the packet's source is
 * side b (the larger address and port). */
static __always_inline __u32 ct4_key_from(struct ct4_key *k, const struct tuple *t, __u16 zone)
{
	__u32 s = bpf_ntohl(t->saddr[0]), d = bpf_ntohl(t->daddr[0]);
	__u32 swap = s > d || (s == d && bpf_ntohs(t->sport) > bpf_ntohs(t->dport));

	k->addr_a = swap ? t->daddr[0] : t->saddr[0];
	k->addr_b = swap ? t->saddr[0] : t->daddr[0];
	k->port_a = swap ? t->dport : t->sport;
	k->port_b = swap ? t->sport : t->dport;
	k->proto = t->proto;
	k->pad = 0;
	k->zone = zone;
	return swap;
}

static __always_inline int addr6_cmp(const __be32 *a, const __be32 *b)
{
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 x = bpf_ntohl(a[i]), y = bpf_ntohl(b[i]);

		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

static __always_inline __u32 ct6_key_from(struct ct6_key *k, const struct tuple *t, __u16 zone)
{
	int c = addr6_cmp(t->saddr, t->daddr);
	__u32 swap = c > 0 || (c == 0 && bpf_ntohs(t->sport) > bpf_ntohs(t->dport));

	if (swap) {
		__builtin_memcpy(k->addr_a, t->daddr, 16);
		__builtin_memcpy(k->addr_b, t->saddr, 16);
	} else {
		__builtin_memcpy(k->addr_a, t->saddr, 16);
		__builtin_memcpy(k->addr_b, t->daddr, 16);
	}
	k->port_a = swap ? t->dport : t->sport;
	k->port_b = swap ? t->sport : t->dport;
	k->proto = t->proto;
	k->pad = 0;
	k->zone = zone;
	return swap;
}

static __always_inline __u32 ct_packet_dir(const struct ct_entry *e, __u32 src_is_b)
{
	__u32 orig_is_b = (e->flags & CT_F_ORIG_IS_B) != 0;

	return src_is_b == orig_is_b ? CT_DIR_ORIGINAL : CT_DIR_REPLY;
}

/* The table of a family and protocol (enum ct_table): TCP has its own, every
 * other protocol shares the "any" one. */
static __always_inline __u32 ct_table_for(__u32 family, __u8 proto)
{
	if (family == 4)
		return proto == IPPROTO_TCP ? CT_TABLE_TCP4 : CT_TABLE_ANY4;
	return proto == IPPROTO_TCP ? CT_TABLE_TCP6 : CT_TABLE_ANY6;
}

static __always_inline void *ct_map_for(__u32 family, __u8 proto)
{
	if (family == 4)
		return proto == IPPROTO_TCP ? (void *)&tsct_ct4_global : (void *)&tsct_ct_any4_global;
	return proto == IPPROTO_TCP ? (void *)&tsct_ct6_global : (void *)&tsct_ct_any6_global;
}

static __always_inline void *ct_ring_for(__u32 family, __u8 proto)
{
	if (family == 4)
		return proto == IPPROTO_TCP ? (void *)&tsct_ct4_ring : (void *)&tsct_ct_any4_ring;
	return proto == IPPROTO_TCP ? (void *)&tsct_ct6_ring : (void *)&tsct_ct_any6_ring;
}

/* A connection's tuple in its original direction, from its canonical key and
 * the entry's flag. */
static __always_inline void ct_orig_tuple(struct tuple *t, __u32 family, const void *key, const struct ct_entry *e)
{
	int b = (e->flags & CT_F_ORIG_IS_B) != 0;

	t->family = family;
	if (family == 4) {
		const struct ct4_key *k = key;

		t->saddr[0] = b ? k->addr_b : k->addr_a;
		t->daddr[0] = b ? k->addr_a : k->addr_b;
		t->sport = b ? k->port_b : k->port_a;
		t->dport = b ? k->port_a : k->port_b;
		t->proto = k->proto;
	} else {
		const struct ct6_key *k = key;

		__builtin_memcpy(t->saddr, b ? k->addr_b : k->addr_a, 16);
		__builtin_memcpy(t->daddr, b ? k->addr_a : k->addr_b, 16);
		t->sport = b ? k->port_b : k->port_a;
		t->dport = b ? k->port_a : k->port_b;
		t->proto = k->proto;
	}
}

/* The connection of a packet's tuple in a zone, or null. */
static __always_inline struct ct_entry *ct_find(const struct pkt *p, __u16 zone)
{
	if (p->t.family == 4) {
		struct ct4_key k;

		ct4_key_from(&k, &p->t, zone);
		return bpf_map_lookup_elem(ct_map_for(4, p->t.proto), &k);
	} else {
		struct ct6_key k;

		ct6_key_from(&k, &p->t, zone);
		return bpf_map_lookup_elem(ct_map_for(6, p->t.proto), &k);
	}
}
#endif
