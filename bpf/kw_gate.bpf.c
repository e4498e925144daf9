// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Connection gate: allows or refuses a connection by (process identity, destination)
 * before a packet leaves.
 *
 *   socket_connect   connect(2), io_uring's connect and TCP_FASTOPEN_CONNECT (which
 *                    still calls connect) all pass security_socket_connect.
 *   socket_sendmsg   the paths that reach a peer without connect(): TCP sendto/sendmsg
 *                    with MSG_FASTOPEN, and UDP datagrams that carry an address.
 *
 * A connection allowed by the process's own rule must also be made on a socket that
 * process's identity created (kw_sk_creators, socket_post_create): a descriptor handed in
 * by someone else does not borrow the identity (KW_GUARD_FOREIGN_SOCKET).
 *
 * A destination is declared when a (protocol, port, prefix) entry of the policy's LPM
 * trie contains it. The trie is looked up twice, for the port and for "any port"
 * (port 0); every set found must allow the identity. Undeclared destinations return
 * 0 untouched. The decision is made in one pass of two LPM and up to two hash lookups.
 *
 * Raw and packet sockets reach any destination without either: with CAP_NET_RAW a
 * process hand-crafts the TCP or UDP it wants. Governed processes get none of them
 * (kw_raw_guard): no socket_create of AF_PACKET (the legacy AF_INET SOCK_PACKET is turned
 * into AF_PACKET before the hook), AF_XDP, or SOCK_RAW of AF_INET/AF_INET6, and no
 * socket_sendmsg on one that was created elsewhere and passed in or inherited.
 *
 * Mutual-TLS destinations ("tls": "mutual") are reached only by the agent, which connects
 * the enrolled process's own socket, handshakes and installs kTLS (it checks the policy
 * for that process itself). Anyone else, whatever the rules, gets EPERM: a process that
 * was not enrolled, io_uring, or any other way around the seccomp hold never talks
 * plaintext to such a service.
 *
 * The sockets the agent runs mutual TLS on (kw_ktls) are guarded too: while the handshake
 * runs nobody else moves data on them (socket_sendmsg, socket_recvmsg, file_permission),
 * and once kTLS is in, only the agent reads or sets their keys (socket_getsockopt,
 * socket_setsockopt).
 */
#include "lib/guard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_MPTCP 262
#define MSG_FASTOPEN 0x20000000
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define SOCK_PACKET 10
#define SOCK_TYPE_MASK 0xf
#define AF_PACKET 17
#define AF_XDP 44

struct kw_target {
	__u8 proto;
	__u8 family;
	__u16 port; /* host order */
	__u8 addr[16];
};

/* Reads a sockaddr the kernel already copied in. IPv4 is mapped into ::ffff:0:0/96,
 * which is also how an IPv6 socket reaches an IPv4 service: both land on one key. */
static __always_inline int kw_read_target(struct sockaddr *sa, int len, struct kw_target *t)
{
	__u16 family = 0;

	if (!sa || len < (int)sizeof(family))
		return -1;
	if (bpf_probe_read_kernel(&family, sizeof(family), &sa->sa_family))
		return -1;
	if (family == AF_INET) {
		struct sockaddr_in in;
		if (len < (int)sizeof(in) || bpf_probe_read_kernel(&in, sizeof(in), sa))
			return -1;
		__builtin_memset(t->addr, 0, 10);
		t->addr[10] = 0xff;
		t->addr[11] = 0xff;
		__builtin_memcpy(&t->addr[12], &in.sin_addr.s_addr, 4);
		t->port = bpf_ntohs(in.sin_port);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 in6;
		if (len < 24 || bpf_probe_read_kernel(&in6, 24, sa))
			return -1;
		__builtin_memcpy(t->addr, &in6.sin6_addr, 16);
		t->port = bpf_ntohs(in6.sin6_port);
	} else {
		return -1;
	}
	t->family = family;
	return 0;
}

/* Direct BTF loads, as in kw_sendmsg: no probe-read helper call per field on each connect. */
static __always_inline int kw_sock_proto(struct socket *sock)
{
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	__u16 proto = sk->sk_protocol;
	__u16 type = sk->sk_type;

	/* MPTCP reaches its peers over TCP subflows: same policy as TCP. */
	if (type == SOCK_STREAM && (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP))
		return IPPROTO_TCP;
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP)
		return IPPROTO_UDP;
	return 0;
}

struct kw_verdict {
	int declared;
	int mtls;
	int allowed;
	__u8 reason;
	__u32 dset;
	__u32 rule;
	__u32 flags; /* enum kw_dset_flags of every set looked at */
};

static __always_inline void kw_check_set(struct kw_dst_val *v, void *allow, __u32 ident, struct kw_verdict *out)
{
	if (!v)
		return;
	out->declared = 1;
	out->flags |= v->flags;
	if (v->flags & KW_DSET_MTLS)
		out->mtls = 1;
	if (!out->allowed)
		return; /* an earlier set already refused */
	out->dset = v->dset;
	if (v->flags & KW_DSET_ANY_ALLOWED) {
		out->rule = v->any_rule;
		out->reason = KW_REASON_ANY_RULE;
		return;
	}
	struct kw_allow_key k = { .ident = ident, .dset = v->dset };
	struct kw_allow_val *a = (ident != KW_IDENT_NONE && allow) ? bpf_map_lookup_elem(allow, &k) : 0;
	if (a) {
		out->rule = a->rule;
		out->reason = KW_REASON_RULE;
	} else {
		out->allowed = 0;
		out->rule = ~0u;
		out->reason = KW_REASON_NO_RULE;
	}
}

static __always_inline void kw_emit_connect(struct kw_target *t, struct kw_verdict *v, struct kw_config *cfg,
					    __u8 path)
{
	struct kw_ev_connect *e = kw_event_reserve(sizeof(*e), KW_EV_CONNECT);
	if (!e)
		return;
	__builtin_memset(&e->proc, 0, sizeof(*e) - sizeof(e->hdr));
	kw_fill_proc(&e->proc);
	e->decision = v->allowed ? KW_DECISION_ALLOW : KW_DECISION_DENY;
	e->mode = cfg->mode;
	e->reason = v->reason;
	e->path = path;
	e->proto = t->proto;
	e->family = t->family;
	e->port = t->port;
	__builtin_memcpy(e->addr, t->addr, 16);
	e->dset = v->dset;
	e->rule = v->rule;
	e->revision = cfg->revision;
	bpf_ringbuf_submit(e, 0);
}

/* The counters of KEY in kw_flows, made on first use; once the map is full, the shared
 * overflow counters of its result (the agent makes them). */
static __always_inline struct kw_flow_val *kw_flow_slot(struct kw_flow_key *key)
{
	struct kw_flow_val *f = bpf_map_lookup_elem(&kw_flows, key);
	if (f)
		return f;
	struct kw_flow_val zero = {};
	bpf_map_update_elem(&kw_flows, key, &zero, BPF_NOEXIST);
	f = bpf_map_lookup_elem(&kw_flows, key);
	if (f)
		return f;
	struct kw_flow_key overflow = { .dset = KW_FLOW_OVERFLOW_DSET, .result = key->result };
	return bpf_map_lookup_elem(&kw_flows, &overflow);
}

/* Counts a decision, and keeps the key on an allowed TCP socket for its octets at close
 * (kw_tcp_close). Atomic adds: a program can be preempted on its CPU. */
static __always_inline void kw_flow_decided(struct socket *sock, struct kw_target *t, __u32 ident, __u32 dset,
					    __u32 result, __u64 revision, __u8 path)
{
	struct kw_flow_key key = { .revision = revision, .ident = ident, .dset = dset, .result = result };
	struct kw_flow_val *f = kw_flow_slot(&key);

	if (f)
		__sync_fetch_and_add(&f->connections, 1);
	/* One load of sock->sk, checked: every load of it is "or null" to the verifier. */
	struct sock *sk = sock->sk;
	if (result == KW_FLOW_DENIED || path != KW_PATH_CONNECT || t->proto != IPPROTO_TCP || !sk)
		return;
	struct kw_flow_key *k = bpf_sk_storage_get(&kw_sk_flow, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (k)
		*k = key;
}

/* Remembers an allowed TCP connection to a declared destination, for sockops. */
static __always_inline void kw_mark_socket(struct socket *sock, struct kw_target *t, __u32 ident, __u32 dset,
					   __u64 revision)
{
	struct sock *sk = sock->sk;
	struct kw_sk_decided *d;
	struct kw_sk *s;

	if (!sk || t->proto != IPPROTO_TCP)
		return;
	s = bpf_sk_storage_get(&kw_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return;
	s->ident = ident;
	s->dset = dset;
	s->tgid = bpf_get_current_pid_tgid() >> 32;
	s->port = t->port;
	s->proto = t->proto;
	s->family = t->family;
	s->established_ns = 0;
	__builtin_memcpy(s->addr, t->addr, 16);
	d = bpf_sk_storage_get(&kw_sk_decided, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (d)
		d->revision = revision;
}

/*
 * Whether the identity that allowed this connection is the one that created the socket.
 * A descriptor can reach a process without its creating it: injected by a seccomp
 * listener (ADDFD), passed over a Unix socket, inherited across an exec into another
 * identity, taken with pidfd_getfd. Connecting it would lend the process's identity to
 * whoever made the socket. Sockets of unattested creators carry no record; a process
 * attested from /proc may have made its sockets before the agent ran, so a missing
 * record is accepted from it (only a record of another identity is refused).
 */
static __always_inline int kw_foreign_socket(struct socket *sock, struct kw_task *task, __u32 ident,
					     struct kw_target *t, __u8 path, int audit)
{
	struct sock *sk = sock->sk;
	struct kw_sk_creator *c = sk ? bpf_sk_storage_get(&kw_sk_creators, sk, 0, 0) : 0;
	__u32 creator = c ? c->ident : KW_IDENT_NONE;

	if (creator == ident || (!c && task && (task->flags & KW_TASK_FROM_PROC)))
		return 0;
	if (!kw_guard_on())
		return 0;
	struct kw_guard_target g = {
		.action = KW_GUARD_FOREIGN_SOCKET,
		.decision = KW_DECISION_DENY,
		.detail = path,
		.ident = creator,
		.obj_id = t->port,
	};
	if (audit) { /* a gate decision: audit mode reports it and lets the connection be */
		kw_emit_guard(&g);
		return 0;
	}
	g.err = EPERM;
	kw_emit_guard(&g);
	return 1;
}

static __always_inline int kw_gate(struct socket *sock, struct sockaddr *sa, int len, __u8 path)
{
	struct kw_target t = {};
	struct kw_verdict v = { .allowed = 1, .rule = ~0u };
	struct kw_dst_key key = {};
	__u32 gen, ident;
	int proto;

	proto = kw_sock_proto(sock);
	if (!proto || kw_read_target(sa, len, &t))
		return 0;
	t.proto = proto;

	gen = kw_generation();
	void *dsts = bpf_map_lookup_elem(&kw_dsts, &gen);
	if (!dsts)
		return 0;
	struct kw_task *task = kw_current_task_state();
	ident = task ? task->ident : KW_IDENT_NONE;
	void *allow = bpf_map_lookup_elem(&kw_allow, &gen);

	key.prefixlen = KW_DST_FIXED_BITS + 128;
	key.proto = t.proto;
	__builtin_memcpy(key.addr, t.addr, 16);
	key.port[0] = t.port >> 8;
	key.port[1] = t.port & 0xff;
	kw_check_set(bpf_map_lookup_elem(dsts, &key), allow, ident, &v);
	key.port[0] = 0;
	key.port[1] = 0;
	kw_check_set(bpf_map_lookup_elem(dsts, &key), allow, ident, &v);
	if (!v.declared)
		return 0;
	if (v.mtls) {
		int agent = task && (task->flags & KW_TASK_AGENT);
		v.allowed = agent;
		v.reason = agent ? KW_REASON_AGENT : KW_REASON_MTLS_ONLY;
		v.rule = ~0u;
	}

	kw_count(KW_CNT_CONNECT_CHECKED);
	struct kw_config *cfg = bpf_map_lookup_elem(&kw_cfg, &gen);
	int audit = cfg && cfg->mode == KW_MODE_AUDIT;
	/* Only an identity's own rule can be borrowed: a "*" rule or a refusal needs none. */
	__u64 revision = cfg ? cfg->revision : 0;
	/* The agent connects for an enrolled process: its counters are the process's. */
	__u32 counted = ident;
	struct sock *sk = sock->sk;
	if (v.reason == KW_REASON_AGENT && sk) {
		struct kw_sk_creator *c = bpf_sk_storage_get(&kw_sk_creators, sk, 0, 0);
		counted = c ? c->ident : KW_IDENT_NONE;
	}
	if (v.allowed && v.reason == KW_REASON_RULE && kw_foreign_socket(sock, task, ident, &t, path, audit)) {
		kw_count(KW_CNT_CONNECT_DENIED);
		kw_flow_decided(sock, &t, counted, v.dset, KW_FLOW_DENIED, revision, path);
		return -EPERM;
	}
	if (cfg && (!v.allowed || cfg->log_allowed))
		kw_emit_connect(&t, &v, cfg, path);
	if (!v.allowed) {
		if (!audit) {
			kw_count(KW_CNT_CONNECT_DENIED);
			kw_flow_decided(sock, &t, counted, v.dset, KW_FLOW_DENIED, revision, path);
			return -EPERM;
		}
		kw_count(KW_CNT_CONNECT_AUDITED);
		kw_flow_decided(sock, &t, counted, v.dset, KW_FLOW_AUDITED, revision, path);
	} else {
		kw_count(KW_CNT_CONNECT_ALLOWED);
		kw_flow_decided(sock, &t, counted, v.dset, KW_FLOW_ALLOWED, revision, path);
	}
	/* Lifecycle events only where a destination asks for them: the socket storage,
	 * sockops' callbacks and the agent's work per event are paid by those alone. */
	if (path == KW_PATH_CONNECT && (v.flags & KW_DSET_LIFECYCLE))
		kw_mark_socket(sock, &t, ident, v.dset, revision);
	return 0;
}

/* A socket that carries packets the caller writes itself, headers included: every
 * packet socket, AF_XDP, and SOCK_RAW of IPv4 and IPv6 (IP_HDRINCL, or any protocol
 * number). ICMP "ping" sockets are SOCK_DGRAM and stay open. */
static __always_inline int kw_raw_kind(int family, int type)
{
	if (family == AF_PACKET || family == AF_XDP)
		return 1;
	type &= SOCK_TYPE_MASK;
	return (family == AF_INET || family == AF_INET6) && (type == SOCK_RAW || type == SOCK_PACKET);
}

/*
 * Who the policy governs here: an attested process (unless its workload entry sets
 * "allow_raw_sockets"), and any process in or below a cgroup that a workload selects,
 * attested or not: that is where an attacker next to the workload runs. Elsewhere (the
 * host's tcpdump, ping, DHCP client) nothing changes; the agent passes. Audit mode
 * reports the socket's creation and lets it be (an event with errno 0), and its sends
 * without an event each; enforce mode refuses both.
 */
static __always_inline int kw_raw_guard(int family, int type, int at_send)
{
	__u32 gen = kw_generation();
	struct kw_task *t = kw_current_task_state();

	if (kw_task_is_agent(t))
		return 0;
	if (t && t->ident != KW_IDENT_NONE) {
		if (kw_task_allows(t, KW_SEL_ALLOW_RAW_SOCKETS))
			return 0;
	} else if (!kw_in_governed_cgroup(gen)) {
		return 0;
	}
	struct kw_config *cfg = bpf_map_lookup_elem(&kw_cfg, &gen);
	struct kw_guard_target g = {
		.action = KW_GUARD_RAW_SOCKET,
		.decision = KW_DECISION_DENY,
		.detail = KW_RAW_DETAIL(family, type & SOCK_TYPE_MASK),
	};
	/* Two plain returns: computed as "-audit" the value would be a 32-bit negation,
	 * whose range 6.12's verifier cannot bound to [-4095, 0]. */
	if (cfg && cfg->mode == KW_MODE_AUDIT) {
		/* Reported once, when the socket is made: not once per packet. */
		if (at_send)
			return 0;
		kw_emit_guard(&g);
		kw_count(KW_CNT_CONNECT_AUDITED);
		return 0;
	}
	g.err = EPERM;
	kw_emit_guard(&g);
	return -EPERM;
}

/* Kernel sockets (kern = 1) are the kernel's own, whoever's call created them. */
SEC("lsm/socket_create")
int BPF_PROG(kw_socket_create, int family, int type, int protocol, int kern, int ret)
{
	if (ret)
		return ret;
	if (kern || !kw_raw_kind(family, type))
		return 0;
	return kw_raw_guard(family, type, 0);
}

/* EPERM when a socket's STATE is one of STATES (enum kw_ktls_flags) and the caller is
 * not the agent. */
static __always_inline int kw_agent_only_state(struct kw_ktls_state *state, __u32 states)
{
	if (!state || !(state->flags & states))
		return 0;
	struct kw_task *task = kw_current_task_state();
	return task && (task->flags & KW_TASK_AGENT) ? 0 : -EPERM;
}

/* sk_bpf_storage is NULL until a program stores something on the socket (kw_ktls marks
 * live there): most sockets of the system then cost two loads, not a helper call. */
static __always_inline int kw_agent_only(struct sock *sk, __u32 states)
{
	if (!sk || !sk->sk_bpf_storage)
		return 0;
	return kw_agent_only_state(bpf_sk_storage_get(&kw_ktls, sk, 0, 0), states);
}

/*
 * Data guard. From the moment the agent takes an app's socket for mutual TLS until kTLS
 * is installed (KW_KTLS_HANDSHAKE), the socket is the agent's alone: another thread of
 * the app, or any process the descriptor was passed to, must neither write plaintext to
 * the mutual-TLS peer nor read the handshake away from the agent. A failed handshake
 * leaves the mark in place, so such a socket never carries plaintext. The agent's own
 * task (KW_TASK_AGENT) passes. Every way data moves through a socket file meets one of:
 *
 *   socket_sendmsg   send, sendto, sendmsg, sendmmsg, and write/writev (sock_write_iter),
 *                    io_uring's send; on 6.12 also splice/sendfile to a socket
 *                    (splice_to_socket -> sock_sendmsg)
 *   socket_recvmsg   recv, recvfrom, recvmsg, recvmmsg, read/readv (sock_read_iter),
 *                    io_uring's recv
 *   file_permission  rw_verify_area(): read, write, readv, writev, and sendfile and
 *                    splice in either direction. The only one on two paths: splice from
 *                    a socket (sock_splice_read -> tcp_splice_read, no recvmsg), and on
 *                    6.1 splice or sendfile to a socket (sock_sendpage -> kernel_sendpage,
 *                    no sendmsg).
 *
 * Cost on sockets: two loads for a socket nobody stored anything on, else one
 * socket-storage lookup, per send/recv.
 */
static __always_inline int kw_data_guard(struct sock *sk)
{
	return kw_agent_only(sk, KW_KTLS_HANDSHAKE);
}

SEC("lsm/socket_recvmsg")
int BPF_PROG(kw_recvmsg, struct socket *sock, struct msghdr *msg, int size, int flags, int ret)
{
	if (ret)
		return ret;
	return kw_data_guard(sock->sk);
}

/*
 * file_permission runs on every read and write of every file in the system (and
 * readdir): for anything that is not a socket this is the trampoline, two loads and a
 * compare (kw_ktls_of_file). Socket files then cost a helper call and the socket-storage
 * lookup.
 */
SEC("lsm/file_permission")
int BPF_PROG(kw_file_perm, struct file *file, int mask, int ret)
{
	if (ret)
		return ret;
	return kw_agent_only_state(kw_ktls_of_file(file), KW_KTLS_HANDSHAKE);
}

/* Remembers who made an internet socket, when that was an attested process (the agent
 * connecting for an enrolled process passes kw_gate on its own rule). Sockets made by
 * the kernel (kern) or by unattested processes are not touched. */
SEC("lsm/socket_post_create")
int BPF_PROG(kw_sock_create, struct socket *sock, int family, int type, int protocol, int kern, int ret)
{
	if (ret || kern || (family != AF_INET && family != AF_INET6))
		return ret;
	struct kw_task *t = kw_current_task_state();
	struct sock *sk = sock->sk;
	if (!t || t->ident == KW_IDENT_NONE || !sk)
		return 0;
	struct kw_sk_creator *c = bpf_sk_storage_get(&kw_sk_creators, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (c)
		c->ident = t->ident;
	/* Without memory the socket counts as made unattested: its connect is refused. */
	return 0;
}

/* The octets of a connection the gate allowed, added to its counters when it closes: one
 * storage lookup on every TCP close of a socket that carries storage, the socket's own
 * counters read once. (An MPTCP socket is not a tcp_sock: its connections are counted,
 * its octets are not.) */
SEC("fentry/tcp_close")
int BPF_PROG(kw_tcp_close, struct sock *sk, long timeout)
{
	if (!sk->sk_bpf_storage)
		return 0; /* nothing stored on it: not a counted connection (no helper call) */
	struct kw_flow_key *k = bpf_sk_storage_get(&kw_sk_flow, sk, 0, 0);
	if (!k)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct kw_flow_val *f = tp ? kw_flow_slot(k) : 0;
	if (!f)
		return 0;
	/* bytes_received follows rcv_nxt, which the peer's FIN advances by one: once a FIN
	 * came (tcp_fin sets SOCK_DONE; a reset does not), one octet less was data. */
	__u64 received = tp->bytes_received;
	if ((sk->__sk_common.skc_flags & (1UL << SOCK_DONE)) && received)
		received--;
	__sync_fetch_and_add(&f->bytes_sent, tp->bytes_sent);
	__sync_fetch_and_add(&f->bytes_received, received);
	return 0;
}

SEC("lsm/socket_connect")
int BPF_PROG(kw_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
	if (ret)
		return ret;
	return kw_gate(sock, address, addrlen, KW_PATH_CONNECT);
}

/*
 * Runs on every send of every socket in the system (write(2) on a socket is a sendmsg
 * too), so the common case is a handful of loads and no helper: direct BTF loads, not
 * BPF_CORE_READ's probe reads (a helper call each), and the data guard's storage lookup
 * only for a socket that carries storage at all (kw_agent_only).
 */
SEC("lsm/socket_sendmsg")
int BPF_PROG(kw_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	if (ret)
		return ret;
	struct sock *sk = sock->sk;
	if (!sk)
		return 0;
	ret = kw_data_guard(sk);
	if (ret)
		return ret;
	/* A raw or packet socket created before the process was governed, or by another
	 * process, and passed in (SCM_RIGHTS, pidfd_getfd, inheritance): the same rule as
	 * at creation, for each send. */
	int family = sk->__sk_common.skc_family;
	int type = sk->sk_type;
	if (kw_raw_kind(family, type))
		return kw_raw_guard(family, type, 1);
	void *name = msg->msg_name;
	if (!name)
		return 0; /* connected socket: its connect() was gated */
	/* TCP ignores the address unless it opens the connection (TFO). */
	if (kw_sock_proto(sock) == IPPROTO_TCP && !(msg->msg_flags & MSG_FASTOPEN))
		return 0;
	return kw_gate(sock, name, msg->msg_namelen, KW_PATH_SENDMSG);
}

/*
 * The traffic keys of a socket the agent set up can be read back with
 * getsockopt(SOL_TLS, TLS_TX/TLS_RX), and replaced with setsockopt: only the agent may
 * do either, from the start of its handshake (install_ktls runs before the socket is
 * marked MANAGED: the keys are in the socket a moment earlier). During the handshake
 * getsockopt(TCP_ZEROCOPY_RECEIVE) is data movement too (it maps received data into the
 * caller's memory without recvmsg). Sockets the agent did not mark are not touched.
 */
#define SOL_TCP 6
#define TCP_ZEROCOPY_RECEIVE 35
#define SOL_TLS 282

static __always_inline int kw_sockopt_guard(struct socket *sock, int level, int optname)
{
	__u32 guarded;

	if (level == SOL_TLS)
		guarded = KW_KTLS_MANAGED | KW_KTLS_HANDSHAKE;
	else if (level == SOL_TCP && optname == TCP_ZEROCOPY_RECEIVE)
		guarded = KW_KTLS_HANDSHAKE;
	else
		return 0;
	return kw_agent_only(sock->sk, guarded);
}

SEC("lsm/socket_getsockopt")
int BPF_PROG(kw_getsockopt, struct socket *sock, int level, int optname, int ret)
{
	if (ret)
		return ret;
	return kw_sockopt_guard(sock, level, optname);
}

SEC("lsm/socket_setsockopt")
int BPF_PROG(kw_setsockopt, struct socket *sock, int level, int optname, int ret)
{
	if (ret)
		return ret;
	return kw_sockopt_guard(sock, level, optname);
}
