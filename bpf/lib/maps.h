/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every map of kwarden, declared once. Each program object includes this header and
 * libbpf pins the maps by name under /sys/fs/bpf/kwarden/maps, so the three objects
 * share one instance of each map, and a restarted agent takes the same maps over.
 *
 * Policy maps are double-buffered: an outer ARRAY_OF_MAPS with one slot per generation.
 * The agent builds the inner maps of generation 1-g (sized to the policy: inner hash
 * and LPM maps may differ in max_entries), then flips kw_active. A program reads the
 * generation once per call, so it never sees half of a reload.
 */
#ifndef KWARDEN_BPF_MAPS_H
#define KWARDEN_BPF_MAPS_H

#include "abi.h"

#define KW_PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

/* Inner map templates: max_entries here only sizes the template. Sizes rather than
 * __type(): clang would emit the value types as BTF forward declarations only. */
struct kw_files_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct kw_file_key));
	__uint(value_size, sizeof(struct kw_file_val));
};
struct kw_lists_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct kw_cand_list));
};
struct kw_wls_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct kw_workload));
};
/* The cgroups workload selectors name (cgroup id -> its level): the processes in them,
 * or below, are governed by the policy whether attested or not (raw sockets). */
struct kw_cgsel_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u64));
	__uint(value_size, sizeof(__u32));
};
/* Containers (cgroup id, workload index) -> 1: bpf/abi.h kw_ctr_key. Sized for entries
 * added between reloads as containers start. */
struct kw_ctrs_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct kw_ctr_key));
	__uint(value_size, sizeof(__u32));
};
struct kw_code_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct kw_code_key));
	__uint(value_size, sizeof(struct kw_code_val));
};
struct kw_sources_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct kw_source_key));
	__uint(value_size, sizeof(struct kw_source_val));
};
struct kw_dsts_inner {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct kw_dst_key));
	__uint(value_size, sizeof(struct kw_dst_val));
};
struct kw_allow_inner {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct kw_allow_key));
	__uint(value_size, sizeof(struct kw_allow_val));
};

#define KW_OUTER(name, inner)                                  \
	struct {                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);      \
		__uint(max_entries, KW_GENERATIONS);           \
		__type(key, __u32);                            \
		KW_PIN;                                        \
		__array(values, struct inner);                 \
	} name SEC(".maps")

KW_OUTER(kw_files, kw_files_inner);
KW_OUTER(kw_lists, kw_lists_inner);
KW_OUTER(kw_wls, kw_wls_inner);
KW_OUTER(kw_cgsel, kw_cgsel_inner);
KW_OUTER(kw_ctrs, kw_ctrs_inner);
KW_OUTER(kw_code, kw_code_inner);
KW_OUTER(kw_sources, kw_sources_inner);
KW_OUTER(kw_dsts, kw_dsts_inner);
KW_OUTER(kw_allow, kw_allow_inner);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KW_GENERATIONS);
	__type(key, __u32);
	__type(value, struct kw_config);
	KW_PIN;
} kw_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_abi_pin);
	KW_PIN;
} kw_abi SEC(".maps");

/* [0] = the generation in force. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	KW_PIN;
} kw_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_task);
	KW_PIN;
} kw_tasks SEC(".maps");

/* Written and read by the agent only (bpf/abi.h, struct kw_ident_name). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct kw_ident_name);
	KW_PIN;
} kw_idents SEC(".maps");

/* Thread id -> the file execve() was given; an LRU so failed execs cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct kw_exec_file);
	KW_PIN;
} kw_execs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_sk);
	KW_PIN;
} kw_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_sk_decided);
	KW_PIN;
} kw_sk_decided SEC(".maps");

/* Connection counters by (revision, identity, destination set, result), per CPU. Pinned:
 * a restarted agent reads on from the totals the kernel kept. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, KW_FLOW_MAX);
	__type(key, struct kw_flow_key);
	__type(value, struct kw_flow_val);
	KW_PIN;
} kw_flows SEC(".maps");

/* The counters key of a TCP connection the gate allowed, for its octets at close. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_flow_key);
	KW_PIN;
} kw_sk_flow SEC(".maps");

/* Sockets the agent runs mutual TLS on (value: enum kw_ktls_flags). Written by the agent
 * through the socket's fd: HANDSHAKE before it connects the socket, MANAGED right after
 * TLS_TX/TLS_RX; read by the data and SOL_TLS guards of kw_gate. A map of its own so
 * kw_sk keeps its layout across agent upgrades. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_ktls_state);
	KW_PIN;
} kw_ktls SEC(".maps");

/* The identity that created a socket (kw_gate.bpf.c, socket_post_create): a socket
 * connected to a declared destination under another identity is refused. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_sk_creator);
	KW_PIN;
} kw_sk_creators SEC(".maps");

/* Seccomp filters whose listener the agent holds alone (kw_guard.bpf.c registers them
 * at the agent's first ioctl on the listener and forgets them when the listener file is
 * freed; kw_attest.bpf.c withholds the identity from an exec under any other listener). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct seccomp_filter * */
	__type(value, struct kw_listener);
	KW_PIN;
} kw_listeners SEC(".maps");

/* The guard (kw_guard.bpf.c): settings, kwarden's own objects and inodes, debuggers. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_guard_cfg);
	KW_PIN;
} kw_guard SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kw_guard_id);
	__type(value, __u32);
	KW_PIN;
} kw_guard_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kw_file_key);
	__type(value, __u32); /* enum kw_guard_inode */
	KW_PIN;
} kw_guard_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct kw_debugger_key);
	__type(value, __u32); /* index of the entry in allow_debuggers */
	KW_PIN;
} kw_debuggers SEC(".maps");

/* 1 MiB: some 2,500 connect or guard events (the largest) between two reads of the agent (which maps it twice, as every
 * ring buffer consumer does, and locks its memory: 2 MiB of its resident set). Counted
 * when full (kw_stats), never blocking. A ring pinned by a previous agent is taken over
 * at its size. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	KW_PIN;
} kw_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	KW_PIN;
} kw_counters SEC(".maps");

/* Per-CPU scratch for argv: too large for the 512-byte BPF stack. */
struct kw_argv_buf {
	__u8 buf[KW_ARGV_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_argv_buf);
} kw_argv_scratch SEC(".maps");

/* Per-CPU scratch for a source lookup: the key holds a whole path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_source_key);
} kw_source_scratch SEC(".maps");

/* Per-CPU scratch for the environment scan of an exec (kw_attest.bpf.c): a string's
 * bytes and where the walk stands. */
struct kw_env_scan {
	__u64 pos;
	__u64 end;
	__u32 strings;	/* strings passed, argv first */
	__u32 argc;
	__u32 total;	/* argc + envc */
	__u32 at_start; /* pos is at the start of a string */
	__u32 bits;
	__u32 done;
};
struct kw_env_buf {
	__u8 buf[KW_ARGV_MAX];
	struct kw_env_scan sc;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_env_buf);
} kw_env_scratch SEC(".maps");

/* Per-CPU scratch for kw_file_path(): the components found walking up, and a buffer
 * twice KW_PATH_MAX so that a copy of up to KW_PATH_MAX bytes at any offset below
 * KW_PATH_MAX is provably in bounds for the verifier. */
struct kw_path_buf {
	__u64 names[KW_PATH_DEPTH];
	__u32 lens[KW_PATH_DEPTH];
	char buf[KW_PATH_MAX * 2];
	__u32 n;   /* components collected (kw_file_path) */
	__u32 off; /* bytes written */
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_path_buf);
} kw_path_scratch SEC(".maps");

#endif /* KWARDEN_BPF_MAPS_H */
