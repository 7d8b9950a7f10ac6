/* SPDX-License-Identifier: GPL-2.0 */
/* The runtime configuration the agent writes (tsct_config), and the timeouts
 * it gives each connection. Until the agent has written it, the compiled
 * defaults (enum tsct_default, common.h) apply. */
#ifndef TSCT_CONFIG_H
#define TSCT_CONFIG_H

#include "common.h"
#include "maps.h"
#include "packet.h"

static __always_inline struct tsct_config *config_get(void)
{
	__u32 zero = 0;
	struct tsct_config *c = bpf_map_lookup_elem(&tsct_config, &zero);

	return c && c->initialized ? c : 0;
}

static __always_inline __u32 config_flags(const struct tsct_config *cfg)
{
	return cfg ? cfg->flags : CFG_F_TCP_LOOSE;
}

static __always_inline __u32 default_tcp_timeout(__u8 state)
{
	switch (state) {
	case TCP_CT_SYN_SENT:
	case TCP_CT_SYN_SENT2:
		return DEFAULT_TIMEOUT_TCP_SYN_SENT;
	case TCP_CT_SYN_RECV:
		return DEFAULT_TIMEOUT_TCP_SYN_RECV;
	case TCP_CT_ESTABLISHED:
		return DEFAULT_TIMEOUT_TCP_ESTABLISHED;
	case TCP_CT_FIN_WAIT:
		return DEFAULT_TIMEOUT_TCP_FIN_WAIT;
	case TCP_CT_CLOSE_WAIT:
		return DEFAULT_TIMEOUT_TCP_CLOSE_WAIT;
	case TCP_CT_LAST_ACK:
		return DEFAULT_TIMEOUT_TCP_LAST_ACK;
	case TCP_CT_TIME_WAIT:
		return DEFAULT_TIMEOUT_TCP_TIME_WAIT;
	default:
		return DEFAULT_TIMEOUT_TCP_CLOSE;
	}
}

static __always_inline __u64 ct_timeout_ns(const struct tsct_config *cfg, __u8 proto, __u8 tcp_state)
{
	__u32 s = 0;

	if (proto == IPPROTO_TCP) {
		__u32 i = tcp_state;

		/* Hide i from clang so the bound check stays on the register
		 * that indexes the array. */
		asm volatile("" : "+r"(i));
		if (cfg && i < TCP_CT_MAX)
			s = cfg->timeout_tcp[i];
		if (!s)
			s = default_tcp_timeout(tcp_state);
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6_) {
		s = cfg ? cfg->timeout_icmp : 0;
		if (!s)
			s = DEFAULT_TIMEOUT_ICMP;
	} else {
		s = cfg ? cfg->timeout_any : 0;
		if (!s)
			s = DEFAULT_TIMEOUT_ANY;
	}
	return (__u64)s * NSEC_PER_SEC;
}

/* Slots in a table's ring of new connections: as many as the table has
 * entries (the agent writes each table's size). */
static __always_inline __u32 ring_size_of(const struct tsct_config *cfg, __u32 table)
{
	__u32 n = cfg && table < 4 ? cfg->ring_size[table & 3] : 0;

	if (n)
		return n;
	return table == CT_TABLE_TCP4 || table == CT_TABLE_TCP6 ? DEFAULT_CT_MAP_TCP : DEFAULT_CT_MAP_ANY;
}

#endif
