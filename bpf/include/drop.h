/* SPDX-License-Identifier: GPL-2.0 */
/* Every packet the datapath drops goes through one of these: the drop is
 * counted under its named reason (a REASON_DROP_*) in the hook it happened
 * in, and the verdict returned, so that no drop goes uncounted and no count
 * names the wrong cause. */
#ifndef TSCT_DROP_H
#define TSCT_DROP_H

#include "common.h"
#include "metrics.h"

/* Reasons from 128 up are drops (enum tsct_reason). */
static __always_inline int reason_is_drop(__u32 reason)
{
	return reason >= REASON_DROP_INVALID && reason < REASON_MAX;
}

static __always_inline int tc_drop(struct __sk_buff *skb, __u32 reason, enum tsct_hook hook)
{
	metrics_count(reason, hook, skb->len);
	return TC_ACT_SHOT;
}

/* XDP runs before any hook of the stack: its drops count under ingress. */
static __always_inline int xdp_drop(__u32 reason, __u32 bytes)
{
	metrics_count(reason, HOOK_INGRESS, bytes);
	return XDP_DROP;
}

#endif
