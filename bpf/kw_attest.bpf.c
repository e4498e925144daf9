// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Exec attestation: binds a process to a workload identity in the kernel, at exec,
 * before the new image runs its first instruction.
 *
 *   bprm_creds_for_exec    records the file execve() was given. For a #! script this
 *                          is the script; later stages only see the interpreter.
 *   bprm_committed_creds   the point of no return has passed and the new credentials
 *                          and mm are in place: match (script, exe, uid, gid, cgroup,
 *                          argv) against the policy and set or clear the identity in
 *                          task local storage.
 *   task_alloc             forks and threads inherit the parent's identity.
 *
 * Task storage lives and dies with the task_struct, so an identity can never be
 * inherited by a recycled pid; the agent reads it race-free through a pidfd.
 * Files are recognised by (dev, ino) and the ctime recorded when the agent hashed
 * them: any write, chmod or replacement changes one of them and the file then matches
 * nothing (fail closed) until an operator applies the policy again.
 *
 * No identity for injected code: an exec whose environment sets code-loading configuration
 * (enum kw_env_var: the loader's, a shell's, a language runtime's) matches a workload
 * entry only if the entry allows that variable; an executable with no name on disk
 * (memfd, O_TMPFILE, deleted), an exec under ptrace by a tracer that is not an allowed
 * debugger, or one under a seccomp filter whose listener someone other than the agent
 * holds, matches none. When such a reason is all that
 * kept a workload from matching, a guard event says so.
 */
#include "lib/guard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("lsm/bprm_creds_for_exec")
int BPF_PROG(kw_exec_begin, struct linux_binprm *bprm)
{
	struct kw_exec_file f = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	kw_file_facts(bprm->file, &f.key, &f.ctime_sec, &f.ctime_nsec);
	bpf_map_update_elem(&kw_execs, &tid, &f, BPF_ANY);
	return 0;
}

/* What the kernel knows about this exec. No pointers: it is passed to a global
 * function, which the verifier checks once, on its own, rather than once per call
 * site and loop iteration (candidates x argv words otherwise exceed its budget). */
struct kw_exec_facts {
	struct kw_file_key exe;	   /* zero unless the exe matched its pin */
	struct kw_file_key script; /* zero unless the script matched its pin */
	__u32 uid;
	__u32 gid;
	__u32 argv_state; /* 0 unread, 1 in the per-CPU scratch, 2 unreadable */
	__u32 argv_len;	  /* total bytes of argv, ~0u when longer than KW_ARGV_MAX */
	__u64 argv_addr;  /* bprm->p: argv[0] in the new image's (not yet placed) stack */
	__u32 argv_avail; /* bytes readable there, at most KW_ARGV_MAX */
	__u32 argc;
	__u32 envc;
	__u32 env_state; /* 0 unread, 1 read into env_bits */
	__u32 env_bits;	 /* KW_ENV_* found */
	__u32 env_unread; /* KW_EXEC_ENV_UNREAD when the walk did not finish, else 0 */
	__u32 refused_env; /* KW_ENV_* that refused the first refused workload */
	__u32 withheld;	 /* KW_EXEC_ANON, KW_EXEC_TRACED, KW_EXEC_LISTENER: no workload may match */
	__u32 refused;	 /* reasons that kept the first refused workload from matching */
	__u32 refused_ident; /* identity of that workload, ~0u none */
	__u64 env_end;	 /* bprm->exec: the filename, right after the environment */
	__u32 place;	 /* 0 unread, 1 the agent's mount namespace and root, 2 elsewhere */
	__u32 gen;	 /* the policy generation this exec is matched against */
	__u32 wl;	 /* index of the workload being matched (kw_workload_matches) */
	__u32 _pad;
};

static __always_inline int kw_key_eq(const struct kw_file_key *a, const struct kw_file_key *b)
{
	return a->dev == b->dev && a->ino == b->ino;
}

static __always_inline int kw_key_zero(const struct kw_file_key *a)
{
	return a->dev == 0 && a->ino == 0;
}

/* argv of the new image, read into the per-CPU scratch. At bprm_committed_creds the
 * new mm is current but mm->arg_start is not set yet (create_elf_tables runs later), so
 * read from bprm->p, where copy_strings() left argv[0], argv[1], ... followed by envp
 * and the filename. The exec runs on this CPU until the hook returns, so the scratch
 * stays ours. argv's total length is where its argc-th NUL ends. */
static __always_inline int kw_load_argv(struct kw_exec_facts *f, struct kw_argv_buf *buf)
{
	__u32 len = f->argv_avail;
	__u32 nuls = 0;

	f->argv_len = ~0u;
	if (!f->argv_addr || len == 0 || len > KW_ARGV_MAX)
		return -1;
	__builtin_memset(buf->buf, 0, sizeof(buf->buf));
	if (bpf_probe_read_user(buf->buf, len & (KW_ARGV_MAX * 2 - 1), (void *)f->argv_addr))
		return -1;
	for (__u32 i = 0; i < KW_ARGV_MAX; i++) {
		if (i >= len)
			break;
		if (buf->buf[i] == 0 && ++nuls == f->argc) {
			f->argv_len = i + 1;
			break;
		}
	}
	return 0;
}

/* First n bytes of argv equal want[0..n), compared as u64 words. */
static __always_inline int kw_argv_prefix_eq(const __u8 *have, const __u8 *want, __u32 n)
{
	const __u64 *h = (const __u64 *)have;
	const __u64 *w = (const __u64 *)want;

	for (__u32 i = 0; i < KW_ARGV_MAX / 8; i++) {
		if (i * 8 >= n)
			break;
		__u64 a = h[i], b = w[i];
		__u32 rem = n - i * 8;
		if (rem < 8) {
			__u64 mask = (1ULL << (rem * 8)) - 1;
			a &= mask;
			b &= mask;
		}
		if (a != b)
			return 0;
	}
	return 1;
}

/*
 * The environment of the new image: after argv on the exec stack (bprm->p), argc then
 * envc NUL-terminated strings, up to bprm->exec. Each step reads at most 255 bytes of one
 * string: a string start is compared with the code-loading variables (kw_env_var_of), a
 * longer string is crossed 255 bytes at a time.
 *
 * The step budget covers every exec the kernel admits: it caps the strings plus their
 * argv/envp pointers at 3/4 of _STK_LIM (6 MiB) whatever the stack limit, and the most
 * steps per byte of that is one per empty string (1 byte plus an 8-byte pointer), so at
 * most 6 MiB / 9 < 700k steps. A walk that still does not finish (a kernel that allows
 * more) or a read that fails leaves the environment unread, and an unread environment
 * matches no workload at all, allow_env or not, with a guard event ("environment
 * unreadable"): a code-loading variable never escapes the check by coming late.
 */
#define KW_ENV_STEP 256
_Static_assert(KW_ENV_STEP <= sizeof(((struct kw_env_buf *)0)->buf), "a step reads into the scratch buffer");
#define KW_ENV_STEPS (1u << 20)

static __always_inline int kw_has_prefix(const char *s, const char *p, __u32 n)
{
	for (__u32 i = 0; i < 32; i++) {
		if (i >= n)
			return 1;
		if (s[i] != p[i])
			return 0;
	}
	return 1;
}

#define KW_IS(s, lit) kw_has_prefix(s, lit, sizeof(lit) - 1)

/*
 * The kw_env_var an environment string sets, 0 for none. One switch on the first byte,
 * so that an ordinary variable costs one comparison or a few. Exact names end in '='
 * ("BASH_ENV=" is not "BASH_ENVX="); a family is its prefix, so that variables a runtime
 * adds later are covered too. Exempt from their family: the few that name no code and
 * that images set everywhere (PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE,
 * PYTHONIOENCODING, NODE_ENV, which node itself never reads). agent/core/env_vars.cpp
 * is the same table for attestation from /proc; keep them in step.
 */
static __always_inline __u32 kw_env_var_of(const char *b)
{
	switch (b[0]) {
	case 'L':
		if (!KW_IS(b, "LD_"))
			return 0;
		if (KW_IS(b, "LD_PRELOAD="))
			return KW_ENV_LD_PRELOAD;
		if (KW_IS(b, "LD_AUDIT="))
			return KW_ENV_LD_AUDIT;
		if (KW_IS(b, "LD_LIBRARY_PATH="))
			return KW_ENV_LD_LIBRARY_PATH;
		return KW_ENV_LD_OTHER;
	case 'G':
		if (KW_IS(b, "GLIBC_TUNABLES="))
			return KW_ENV_GLIBC_TUNABLES;
		if (KW_IS(b, "GCONV_PATH="))
			return KW_ENV_GCONV_PATH;
		return 0;
	case 'O':
		return KW_IS(b, "OPENSSL_") ? KW_ENV_OPENSSL : 0;
	case 'B':
		if (KW_IS(b, "BASH_ENV="))
			return KW_ENV_BASH_ENV;
		if (KW_IS(b, "BASH_FUNC_"))
			return KW_ENV_BASH_FUNC;
		if (KW_IS(b, "BASHOPTS="))
			return KW_ENV_BASHOPTS;
		return 0;
	case 'E':
		return KW_IS(b, "ENV=") ? KW_ENV_ENV : 0;
	case 'S':
		return KW_IS(b, "SHELLOPTS=") ? KW_ENV_SHELLOPTS : 0;
	case 'P':
		if (KW_IS(b, "PS4="))
			return KW_ENV_PS4;
		if (KW_IS(b, "PERL"))
			return KW_ENV_PERL;
		if (!KW_IS(b, "PYTHON"))
			return 0;
		if (KW_IS(b, "PYTHONUNBUFFERED=") || KW_IS(b, "PYTHONDONTWRITEBYTECODE=") ||
		    KW_IS(b, "PYTHONIOENCODING="))
			return 0;
		return KW_ENV_PYTHON;
	case 'N':
		return KW_IS(b, "NODE_") && !KW_IS(b, "NODE_ENV=") ? KW_ENV_NODE : 0;
	case 'R':
		if (KW_IS(b, "RUBYOPT="))
			return KW_ENV_RUBYOPT;
		if (KW_IS(b, "RUBYLIB="))
			return KW_ENV_RUBYLIB;
		return 0;
	case 'J':
		if (KW_IS(b, "JAVA_TOOL_OPTIONS="))
			return KW_ENV_JAVA_TOOL_OPTIONS;
		if (KW_IS(b, "JDK_JAVA_OPTIONS="))
			return KW_ENV_JDK_JAVA_OPTIONS;
		return 0;
	case '_':
		return KW_IS(b, "_JAVA_OPTIONS=") ? KW_ENV_JAVA_OPTIONS : 0;
	case 'C':
		return KW_IS(b, "CLASSPATH=") ? KW_ENV_CLASSPATH : 0;
	}
	return 0;
}

/* One step of the walk. Its state is in the per-CPU scratch value, whose contents the
 * verifier does not track: a step's state is the same whatever the steps before found,
 * so the verifier's walk of this callback converges at once. (On the stack, the bits
 * found so far made each combination a state of its own.) */
static long kw_env_step(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct kw_env_buf *buf = bpf_map_lookup_elem(&kw_env_scratch, &zero);

	if (!buf)
		return 1;
	struct kw_env_scan *sc = &buf->sc;
	if (sc->strings >= sc->total || sc->pos >= sc->end) {
		sc->done = 1;
		return 1;
	}
	long n = bpf_probe_read_user_str(buf->buf, KW_ENV_STEP, (void *)sc->pos);
	if (n < 0)
		return 1; /* unreadable: not done */
	/* An empty string is its NUL alone; the helper reports it as 0 bytes, not 1, on
	 * kernels whose strncpy_from_user_nofault() does not count the NUL of "" (6.1, 6.12). */
	if (n == 0) {
		n = 1;
		buf->buf[0] = 0;
	}
	if (sc->at_start && sc->strings >= sc->argc)
		sc->bits |= kw_env_var_of((const char *)buf->buf);
	if (n < KW_ENV_STEP) {
		sc->pos += n; /* the whole string and its NUL */
		sc->strings++;
		sc->at_start = 1;
	} else {
		sc->pos += KW_ENV_STEP - 1; /* the string goes on */
		sc->at_start = 0;
	}
	return 0;
}

/* Reads the environment into f->env_bits and f->env_unread, once per exec. */
static __always_inline void kw_env_read(struct kw_exec_facts *f)
{
	__u32 zero = 0;
	struct kw_env_buf *buf = bpf_map_lookup_elem(&kw_env_scratch, &zero);

	if (f->env_state)
		return;
	f->env_state = 1;
	if (!f->argv_addr || !buf) {
		f->env_unread = KW_EXEC_ENV_UNREAD;
		return;
	}
	buf->sc = (struct kw_env_scan){
		.pos = f->argv_addr,
		.end = f->env_end,
		.argc = f->argc,
		.total = f->argc + f->envc,
		.at_start = 1,
	};
	bpf_loop(KW_ENV_STEPS, kw_env_step, 0, 0);
	f->env_bits = buf->sc.bits;
	f->env_unread = buf->sc.done ? 0 : KW_EXEC_ENV_UNREAD;
}

#define KW_ENV_LD_NAMED (KW_ENV_LD_PRELOAD | KW_ENV_LD_AUDIT | KW_ENV_LD_LIBRARY_PATH)
_Static_assert(KW_ENV_LD_PRELOAD == KW_EXEC_LD_PRELOAD && KW_ENV_LD_AUDIT == KW_EXEC_LD_AUDIT &&
		       KW_ENV_LD_LIBRARY_PATH == KW_EXEC_LD_LIBRARY_PATH,
	       "the LD_* three are their own refusal bits");

/* A path means another file from another mount namespace or root: a private one (any
 * user can make one in a user namespace) can mount or link its own file at a source's
 * path. Read once per exec, on the first entry that names sources. */
static __always_inline int kw_exec_elsewhere(struct kw_exec_facts *f)
{
	if (!f->place) {
		struct kw_guard_cfg *g = kw_guard_cfg();
		struct task_struct *task = bpf_get_current_task_btf();
		__u64 ns = (__u64)BPF_CORE_READ(task, nsproxy, mnt_ns);
		__u64 mnt = (__u64)BPF_CORE_READ(task, fs, root.mnt);
		__u64 dentry = (__u64)BPF_CORE_READ(task, fs, root.dentry);
		f->place = g && g->home_mntns && ns == g->home_mntns && mnt == g->home_root_mnt &&
				   dentry == g->home_root_dentry
			       ? 1
			       : 2;
	}
	return f->place == 2;
}

/* Selectors first; the exec's own condition (environment, origin, tracer) last, so that
 * a refusal is recorded only for a workload that would otherwise have matched. */
__noinline int kw_workload_matches(struct kw_exec_facts *f, struct kw_workload *w)
{
	if (!f || !w)
		return 0;
	__u32 flags = w->flags;

	if ((flags & KW_SEL_EXE) && (kw_key_zero(&f->exe) || !kw_key_eq(&w->exe, &f->exe)))
		return 0;
	if ((flags & KW_SEL_SCRIPT) && (kw_key_zero(&f->script) || !kw_key_eq(&w->script, &f->script)))
		return 0;
	if ((flags & KW_SEL_UID) && w->uid != f->uid)
		return 0;
	if ((flags & KW_SEL_GID) && w->gid != f->gid)
		return 0;
	if (flags & KW_SEL_CGROUP) {
		/* The cgroup or any ancestor: compare the ancestor at the selector's depth. */
		if (w->cgroup_id == 0 || w->cgroup_level > 64)
			return 0;
		if (bpf_get_current_ancestor_cgroup_id(w->cgroup_level) != w->cgroup_id)
			return 0;
	}
	if (flags & KW_SEL_CONTAINER) {
		__u32 gen = f->gen;
		void *ctrs = bpf_map_lookup_elem(&kw_ctrs, &gen);
		struct kw_ctr_key k = { .cgroup_id = bpf_get_current_cgroup_id(), .wl = f->wl };
		if (!ctrs || !bpf_map_lookup_elem(ctrs, &k))
			return 0;
	}
	if (flags & (KW_SEL_ARGV | KW_SEL_ARGV_PREFIX)) {
		__u32 zero = 0;
		struct kw_argv_buf *buf = bpf_map_lookup_elem(&kw_argv_scratch, &zero);
		if (!buf)
			return 0;
		if (f->argv_state == 0)
			f->argv_state = kw_load_argv(f, buf) == 0 ? 1 : 2;
		if (f->argv_state != 1)
			return 0;
		__u32 n = w->argv_len;
		if (n > KW_ARGV_MAX)
			return 0;
		if ((flags & KW_SEL_ARGV) ? f->argv_len != n : f->argv_len < n)
			return 0;
		if (!kw_argv_prefix_eq(buf->buf, w->argv, n))
			return 0;
	}
	__u32 why = f->withheld;
	__u32 env = 0;
	if (!why) {
		kw_env_read(f);
		env = f->env_bits & ~w->env_allow;
		why = (env & KW_ENV_LD_NAMED) | f->env_unread;
		if (env & ~KW_ENV_LD_NAMED)
			why |= KW_EXEC_CODE_ENV;
	}
	if ((flags & KW_SEL_SOURCES) && kw_exec_elsewhere(f))
		why |= KW_EXEC_ELSEWHERE;
	if (why) {
		if (f->refused_ident == ~0u) {
			f->refused = why;
			f->refused_env = env;
			f->refused_ident = w->ident;
		}
		return 0;
	}
	return 1;
}

struct kw_best {
	__u32 wl;  /* lowest matching workload index so far, ~0u none */
	__u32 pin; /* the pinned file whose list it came from */
};

/* Evaluates one candidate list (ascending workload indices) and keeps the lowest
 * match: the first matching entry in policy order wins across all lists. A global
 * function: the verifier walks its loop once, not once per list an exec looks at. */
__noinline int kw_eval_list(struct kw_exec_facts *f, struct kw_best *best, __u32 list_id, __u32 pin_id)
{
	if (!f || !best)
		return 0;
	__u32 gen = f->gen;
	void *lists = bpf_map_lookup_elem(&kw_lists, &gen);
	void *wls = bpf_map_lookup_elem(&kw_wls, &gen);
	if (!lists || !wls)
		return 0;
	struct kw_cand_list *l = bpf_map_lookup_elem(lists, &list_id);
	if (!l)
		return 0;
	for (__u32 i = 0; i < KW_CAND_MAX; i++) {
		if (i >= l->n)
			break;
		__u32 idx = l->wl[i];
		if (idx >= best->wl)
			break;
		struct kw_workload *w = bpf_map_lookup_elem(wls, &idx);
		f->wl = idx;
		if (w && kw_workload_matches(f, w)) {
			best->wl = idx;
			best->pin = pin_id;
			break;
		}
	}
	return 0;
}

/* The pinned-file entry for KEY if its ctime is still the one that was hashed. */
static __always_inline struct kw_file_val *kw_pinned(void *files, struct kw_file_key *key, __s64 sec, __u32 nsec)
{
	struct kw_file_val *v = bpf_map_lookup_elem(files, key);

	if (!v || v->ctime_sec != sec || v->ctime_nsec != nsec)
		return 0;
	return v;
}

#define MNT_INTERNAL 0x4000

/* An executable with no name on disk: memfd (an internal mount), O_TMPFILE or deleted. */
static __always_inline int kw_anonymous_file(struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	int mnt_flags = BPF_CORE_READ(file, f_path.mnt, mnt_flags);
	return (mnt_flags & MNT_INTERNAL) || BPF_CORE_READ(inode, __i_nlink) == 0;
}

/* Traced by someone the policy does not list as a debugger (by executable; the tracer
 * is task->parent while traced). */
static __always_inline int kw_traced_by_stranger(struct task_struct *task)
{
	if (!BPF_CORE_READ(task, ptrace))
		return 0;
	struct task_struct *tracer = BPF_CORE_READ(task, parent);
	if (!tracer)
		return 1;
	/* By its executable: a pointer read from another task cannot key task storage. */
	return !kw_debugger_of(tracer, 0);
}

/*
 * A seccomp filter with a user-notification listener lets whoever holds the listener
 * answer the process's trapped syscalls: return any value, or install a descriptor of
 * its own in the process (SECCOMP_IOCTL_NOTIF_ADDFD), which the process then connects for
 * it. Filters survive exec, so one installed before the exec of a pinned binary steers the
 * attested image. The only holder the kernel trusts is the agent, alone (kw_listeners,
 * registered by kw_guard.bpf.c), matched by filter address and notification state. The
 * chain is walked to its end; a chain longer than the walk counts as foreign (a kernel
 * caps the instructions of all filters at 32768, each costing at least 5, so 8192 filters
 * reach every chain the kernel admits).
 */
#define KW_FILTER_WALK 8192

struct kw_filter_walk {
	struct seccomp_filter *f;
	__u32 foreign;
	__u32 done;
};

static long kw_filter_step(__u32 i, struct kw_filter_walk *w)
{
	/* A local, not w->f inside BPF_CORE_READ: CO-RE would relocate struct kw_filter_walk. */
	struct seccomp_filter *f = w->f;

	if (!f) {
		w->done = 1;
		return 1;
	}
	struct notification *n = BPF_CORE_READ(f, notif);
	if (n) {
		__u64 key = (__u64)f;
		struct kw_listener *l = bpf_map_lookup_elem(&kw_listeners, &key);
		if (!l || l->notif != (__u64)n) {
			w->foreign = 1;
			return 1;
		}
	}
	w->f = BPF_CORE_READ(f, prev);
	return 0;
}

static __always_inline int kw_foreign_listener(struct task_struct *task)
{
	struct kw_filter_walk w = { .f = BPF_CORE_READ(task, seccomp.filter) };

	if (!w.f)
		return 0;
	bpf_loop(KW_FILTER_WALK, kw_filter_step, &w, 0);
	return w.foreign || !w.done;
}

/* Root running the recorded kwarden binary, untraced, with no loader configuration (the
 * agent runs no interpreter, so only KW_ENV_LOADER counts): the agent
 * (or its CLI), which may then take over the guarded pins and maps. */
static __always_inline int kw_is_agent_exec(struct kw_exec_facts *f, struct kw_file_key *exe, __s64 sec, __u32 nsec,
					    struct task_struct *task)
{
	struct kw_guard_cfg *g = kw_guard_cfg();
	if (!g || !g->enabled || f->uid != 0 || g->agent_exe.ino == 0)
		return 0;
	if (g->agent_exe.dev != exe->dev || g->agent_exe.ino != exe->ino || g->agent_ctime_sec != sec ||
	    g->agent_ctime_nsec != nsec)
		return 0;
	if (BPF_CORE_READ(task, ptrace) || (f->withheld & KW_EXEC_LISTENER))
		return 0;
	kw_env_read(f);
	return !(f->env_bits & KW_ENV_LOADER) && !f->env_unread;
}

SEC("lsm/bprm_committed_creds")
int BPF_PROG(kw_exec_commit, struct linux_binprm *bprm)
{
	struct kw_exec_facts f = {};
	struct kw_best best = { .wl = ~0u, .pin = ~0u };
	struct kw_file_key exe = {};
	__s64 exe_sec = 0;
	__u32 exe_nsec = 0;
	__u64 uid_gid = bpf_get_current_uid_gid();
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 gen = kw_generation();
	struct kw_file_val *exe_val = 0, *script_val = 0;
	struct kw_exec_file *given;
	void *files = bpf_map_lookup_elem(&kw_files, &gen);
	void *wls = bpf_map_lookup_elem(&kw_wls, &gen);
	struct task_struct *task = bpf_get_current_task_btf();

	f.uid = (__u32)uid_gid;
	f.gid = uid_gid >> 32;
	f.argv_addr = BPF_CORE_READ(bprm, p);
	f.argc = BPF_CORE_READ(bprm, argc);
	f.envc = BPF_CORE_READ(bprm, envc);
	f.env_end = BPF_CORE_READ(bprm, exec);
	f.refused_ident = ~0u;
	f.gen = gen;
	__u64 stack_end = BPF_CORE_READ(bprm, vma, vm_end);
	if (stack_end > f.argv_addr)
		f.argv_avail = stack_end - f.argv_addr > KW_ARGV_MAX ? KW_ARGV_MAX : stack_end - f.argv_addr;
	kw_file_facts(bprm->file, &exe, &exe_sec, &exe_nsec);
	given = bpf_map_lookup_elem(&kw_execs, &tid);
	if (kw_anonymous_file(bprm->file))
		f.withheld |= KW_EXEC_ANON;
	if (kw_traced_by_stranger(task))
		f.withheld |= KW_EXEC_TRACED;
	if (kw_foreign_listener(task))
		f.withheld |= KW_EXEC_LISTENER;

	if (files) {
		exe_val = kw_pinned(files, &exe, exe_sec, exe_nsec);
		if (exe_val) {
			f.exe = exe;
		} else {
			struct kw_file_key layer = {};
			__s64 layer_sec = 0;
			__u32 layer_nsec = 0;
			if (kw_file_layer_facts(bprm->file, &layer, &layer_sec, &layer_nsec)) {
				exe_val = kw_pinned(files, &layer, layer_sec, layer_nsec);
				if (exe_val)
					f.exe = layer;
			}
		}
		/* execve() was given another file than the one that now runs: a #! script. */
		if (given && !kw_key_eq(&given->key, &exe)) {
			struct kw_exec_file g = *given;
			script_val = kw_pinned(files, &g.key, g.ctime_sec, g.ctime_nsec);
			if (script_val)
				f.script = g.key;
		}
	}
	if (given)
		bpf_map_delete_elem(&kw_execs, &tid);

	if (script_val)
		kw_eval_list(&f, &best, script_val->list_id, script_val->pin_id);
	if (exe_val)
		kw_eval_list(&f, &best, exe_val->list_id, exe_val->pin_id);
	kw_eval_list(&f, &best, KW_LIST_ANY, ~0u);

	/* What survives an exec: enrolment (the seccomp filter does too), and the agent's
	 * mark when this exec is the agent's binary. */
	struct kw_task *t = bpf_task_storage_get(&kw_tasks, task, 0, 0);
	__u32 flags = t ? (t->flags & KW_TASK_ENROLLED) : 0;
	if (kw_is_agent_exec(&f, &exe, exe_sec, exe_nsec, task))
		flags |= KW_TASK_AGENT;

	if (best.wl != ~0u) {
		__u32 idx = best.wl;
		struct kw_workload *w = wls ? bpf_map_lookup_elem(wls, &idx) : 0;
		if (!w)
			return 0;
		t = bpf_task_storage_get(&kw_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t)
			return 0; /* no memory: the process stays unattested (fail closed) */
		t->ident = w->ident;
		t->wl = idx + 1;
		t->flags = flags | ((w->flags & KW_SEL_SOURCES) ? KW_TASK_SOURCES : 0);
		t->pin_id = best.pin;
		t->exec_ns = bpf_ktime_get_ns();
		kw_count(KW_CNT_EXEC_ATTESTED);
		return 0;
	}
	/* exec of anything that is not attested loses the identity. */
	if (!t && flags)
		t = bpf_task_storage_get(&kw_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (t) {
		if (t->ident != KW_IDENT_NONE)
			kw_count(KW_CNT_EXEC_CLEARED);
		t->ident = KW_IDENT_NONE;
		t->wl = 0;
		t->flags = flags;
		t->pin_id = ~0u;
		t->exec_ns = bpf_ktime_get_ns(); /* how long it waited, if it is attested later */
	}
	/* After the clearing: the event shows the process as it now is, unattested. */
	if (f.refused_ident != ~0u) {
		struct kw_guard_target g = {
			.action = KW_GUARD_EXEC,
			.decision = KW_DECISION_DENY,
			.detail = f.refused,
			.tgid = f.refused_env,
			.ident = f.refused_ident,
		};
		kw_emit_guard(&g);
	}
	return 0;
}

SEC("lsm/task_alloc")
int BPF_PROG(kw_task_alloc, struct task_struct *task, unsigned long clone_flags)
{
	struct kw_task *parent = kw_current_task_state();
	struct kw_task *child;

	if (!parent)
		return 0;
	/* The agent is one process: its threads are the agent, its children are not. */
	__u32 agent = (clone_flags & CLONE_THREAD) ? parent->flags & KW_TASK_AGENT : 0;
	if (parent->ident == KW_IDENT_NONE && !(parent->flags & KW_TASK_ENROLLED) && !agent)
		return 0;
	child = bpf_task_storage_get(&kw_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (child) {
		*child = *parent;
		child->flags = (parent->flags & ~KW_TASK_AGENT) | agent;
	}
	/* Without memory the child simply stays unattested: its connections are refused. */
	return 0;
}
