// SPDX-License-Identifier: GPL-2.0
/* The tsct datapath's entry points: the tc programs for the ingress and
 * egress of each managed device (pipeline.h), the optional XDP fast path in
 * front of them (xdp.h), and the SEC("syscall") programs the agent and the
 * CLI run (gc.h). */
#include "common.h"
#include "maps.h"
#include "gc.h"
#include "pipeline.h"
#include "xdp.h"

/* Keeps the enums in the object's BTF for the TypeScript layout generator. */
struct tsct_btf_anchor {
	enum ct_state_bit ct_state;
	enum ct_dir dir;
	enum tsct_hook hook;
	enum tcp_ct_state tcp_state;
	enum tsct_reason reason;
	enum ct_entry_flag entry_flag;
	enum tsct_config_flag config_flag;
	enum tsct_cb_slot cb_slot;
	enum ct_table table;
	enum device_flag device_flag;
	enum nat_dir nat_dir;
	enum ct_event_type event_type;
	enum tsct_default dflt;
	enum lb_algorithm lb_algorithm;
	enum lb_service_flag lb_service_flag;
	enum lb_backend_state lb_backend_state;
	enum lb_member_flag lb_member_flag;
	enum lb_snat_kind lb_snat_kind;
	enum fw_limit fw_limit;
	enum fw_hook_index fw_hook_index;
	enum fw_action fw_action;
	enum fw_field fw_field;
	enum fw_check_op fw_check_op;
	enum fw_commit_flag fw_commit_flag;
	enum fw_control_flag fw_control_flag;
	enum fw_ct_op fw_ct_op;
	enum fw_cache_bit fw_cache_bit;
	/* Written only through bpf_ringbuf_reserve: not otherwise in BTF. */
	struct ct_event ct_event;
	struct nat_forget_args nat_forget_args;
};
const volatile struct tsct_btf_anchor tsct_btf_anchor;

SEC("tc")
int tsct_ingress(struct __sk_buff *skb)
{
	return tsct_handle(skb, HOOK_INGRESS);
}

SEC("tc")
int tsct_egress(struct __sk_buff *skb)
{
	return tsct_handle(skb, HOOK_EGRESS);
}

SEC("xdp")
int tsct_xdp(struct xdp_md *ctx)
{
	return xdp_fast_path(ctx);
}

/* `tsct bpf nat flush`: one connection forgets its mapping, in the kernel. */
SEC("syscall")
int tsct_nat_forget(struct nat_forget_args *args)
{
	/* On the stack: a syscall program's context may only be read at fixed
	 * offsets from its own pointer, not through pointers into it. */
	struct nat_forget_args a;

	__builtin_memcpy(&a, args, sizeof(a));
	args->forgotten = nat_forget(&a);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
