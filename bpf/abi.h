/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one header shared by the BPF programs and the agent: map keys and values, event
 * records, enums. Fixed-width fields, explicit padding, no bitfields. Both sides (the BPF
 * objects and every agent source that includes this) assert each struct's size and each
 * field's offset (abi_layout.h, written by scripts/abi-layout).
 *
 * Bump KW_ABI_VERSION on any layout change. Event records carry it (kw_ev_hdr.version)
 * and the agent drops records of another version. The pinned maps carry it in kw_abi,
 * written by the agent that loaded them: a new agent checks each pinned map against its
 * own definition before it takes the pins over, and names the maps it cannot read (pins
 * from before version 4 have no kw_abi: they are version 3).
 */
#ifndef KWARDEN_BPF_ABI_H
#define KWARDEN_BPF_ABI_H

#ifdef __bpf__
/* vmlinux.h provides the __u* types. */
#else
#include <linux/types.h>
#endif

#define KW_ABI_VERSION 5

/* Identity 0 is "unattested". Identity ids are assigned by the agent, append-only for
 * the lifetime of the pinned maps, so a policy reload never renames a running process. */
#define KW_IDENT_NONE 0u

/* SPIFFE IDs are at most 2048 bytes (spec); the name table stores them NUL-terminated. */
#define KW_SPIFFE_ID_MAX 2048

/* Bytes of argv compared by an `argv` selector (NUL-separated, as on the exec stack). */
#define KW_ARGV_MAX 256
/* Workloads that share one candidate list (same exe, same script, or neither). */
#define KW_CAND_MAX 256
/* Candidate list 0 holds the workloads that name neither exe nor script. */
#define KW_LIST_ANY 0u

/*
 * Where overlayfs keeps a file's lower layer, in bytes, read by the agent from the
 * overlay module's BTF before it loads the programs (their read-only data, so the
 * verifier sees constants). overlayfs is a module: CO-RE would resolve its types only
 * by having libbpf parse every module's BTF, a second of each object's load under
 * emulation. kind KW_OVL_NONE: no layout known (overlay not loaded, or a layout this
 * agent does not know): no file resolves to its layer's file.
 */
enum kw_ovl_kind {
	KW_OVL_NONE = 0,
	KW_OVL_ENTRY = 1,     /* 6.5+: the lower stack is ovl_inode.oe->__lowerstack[] */
	KW_OVL_LOWERPATH = 2, /* earlier: the first lower is ovl_inode.lowerpath */
};
struct kw_ovl_layout {
	__u32 kind;	    /* enum kw_ovl_kind */
	__u32 vfs_inode;    /* ovl_inode.vfs_inode */
	__u32 upperdentry;  /* ovl_inode.__upperdentry */
	__u32 oe;	    /* ENTRY: ovl_inode.oe */
	__u32 numlower;	    /* ENTRY: ovl_entry.__numlower */
	__u32 lower_dentry; /* ENTRY: ovl_entry.__lowerstack[0].dentry; LOWERPATH: ovl_inode.lowerpath.dentry */
	__u32 lowerdata;    /* LOWERPATH: ovl_inode.lowerdata */
	__u32 _pad;
};

/* Executable path carried by events, from a walk of the dentry and mount chain. */
#define KW_PATH_MAX 256
#define KW_PATH_DEPTH 32 /* path components plus mount crossings; a power of two */

/* Policy maps are double-buffered: the agent fills generation 1-g, then flips. */
#define KW_GENERATIONS 2

/* ---- attestation ---------------------------------------------------------------- */

/*
 * A file as the kernel knows it. dev is the kernel-internal dev_t of the superblock
 * (MAJOR << 20 | MINOR), not the userspace encoding that stat(2) returns: the agent
 * converts with kw_dev_from_user().
 */
struct kw_file_key {
	__u64 dev;
	__u64 ino;
};

/* Value of the pinned-binaries map: the inode as it was when the agent hashed it.
 * A write, chmod or replace changes ctime (or the inode), and the file then matches
 * nothing until an operator applies the policy again. */
struct kw_file_val {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 list_id; /* candidate list of workloads keyed on this file */
	__u32 pin_id;  /* index of the pinned file in the agent's table (path, sha256) */
	__u32 _pad;
};

struct kw_cand_list {
	__u32 n;
	__u32 wl[KW_CAND_MAX]; /* workload indices, ascending = policy order */
};

enum kw_sel_flags {
	KW_SEL_EXE = 1u << 0,
	KW_SEL_SCRIPT = 1u << 1,
	KW_SEL_UID = 1u << 2,
	KW_SEL_GID = 1u << 3,
	KW_SEL_CGROUP = 1u << 4,
	KW_SEL_ARGV = 1u << 5,	      /* argv equals argv[] exactly */
	KW_SEL_ARGV_PREFIX = 1u << 6, /* argv starts with argv[] (whole arguments) */
	/* 1u << 7 .. 1u << 9 were the allow_env flags of ABI 2: kw_workload.env_allow now. */
	/* "allow_raw_sockets": the workload may open raw and packet sockets. */
	KW_SEL_ALLOW_RAW_SOCKETS = 1u << 10,
	/* "allow_core_dumps": the workload's memory may be dumped when it crashes. */
	KW_SEL_ALLOW_CORE_DUMPS = 1u << 11,
	/* argv names files (kw_sources): they are read at their paths, so the exec must see
	 * the paths as the agent does, from the agent's mount namespace and root. */
	KW_SEL_SOURCES = 1u << 12,
	/* "container": the task's cgroup must be one of a container the agent enrolled and
	 * matched to this workload (kw_ctrs). */
	KW_SEL_CONTAINER = 1u << 13,
};

/* What the listener probe (kw_guard's iterator) writes for a seccomp listener: how its
 * filter was installed. killable: 1 with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, 0
 * without, -1 when the kernel's filter has no such field. */
struct kw_listener_record {
	__s32 fd;
	__s32 killable;
};

/* What kw_listener_tasks writes for each process under a listener's filter. A process
 * stacks at most KW_FILTER_DEPTH filters above the one it is looked for under (runtimes
 * install one or two; deeper ones are not found, and the hand-over is refused). */
#define KW_FILTER_DEPTH 16
struct kw_filter_task {
	__u32 tgid;
	__u32 parent; /* tgid of its parent */
	__u64 start_ns;
};

/*
 * Containers: key of kw_ctrs, generation-buffered like the workloads it names. The agent
 * learns a container's facts (image, name, pod) from its runtime through the seccomp-agent
 * socket, finds the cgroup its process runs in, and writes one entry per workload whose
 * container selector those facts meet. An exec matches such a workload only in a cgroup
 * with its entry: a sub-cgroup made inside the container matches nothing (fail closed).
 */
#define KW_CTR_MAX 16384 /* entries of one generation: containers x (workloads they meet + 1) */
struct kw_ctr_key {
	__u64 cgroup_id;
	__u32 wl; /* workload index in the generation, or KW_CTR_GOVERNED */
	__u32 _pad;
};
/* The wl of every enrolled container's own entry: the operator handed the container to
 * the agent, so the processes in its cgroup, or below, are governed whether attested or
 * not (raw sockets), as in a cgroup a workload selector names. No workload has it. */
#define KW_CTR_GOVERNED 0xffffffffu

/*
 * Code-loading configuration in an exec's environment: variables (or families of them,
 * by name prefix) that make the loader, a shell or a language runtime load or run code
 * the pinned files do not contain, from a path or from the value itself. An exec that
 * sets one gets no identity from a workload entry unless its env_allow ("allow_env")
 * has the bit. Recognised by name only: a value never matters, an empty one included.
 * The LD_* three keep the values of their KW_EXEC_LD_* refusal bits.
 */
enum kw_env_var {
	KW_ENV_LD_PRELOAD = 1u << 0,
	KW_ENV_LD_AUDIT = 1u << 1,
	KW_ENV_LD_LIBRARY_PATH = 1u << 2,
	KW_ENV_LD_OTHER = 1u << 3,	  /* every other LD_ variable (LD_ORIGIN_PATH, LD_PROFILE, ...) */
	KW_ENV_GLIBC_TUNABLES = 1u << 4,
	KW_ENV_GCONV_PATH = 1u << 5,	  /* iconv modules: shared objects */
	KW_ENV_OPENSSL = 1u << 6,	  /* OPENSSL_*: OPENSSL_CONF loads providers and engines */
	KW_ENV_BASH_ENV = 1u << 7,	  /* sourced by every non-interactive bash */
	KW_ENV_ENV = 1u << 8,		  /* sourced by interactive sh, dash and bash --posix */
	KW_ENV_BASH_FUNC = 1u << 9,	  /* BASH_FUNC_*: exported functions, imported as code */
	KW_ENV_SHELLOPTS = 1u << 10,	  /* e.g. xtrace, which then expands PS4 */
	KW_ENV_BASHOPTS = 1u << 11,
	KW_ENV_PS4 = 1u << 12,		  /* expanded under xtrace: command substitution */
	KW_ENV_PYTHON = 1u << 13,	  /* PYTHON*: PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, ... */
	KW_ENV_PERL = 1u << 14,		  /* PERL*: PERL5LIB, PERLLIB, PERL5OPT, PERL5DB, ... */
	KW_ENV_NODE = 1u << 15,		  /* NODE_*: NODE_OPTIONS, NODE_PATH, ... (not NODE_ENV) */
	KW_ENV_RUBYOPT = 1u << 16,
	KW_ENV_RUBYLIB = 1u << 17,
	KW_ENV_JAVA_TOOL_OPTIONS = 1u << 18,
	KW_ENV_JAVA_OPTIONS = 1u << 19,	  /* _JAVA_OPTIONS */
	KW_ENV_JDK_JAVA_OPTIONS = 1u << 20,
	KW_ENV_CLASSPATH = 1u << 21,
};
/* What can load code into the agent itself: the loader's variables and iconv's. Not
 * OPENSSL_*: the agent's TLS library is BoringSSL, which reads no configuration file and
 * loads no engine or provider; the one variable it reads, OPENSSL_ia32cap, only chooses
 * among BoringSSL's own code paths. */
#define KW_ENV_LOADER                                                                                 \
	(KW_ENV_LD_PRELOAD | KW_ENV_LD_AUDIT | KW_ENV_LD_LIBRARY_PATH | KW_ENV_LD_OTHER | \
	 KW_ENV_GLIBC_TUNABLES | KW_ENV_GCONV_PATH)

struct kw_workload {
	__u32 flags; /* enum kw_sel_flags */
	__u32 ident;
	struct kw_file_key exe;
	struct kw_file_key script;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;    /* 0 while the cgroup does not exist: matches nothing */
	__u32 cgroup_level; /* depth below the root cgroup (root = 0) */
	__u32 argv_len;	    /* bytes of argv[] that must match, including NULs */
	__u8 argv[KW_ARGV_MAX];
	__u32 env_allow; /* KW_ENV_* bits allow_env tolerates (env helper) */
	__u32 code_set;  /* id of the workload's pinned-code set, 0 none (code helper) */
};

/*
 * Pinned code: the files an attested process may map executable. A set per identity
 * (code_set = the identity id, stable across reloads, so a running process keeps its
 * set after one): the exe, its loader and library closure of every workload entry of
 * that identity, script interpreters, and the entries' "allow_code". Keyed like the
 * pinned binaries, with the ctime that was hashed. The entry (set, 0, 0) marks a set
 * that is not restricted: an identity some entry selects by no file at all.
 */
struct kw_code_key {
	__u32 set;
	__u32 _pad;
	__u64 dev;
	__u64 ino;
};

struct kw_code_val {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 _pad;
};

/*
 * Sources: the files a workload entry's argv names by absolute path (the script given to
 * an interpreter, a config file), which the process reads rather than maps. A set per
 * identity, like kw_code; keyed by the path as bpf_d_path() shows it (the file's own
 * path, symlinks resolved), NUL-padded. An attested process with KW_TASK_SOURCES that
 * opens a file at one of these paths must find the pinned file there, unchanged.
 */
#define KW_SOURCE_PATH_MAX 256
struct kw_source_key {
	__u32 set;
	char path[KW_SOURCE_PATH_MAX];
};

struct kw_source_val {
	struct kw_file_key file;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 _pad;
};

enum kw_task_flags {
	KW_TASK_FROM_PROC = 1u << 0, /* attested from /proc at agent start (weaker) */
	KW_TASK_AGENT = 1u << 1,     /* the kwarden agent itself (set by the agent; exec clears it) */
	KW_TASK_ENROLLED = 1u << 2,  /* enrolled for mutual TLS (kwarden exec): kept across exec and fork */
	KW_TASK_DUMPING = 1u << 3,   /* inside do_coredump(): the task is dying with a core dump */
	KW_TASK_SOURCES = 1u << 4,   /* attested by an entry whose argv names files (kw_sources) */
};

/* Value of kw_listeners, keyed by the address of a seccomp filter whose user-notification
 * listener the agent holds alone (registered when the agent first sends an ioctl to it).
 * notif is the filter's notification state at registration: a filter freed and another
 * one allocated at the same address does not inherit the registration. */
struct kw_listener {
	__u64 notif;
};

/* Socket local storage: the identity of the process that created the socket, kept only
 * for sockets created by an attested process (no entry: created unattested). */
struct kw_sk_creator {
	__u32 ident;
	__u32 _pad;
};

/* Task local storage: the identity the kernel assigned at exec. */
struct kw_task {
	__u32 ident;
	__u32 wl;     /* workload index + 1 in the generation that attested it; 0 none */
	__u32 flags;  /* enum kw_task_flags */
	__u32 pin_id; /* pinned exe (or script) that matched, for events; ~0u none */
	__u64 exec_ns; /* bpf_ktime_get_ns() at the last exec (attested or not), or at attestation from /proc */
};

/* The file execve() was given (the script, for #!), recorded at bprm_creds_for_exec
 * and read back at bprm_committed_creds of the same exec, keyed by thread id. */
struct kw_exec_file {
	struct kw_file_key key;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 _pad;
};

/* Identity id -> SPIFFE ID, pinned with the other maps: the table lives exactly as long
 * as the task storage that holds the ids, so a restarted agent can never renumber. */
struct kw_ident_name {
	char id[KW_SPIFFE_ID_MAX + 1];
	__u8 _pad[7];
};

/* ---- gate ------------------------------------------------------------------------- */

enum kw_proto {
	KW_PROTO_TCP = 6,
	KW_PROTO_UDP = 17,
};

/* LPM key: protocol, port and address form one prefix, so that a lookup answers for
 * exactly this protocol and port. IPv4 is stored v4-mapped (::ffff:a.b.c.d), so a v4
 * /n is prefixlen 32 + 96 + n. Port 0 is the "any port" entry: the gate looks up
 * both and requires both answers to allow. */
struct kw_dst_key {
	__u32 prefixlen; /* bits after this field that count */
	__u8 proto;
	__u8 _pad;
	__u8 port[2]; /* big-endian */
	__u8 addr[16];
};
#define KW_DST_FIXED_BITS 32 /* proto, pad, port */

enum kw_dset_flags {
	KW_DSET_ANY_ALLOWED = 1u << 0, /* a "*" rule allows every destination of the set */
	KW_DSET_MTLS = 1u << 1,	       /* a member is "tls": "mutual": only the agent connects */
	/* a member asks for "lifecycle_events": sockops reports the connections it allows
	 * to the set when they are established and when they close */
	KW_DSET_LIFECYCLE = 1u << 2,
};

/* The set of declared destinations that contain a trie node: the agent computes it,
 * so the longest-prefix answer is exact. */
struct kw_dst_val {
	__u32 dset;
	__u32 flags;	 /* enum kw_dset_flags */
	__u32 any_rule;	 /* rule index that allowed "*" (valid with KW_DSET_ANY_ALLOWED) */
	__u32 _pad;
};

struct kw_allow_key {
	__u32 ident;
	__u32 dset;
};

struct kw_allow_val {
	__u32 rule; /* index of a rule that allowed it, for events */
	__u32 _pad;
};

enum kw_mode {
	KW_MODE_ENFORCE = 0,
	KW_MODE_AUDIT = 1,
};

/* Per-generation settings. */
/* The ABI version of the pinned maps (kw_abi, single entry). */
struct kw_abi_pin {
	__u32 version; /* KW_ABI_VERSION of the agent that pinned or last took over the maps */
	__u32 _pad;
};

struct kw_config {
	__u32 mode; /* enum kw_mode */
	__u32 log_allowed;
	__u64 revision; /* first 8 bytes of the policy's content hash */
};

/* ---- guard: process binding and self-protection ------------------------------------ */

/*
 * Settings of the guard (single-entry array, pinned). While enabled, only the agent
 * (KW_TASK_AGENT) touches kwarden's BPF objects, pins and state directory, and nobody
 * but the agent or a listed debugger attaches to an attested or enrolled process. The
 * agent is recognised at exec: root running exactly agent_exe (dev, ino, ctime), not
 * traced, with no loader configuration (KW_ENV_LOADER) in its environment. agent_exe is
 * what the kernel saw at the agent's own exec (capture_tgid), not what stat(2) says: the two differ on
 * overlayfs, where container images live.
 */
struct kw_guard_cfg {
	__u32 enabled;
	__u32 capture_tgid; /* the next file_open of this process records its exe as agent_exe */
	struct kw_file_key agent_exe;
	__s64 agent_ctime_sec;
	__u32 agent_ctime_nsec;
	__u32 _pad2;
	__u64 pin_dev;	 /* superblock of the bpf filesystem holding the pins (kernel dev_t) */
	__u64 state_dev; /* superblock of the agent's state directory */
	/* Where the agent resolved the policy's paths: its mount namespace and root, as
	 * kernel addresses (compared, never followed), recorded with agent_exe. */
	__u64 home_mntns;
	__u64 home_root_mnt;
	__u64 home_root_dentry;
};

/* Key of kw_guard_ids: the BPF objects of kwarden (maps, inner maps, programs, links). */
enum kw_guard_obj {
	KW_OBJ_MAP = 1,
	KW_OBJ_PROG = 2,
	KW_OBJ_LINK = 3,
};
struct kw_guard_id {
	__u32 kind; /* enum kw_guard_obj */
	__u32 id;
};

/* Value of kw_guard_inodes, keyed by struct kw_file_key. */
enum kw_guard_inode {
	KW_INODE_PIN = 1,	/* a pinned map or link */
	KW_INODE_PIN_DIR = 2,	/* a directory of the pin tree */
	KW_INODE_STATE = 3,	/* a file of the agent's state directory (CA keys) */
	KW_INODE_STATE_DIR = 4, /* a directory of the state tree: its entries are the agent's */
};

/* Key of kw_debuggers (policy "allow_debuggers"): an identity or an executable. */
enum kw_debugger_kind {
	KW_DEBUGGER_IDENT = 1,
	KW_DEBUGGER_EXE = 2,
};
struct kw_debugger_key {
	__u32 kind;
	__u32 ident;		/* KW_DEBUGGER_IDENT */
	struct kw_file_key exe; /* KW_DEBUGGER_EXE */
};

/* What a guard event is about. */
enum kw_guard_action {
	KW_GUARD_PTRACE = 1,	 /* ptrace attach, /proc/PID/mem, process_vm_*, pidfd_getfd */
	KW_GUARD_FD_RECEIVE = 2, /* SCM_RIGHTS (or any fd passing) of a managed socket */
	KW_GUARD_BPF = 3,	 /* an fd for one of kwarden's BPF objects */
	KW_GUARD_PIN = 4,	 /* open, unlink or rename of a pin, umount of their filesystem */
	KW_GUARD_STATE = 5,	 /* open, link, unlink or rename in the agent's state directory */
	KW_GUARD_EXEC = 6,	 /* an exec that would have been attested but was not (detail says why) */
	KW_GUARD_RAW_SOCKET = 7, /* a raw or packet socket in a governed process (detail: family, type) */
	KW_GUARD_CORE_DUMP = 8,	 /* a core dump of an attested or enrolled process */
	KW_GUARD_RLIMIT = 9,	 /* another process raising the core limit of one (detail: the new limit, capped) */
	KW_GUARD_FOREIGN_SOCKET = 10, /* connect/sendto under one identity of a socket created under another */
	KW_GUARD_EXEC_MAP = 11,	 /* an attested process mapping unpinned code executable (detail: enum kw_map_op) */
	KW_GUARD_SOURCE = 12,	 /* an attested process opening another file than the pinned one at a source path */
};

/* detail of KW_GUARD_RAW_SOCKET: the socket's address family and type. */
#define KW_RAW_DETAIL(family, type) (((__u32)(family) << 16) | ((__u32)(type) & 0xffff))

/* detail of KW_GUARD_EXEC: why the identity was withheld (bits). */
enum kw_exec_refusal {
	KW_EXEC_LD_PRELOAD = 1u << 0,
	KW_EXEC_LD_AUDIT = 1u << 1,
	KW_EXEC_LD_LIBRARY_PATH = 1u << 2,
	KW_EXEC_ENV_UNREAD = 1u << 3, /* the environment could not be read in full */
	KW_EXEC_ANON = 1u << 4,	      /* memfd, O_TMPFILE or deleted file: no name on disk */
	KW_EXEC_TRACED = 1u << 5,     /* ptraced by someone who is not an allowed debugger */
	KW_EXEC_CODE_ENV = 1u << 6,   /* another kw_env_var: the event's target_tgid has them all */
	KW_EXEC_LISTENER = 1u << 7,   /* a seccomp filter's listener is held by someone but the agent */
	KW_EXEC_ELSEWHERE = 1u << 8,  /* argv names files, and the exec's mount namespace or root is not the agent's */
};

/* detail of KW_GUARD_EXEC_MAP. */
enum kw_map_op {
	KW_MAP_MMAP = 1,
	KW_MAP_MPROTECT = 2,
	KW_MAP_AUDIT = 1u << 8, /* audit mode: reported, not refused */
};

/* detail of KW_GUARD_PIN and KW_GUARD_STATE. */
enum kw_inode_op {
	KW_OP_OPEN = 1,
	KW_OP_UNLINK = 2,
	KW_OP_RENAME = 3,
	KW_OP_LINK = 4,
	KW_OP_CREATE = 5,
	KW_OP_UMOUNT = 6,
};

/* ---- events ----------------------------------------------------------------------- */

enum kw_event_type {
	KW_EV_CONNECT = 1,
	KW_EV_ESTABLISHED = 2,
	KW_EV_CLOSED = 3,
	KW_EV_EXEC = 4,
	KW_EV_GUARD = 5,
};

enum kw_decision {
	KW_DECISION_ALLOW = 1,
	KW_DECISION_DENY = 2,
};

/* Why the gate decided as it did. */
enum kw_reason {
	KW_REASON_RULE = 1,	    /* a rule for the process's identity */
	KW_REASON_ANY_RULE = 2,	    /* a "*" rule */
	KW_REASON_NO_RULE = 3,	    /* declared destination, no rule allows: default deny */
	KW_REASON_MTLS_ONLY = 4,    /* mutual-TLS destination: only through the agent (kwarden exec) */
	KW_REASON_AGENT = 5,	    /* the agent, connecting for an enrolled process it checked */
};

/* Which syscall path reached the gate. */
enum kw_path {
	KW_PATH_CONNECT = 1,
	KW_PATH_SENDMSG = 2, /* sendto/sendmsg with an address: UDP, or TCP MSG_FASTOPEN */
};

struct kw_ev_hdr {
	__u16 type; /* enum kw_event_type */
	__u16 version;
	__u32 size;
	__u64 ktime_ns; /* bpf_ktime_get_ns() */
};

struct kw_proc_info {
	__u32 pid;
	__u32 tgid;
	__u32 uid;
	__u32 gid;
	__u64 start_ns;	 /* start time of the thread-group leader (boot-based ns) */
	__u64 cgroup_id; /* cgroup v2 id of the process */
	__u32 ident;
	__u32 pin_id; /* pinned file that attested it, or ~0u */
	struct kw_file_key exe; /* current->mm->exe_file, for unattested processes */
	__s64 exe_ctime_sec;
	__u32 exe_ctime_nsec;
	__u32 task_flags;
	char comm[16];
	/* Absolute path of exe as the process's mount tree names it; empty if it could not
	 * be walked, cut at KW_PATH_MAX - 1 bytes. */
	char exe_path[KW_PATH_MAX];
};

struct kw_ev_connect {
	struct kw_ev_hdr hdr;
	struct kw_proc_info proc;
	__u8 decision; /* enum kw_decision */
	__u8 mode;     /* enum kw_mode */
	__u8 reason;   /* enum kw_reason */
	__u8 path;     /* enum kw_path */
	__u8 proto;
	__u8 family; /* AF_INET or AF_INET6 as given by the caller */
	__u16 port;  /* host order */
	__u8 addr[16]; /* v4-mapped for AF_INET */
	__u32 dset;    /* first set that denied, or the last that allowed */
	__u32 rule;    /* rule index that allowed, or ~0u */
	__u64 revision;
};

/* A guard decision: a refusal, or a debugger let in by allow_debuggers. */
struct kw_ev_guard {
	struct kw_ev_hdr hdr;
	struct kw_proc_info proc; /* who tried */
	__u8 action;		  /* enum kw_guard_action */
	__u8 decision;		  /* enum kw_decision */
	__u16 _pad;
	__s32 err;	    /* the errno the caller got (positive), 0 when allowed */
	__u32 detail;	    /* ptrace mode, bpf command, enum kw_inode_op, enum kw_exec_refusal, enum kw_path */
	__u32 target_tgid;  /* PTRACE: the process asked for; EXEC: the KW_ENV_* variables found */
	__u32 target_ident; /* PTRACE: the target's; FD_RECEIVE: the socket owner's; EXEC: the workload's;
			     * FOREIGN_SOCKET: the socket creator's */
	__u32 obj_id;	    /* BPF: the object id; EXEC: workload index; FOREIGN_SOCKET: the port */
	struct kw_file_key inode; /* PIN, STATE: the inode */
	char name[32];		  /* PTRACE: target comm; PIN, STATE: the file name */
	__u64 revision;		  /* the policy in force (kw_config.revision): obj_id indexes it */
};

/* sockops lifecycle of a connection the gate allowed to a declared destination. */
struct kw_ev_sock {
	struct kw_ev_hdr hdr;
	__u32 tgid;
	__u32 ident;
	__u64 cookie; /* socket cookie */
	__u64 bytes_sent;     /* data octets, retransmissions included */
	__u64 bytes_received; /* data octets */
	__u64 duration_ns; /* closed: since established */
	__u8 proto;
	__u8 family;
	__u16 port; /* host order */
	__u32 dset;
	__u8 addr[16];
	__u64 revision; /* the policy DSET is numbered by (kw_sk_decided); 0: unknown, the
			   socket was allowed by an agent of ABI 4 or older */
};

/*
 * Connection counters (kw_flows, per CPU): every gate decision on a declared destination
 * counts one connection under (identity, destination set, result) of the policy revision
 * that numbered the set; an allowed TCP connection adds its data octets there when it
 * closes. The agent sums the CPUs at scrape time: nothing per connection reaches it.
 */
enum kw_flow_result {
	KW_FLOW_ALLOWED = 1,
	KW_FLOW_DENIED = 2,
	KW_FLOW_AUDITED = 3, /* the policy denies it; audit mode let it through */
};
#define KW_FLOW_MAX 16384
/* Where counts go once kw_flows is full: one key per result, made by the agent. */
#define KW_FLOW_OVERFLOW_DSET 0xffffffffu
struct kw_flow_key {
	__u64 revision; /* kw_config.revision of the policy DSET is numbered by */
	__u32 ident;	/* the process's identity; the socket creator's when the agent connects for it */
	__u32 dset;
	__u32 result; /* enum kw_flow_result */
	__u32 _pad;
};
struct kw_flow_val {
	__u64 connections;
	__u64 bytes_sent;     /* data octets of allowed TCP connections, counted when they close */
	__u64 bytes_received;
};

/* Socket local storage on sockets the gate allowed to a declared destination. */
struct kw_sk {
	__u32 ident;
	__u32 dset;
	__u32 tgid;
	__u16 port;
	__u8 proto;
	__u8 family;
	__u64 established_ns;
	__u8 addr[16];
};

/* The policy revision a socket of kw_socks was allowed under: destination sets are
 * numbered per policy, so its events name DSET by that policy, not a later one. Its own
 * map, so that kw_sk keeps its layout across agent upgrades. */
struct kw_sk_decided {
	__u64 revision;
};

/*
 * State of a socket the agent takes over for mutual TLS (value of kw_ktls). The agent
 * writes the whole value each time, so a socket is in one state at a time:
 *   HANDSHAKE  set on the app's socket before the agent connects it; until kTLS is in
 *              place no task but the agent may move data on it. Left as is when the
 *              handshake fails: such a socket never carries plaintext (fail closed).
 *   MANAGED    kTLS installed by the agent: data moves (encrypted), SOL_TLS is the
 *              agent's only.
 */
enum kw_ktls_flags {
	KW_KTLS_MANAGED = 1u << 0,   /* kTLS installed by the agent for an enrolled process */
	KW_KTLS_HANDSHAKE = 1u << 1, /* the agent's handshake is running, or failed */
};

struct kw_ktls_state {
	__u32 flags; /* enum kw_ktls_flags */
	__u32 ident; /* identity of the process the socket belongs to: only it may receive it */
};

enum kw_counter {
	KW_CNT_CONNECT_CHECKED = 0,
	KW_CNT_CONNECT_ALLOWED,
	KW_CNT_CONNECT_DENIED,
	KW_CNT_CONNECT_AUDITED, /* would have been denied; audit mode (connects, raw sockets) */
	KW_CNT_EXEC_ATTESTED,
	KW_CNT_EXEC_CLEARED, /* an attested process exec'd something that is not attested */
	KW_CNT_EVENTS_DROPPED,
	KW_CNT_GUARD_DENIED, /* refusals of the guard (ptrace, fd passing, BPF objects, pins, state) */
	KW_CNT_MAX,
};

#ifdef __cplusplus
#define KW_ASSERT_SIZE(T, N) static_assert(sizeof(T) == (N), #T " layout changed: bump KW_ABI_VERSION")
#define KW_ASSERT_OFFSET(T, F, N) \
	static_assert(__builtin_offsetof(T, F) == (N), #T "." #F " moved: bump KW_ABI_VERSION")
#else
#define KW_ASSERT_SIZE(T, N) _Static_assert(sizeof(T) == (N), #T " layout changed: bump KW_ABI_VERSION")
#define KW_ASSERT_OFFSET(T, F, N) \
	_Static_assert(__builtin_offsetof(T, F) == (N), #T "." #F " moved: bump KW_ABI_VERSION")
#endif
/* Every struct's size and every field's offset, as laid out when the version was set
 * (scripts/abi-layout reads the layout without them, to write them anew). */
#ifndef KW_ABI_UNCHECKED
#include "abi_layout.h"
#endif

#endif /* KWARDEN_BPF_ABI_H */
