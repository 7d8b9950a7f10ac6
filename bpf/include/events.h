/* SPDX-License-Identifier: GPL-2.0 */
/* Connection events into the tsct_events ring buffer, written only while a
 * reader holds a lease (tsct_events_reader), as nf_conntrack builds events
 * only for its listeners. */
#ifndef TSCT_EVENTS_H
#define TSCT_EVENTS_H

#include "common.h"
#include "maps.h"
#include "metrics.h"
#include "packet.h"

/* Writes a connection event. A full ring never slows the datapath: the
 * event is dropped and counted (REASON_EVENT_LOST). */
static __always_inline int ct_event_write(__u8 type, const struct tuple *orig, const struct ct_entry *e, __u64 now)
{
	struct ct_event *ev = bpf_ringbuf_reserve(&tsct_events, sizeof(*ev), 0);

	if (!ev)
		return -1;
	ev->ts_ns = now;
	ev->type = type;
	ev->family = orig->family;
	ev->proto = orig->proto;
	__builtin_memcpy(ev->src, orig->saddr, 16);
	__builtin_memcpy(ev->dst, orig->daddr, 16);
	ev->sport = orig->sport;
	ev->dport = orig->dport;
	ev->packets[0] = e->packets[0];
	ev->packets[1] = e->packets[1];
	ev->bytes[0] = e->bytes[0];
	ev->bytes[1] = e->bytes[1];
	ev->flags = e->flags;
	ev->zone = e->zone;
	ev->tcp_state = e->tcp_state;
	ev->nat_port = e->nat_port;
	__builtin_memcpy(ev->nat_addr, e->nat_addr, 16);
	ev->timeout_s = e->expires_ns > now ? (e->expires_ns - now) / NSEC_PER_SEC : 0;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

static __always_inline void ct_event_emit(__u8 type, const struct tuple *orig, const struct ct_entry *e, __u64 now,
					  __u8 hook)
{
	if (ct_event_write(type, orig, e, now))
		metrics_count(REASON_EVENT_LOST, hook, 0);
}

static __always_inline int events_on(const struct tsct_config *cfg, __u32 flag)
{
	return cfg ? (cfg->flags & flag) != 0 : flag == CFG_F_EVENTS;
}

/* Whether a reader's lease on tsct_events runs past now. */
static __always_inline int events_read(__u64 now)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&tsct_events_reader, &zero);

	return until && *until > now;
}

#endif
