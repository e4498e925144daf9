/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The guard's shared pieces: is it on, who is the agent, who may debug, guard events. */
#ifndef KWARDEN_BPF_GUARD_H
#define KWARDEN_BPF_GUARD_H

#include "lib/common.h"

static __always_inline struct kw_guard_cfg *kw_guard_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&kw_guard, &zero);
}

static __always_inline int kw_guard_on(void)
{
	struct kw_guard_cfg *g = kw_guard_cfg();
	return g && g->enabled;
}

static __always_inline int kw_task_is_agent(struct kw_task *t)
{
	return t && (t->flags & KW_TASK_AGENT);
}

/* Attested, enrolled, or the agent: a process whose memory and sockets are guarded. */
static __always_inline int kw_task_is_guarded(struct kw_task *t)
{
	return t && (t->ident != KW_IDENT_NONE || (t->flags & (KW_TASK_AGENT | KW_TASK_ENROLLED)));
}

/* The state that guards TASK's memory, which belongs to its whole thread group: the
 * thread's own when it is guarded, else its thread-group leader's. Threads inherit the
 * state at clone, but a process attested from /proc has only its leader labelled (no
 * pidfd names another thread before 6.9), and /proc/TID/mem, PTRACE_ATTACH and
 * process_vm_readv take any thread's id. */
static __always_inline struct kw_task *kw_process_state(struct task_struct *task)
{
	struct kw_task *t = bpf_task_storage_get(&kw_tasks, task, 0, 0);
	if (kw_task_is_guarded(t))
		return t;
	struct task_struct *leader = task->group_leader;
	if (!leader || leader == task)
		return t;
	struct kw_task *lt = bpf_task_storage_get(&kw_tasks, leader, 0, 0);
	return kw_task_is_guarded(lt) ? lt : t;
}

/* Index + 1 of the allow_debuggers entry that lets TASK (with storage T) in, 0 none: by
 * its identity first, then by its executable. */
static __always_inline __u32 kw_debugger_of(struct task_struct *task, struct kw_task *t)
{
	struct kw_debugger_key k = {};
	__u32 *idx;

	if (t && t->ident != KW_IDENT_NONE) {
		k.kind = KW_DEBUGGER_IDENT;
		k.ident = t->ident;
		idx = bpf_map_lookup_elem(&kw_debuggers, &k);
		if (idx)
			return *idx + 1;
	}
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return 0;
	__s64 sec;
	__u32 nsec;
	__builtin_memset(&k, 0, sizeof(k));
	k.kind = KW_DEBUGGER_EXE;
	kw_file_facts(exe, &k.exe, &sec, &nsec);
	idx = bpf_map_lookup_elem(&kw_debuggers, &k);
	return idx ? *idx + 1 : 0;
}

/* The workload entry of generation GEN that attested T: NULL when T is not attested, or
 * when a reload put another identity's entry at its index (the caller then treats T as
 * having no opening: fail closed). */
static __always_inline struct kw_workload *kw_task_workload(struct kw_task *t, __u32 gen)
{
	if (!t || t->ident == KW_IDENT_NONE || t->wl == 0)
		return 0;
	void *wls = bpf_map_lookup_elem(&kw_wls, &gen);
	if (!wls)
		return 0;
	__u32 idx = t->wl - 1;
	struct kw_workload *w = bpf_map_lookup_elem(wls, &idx);
	return w && w->ident == t->ident ? w : 0;
}

/* T's workload entry sets FLAG (enum kw_sel_flags), in the generation in force. */
static __always_inline int kw_task_allows(struct kw_task *t, __u32 flag)
{
	struct kw_workload *w = kw_task_workload(t, kw_generation());
	return w && (w->flags & flag);
}

/* Deepest cgroup level searched for a workload's cgroup selector (as kw_attest). */
#define KW_CGROUP_LEVELS 64

/* The current process is in a cgroup that a workload selector names, or below one (the
 * selector's cgroup is then one of its ancestors, at the selector's own level), or in an
 * enrolled container's cgroup, or below it (a sub-cgroup made inside the container).
 * A global function, like kw_emit_guard: verified once per program, not on every path
 * that reaches it. */
__noinline int kw_in_governed_cgroup(__u32 gen)
{
	void *cgs = bpf_map_lookup_elem(&kw_cgsel, &gen);
	void *ctrs = bpf_map_lookup_elem(&kw_ctrs, &gen);
	struct kw_ctr_key ck = { .wl = KW_CTR_GOVERNED };
	int level = BPF_CORE_READ(bpf_get_current_task_btf(), cgroups, dfl_cgrp, level);

	for (int i = 0; i < KW_CGROUP_LEVELS; i++) {
		if (i > level)
			break;
		__u64 id = bpf_get_current_ancestor_cgroup_id(i);
		if (cgs) {
			__u32 *at = bpf_map_lookup_elem(cgs, &id);
			if (at && *at == (__u32)i)
				return 1;
		}
		if (ctrs) {
			ck.cgroup_id = id;
			if (bpf_map_lookup_elem(ctrs, &ck))
				return 1;
		}
	}
	return 0;
}

struct kw_guard_target {
	__u8 action;   /* enum kw_guard_action */
	__u8 decision; /* enum kw_decision */
	__s32 err;
	__u32 detail;
	__u32 tgid;
	__u32 ident;
	__u32 obj_id;
	struct kw_file_key inode;
	const char *name; /* kernel string, or 0 */
};

__noinline int kw_emit_guard(struct kw_guard_target *g)
{
	if (!g)
		return 0;
	if (g->decision == KW_DECISION_DENY)
		kw_count(KW_CNT_GUARD_DENIED);
	struct kw_ev_guard *e = kw_event_reserve(sizeof(*e), KW_EV_GUARD);
	if (!e)
		return 0;
	__builtin_memset(&e->proc, 0, sizeof(*e) - sizeof(e->hdr));
	kw_fill_proc(&e->proc);
	e->action = g->action;
	e->decision = g->decision;
	e->err = g->err;
	e->detail = g->detail;
	e->target_tgid = g->tgid;
	e->target_ident = g->ident;
	e->obj_id = g->obj_id;
	e->inode = g->inode;
	if (g->name)
		bpf_probe_read_kernel_str(e->name, sizeof(e->name), g->name);
	__u32 gen = kw_generation();
	struct kw_config *cfg = bpf_map_lookup_elem(&kw_cfg, &gen);
	e->revision = cfg ? cfg->revision : 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#endif /* KWARDEN_BPF_GUARD_H */
