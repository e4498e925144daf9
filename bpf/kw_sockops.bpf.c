// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connection lifecycle for gated destinations. The gate leaves socket local storage on
 * every TCP socket it allowed to a declared destination; sockops, attached to the root
 * cgroup, reports when such a connection is established and when it closes, with the
 * bytes moved and its duration. Sockets without that storage cost one lookup.
 */
#include "lib/common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void kw_emit_sock(struct bpf_sock_ops *skops, struct bpf_sock *sk, struct kw_sk *s, __u16 type,
					 __u64 now)
{
	struct kw_ev_sock *e = kw_event_reserve(sizeof(*e), type);
	if (!e)
		return;
	e->tgid = s->tgid;
	e->ident = s->ident;
	e->cookie = bpf_get_socket_cookie(skops);
	/* Data octets, from the tcp_sock itself: skops->bytes_acked also counts the
	 * sequence octets of SYN and FIN. bytes_sent includes retransmissions. SK is the
	 * pointer already checked non-NULL: a fresh skops->sk load is "or null" for the
	 * 6.1 verifier. */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	e->bytes_sent = tp ? tp->bytes_sent : 0;
	e->bytes_received = tp ? tp->bytes_received : 0;
	e->duration_ns = s->established_ns ? now - s->established_ns : 0;
	e->proto = s->proto;
	e->family = s->family;
	e->port = s->port;
	e->dset = s->dset;
	__builtin_memcpy(e->addr, s->addr, 16);
	struct kw_sk_decided *d = bpf_sk_storage_get(&kw_sk_decided, sk, 0, 0);
	e->revision = d ? d->revision : 0;
	bpf_ringbuf_submit(e, 0);
}

SEC("sockops")
int kw_sockops(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct kw_sk *s;
	__u64 now;

	if (!sk)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		s = bpf_sk_storage_get(&kw_socks, sk, 0, 0);
		if (!s)
			return 1;
		now = bpf_ktime_get_ns();
		s->established_ns = now;
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		kw_emit_sock(skops, sk, s, KW_EV_ESTABLISHED, now);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		s = bpf_sk_storage_get(&kw_socks, sk, 0, 0);
		if (!s)
			return 1;
		kw_emit_sock(skops, sk, s, KW_EV_CLOSED, bpf_ktime_get_ns());
		break;
	}
	return 1;
}
