/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU packet and byte counters by reason and hook, summed in user space. */
#ifndef TSCT_METRICS_H
#define TSCT_METRICS_H

#include "maps.h"

/* Adds n packets (or events) and their bytes under a reason. */
static __always_inline void metrics_add(__u32 reason, enum tsct_hook hook, __u64 n, __u64 bytes)
{
	__u32 idx = ((reason & (REASON_MAX - 1)) << 1) | (hook & 1);
	struct metrics_value *v = bpf_map_lookup_elem(&tsct_metrics, &idx);

	if (v && n) {
		v->count += n;
		v->bytes += bytes;
	}
}

static __always_inline void metrics_count(__u32 reason, enum tsct_hook hook, __u32 bytes)
{
	metrics_add(reason, hook, 1, bytes);
}

#endif
