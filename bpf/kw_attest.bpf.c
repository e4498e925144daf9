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
 */
#include "lib/common.h"

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
	return 1;
}

struct kw_best {
	__u32 wl;  /* lowest matching workload index so far, ~0u none */
	__u32 pin; /* the pinned file whose list it came from */
};

/* Evaluates one candidate list (ascending workload indices) and keeps the lowest
 * match: the first matching entry in policy order wins across all lists. */
static __always_inline void kw_eval_list(struct kw_exec_facts *f, struct kw_best *best, void *lists, void *wls,
					 __u32 list_id, __u32 pin_id)
{
	struct kw_cand_list *l;

	if (!lists || !wls)
		return;
	l = bpf_map_lookup_elem(lists, &list_id);
	if (!l)
		return;
	for (__u32 i = 0; i < KW_CAND_MAX; i++) {
		if (i >= l->n)
			break;
		__u32 idx = l->wl[i];
		if (idx >= best->wl)
			break;
		struct kw_workload *w = bpf_map_lookup_elem(wls, &idx);
		if (w && kw_workload_matches(f, w)) {
			best->wl = idx;
			best->pin = pin_id;
			break;
		}
	}
}

/* The pinned-file entry for KEY if its ctime is still the one that was hashed. */
static __always_inline struct kw_file_val *kw_pinned(void *files, struct kw_file_key *key, __s64 sec, __u32 nsec)
{
	struct kw_file_val *v = bpf_map_lookup_elem(files, key);

	if (!v || v->ctime_sec != sec || v->ctime_nsec != nsec)
		return 0;
	return v;
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
	void *lists = bpf_map_lookup_elem(&kw_lists, &gen);
	void *wls = bpf_map_lookup_elem(&kw_wls, &gen);

	f.uid = (__u32)uid_gid;
	f.gid = uid_gid >> 32;
	f.argv_addr = BPF_CORE_READ(bprm, p);
	f.argc = BPF_CORE_READ(bprm, argc);
	__u64 stack_end = BPF_CORE_READ(bprm, vma, vm_end);
	if (stack_end > f.argv_addr)
		f.argv_avail = stack_end - f.argv_addr > KW_ARGV_MAX ? KW_ARGV_MAX : stack_end - f.argv_addr;
	kw_file_facts(bprm->file, &exe, &exe_sec, &exe_nsec);
	given = bpf_map_lookup_elem(&kw_execs, &tid);

	if (files) {
		exe_val = kw_pinned(files, &exe, exe_sec, exe_nsec);
		if (exe_val)
			f.exe = exe;
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
		kw_eval_list(&f, &best, lists, wls, script_val->list_id, script_val->pin_id);
	if (exe_val)
		kw_eval_list(&f, &best, lists, wls, exe_val->list_id, exe_val->pin_id);
	kw_eval_list(&f, &best, lists, wls, KW_LIST_ANY, ~0u);

	struct task_struct *task = bpf_get_current_task_btf();
	struct kw_task *t;
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
		t->flags = 0;
		t->pin_id = best.pin;
		t->exec_ns = bpf_ktime_get_ns();
		kw_count(KW_CNT_EXEC_ATTESTED);
	} else {
		/* exec of anything that is not attested loses the identity. */
		t = bpf_task_storage_get(&kw_tasks, task, 0, 0);
		if (t && t->ident != KW_IDENT_NONE) {
			t->ident = KW_IDENT_NONE;
			t->wl = 0;
			t->flags = 0;
			t->pin_id = ~0u;
			kw_count(KW_CNT_EXEC_CLEARED);
		}
	}
	return 0;
}

SEC("lsm/task_alloc")
int BPF_PROG(kw_task_alloc, struct task_struct *task, unsigned long clone_flags)
{
	struct kw_task *parent = kw_current_task_state();
	struct kw_task *child;

	if (!parent || parent->ident == KW_IDENT_NONE)
		return 0;
	child = bpf_task_storage_get(&kw_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (child)
		*child = *parent;
	/* Without memory the child simply stays unattested: its connections are refused. */
	return 0;
}
