/* SPDX-License-Identifier: GPL-2.0 */
/* Fragments: the first fragment of a datagram records its ports
 * (tsct_frag4, tsct_frag6), so that the later ones, which carry no L4
 * header, find their connection. */
#ifndef TSCT_FRAG_H
#define TSCT_FRAG_H

#include "common.h"
#include "maps.h"
#include "packet.h"

static __always_inline __u32 frag4_ports(struct pkt *p, int record)
{
	struct frag4_key k = {
		.saddr = p->t.saddr[0],
		.daddr = p->t.daddr[0],
		.id = (__be16)p->frag_id,
		.proto = p->t.proto,
	};
	struct frag_ports fp = {.sport = p->t.sport, .dport = p->t.dport}, *found;

	if (record)
		return bpf_map_update_elem(&tsct_frag4, &k, &fp, BPF_ANY) ? REASON_INV_FRAG_BAD : 0;
	found = bpf_map_lookup_elem(&tsct_frag4, &k);
	if (!found)
		return REASON_INV_FRAG_UNKNOWN;
	p->t.sport = found->sport;
	p->t.dport = found->dport;
	return 0;
}

static __always_inline __u32 frag6_ports(struct pkt *p, int record)
{
	struct frag6_key k = {.id = p->frag_id, .proto = p->t.proto};
	struct frag_ports fp = {.sport = p->t.sport, .dport = p->t.dport}, *found;

	__builtin_memcpy(k.saddr, p->t.saddr, 16);
	__builtin_memcpy(k.daddr, p->t.daddr, 16);
	if (record)
		return bpf_map_update_elem(&tsct_frag6, &k, &fp, BPF_ANY) ? REASON_INV_FRAG_BAD : 0;
	found = bpf_map_lookup_elem(&tsct_frag6, &k);
	if (!found)
		return REASON_INV_FRAG_UNKNOWN;
	p->t.sport = found->sport;
	p->t.dport = found->dport;
	return 0;
}

#endif
