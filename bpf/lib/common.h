/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Inline helpers shared by the programs: generation, counters, files, process facts. */
#ifndef KWARDEN_BPF_COMMON_H
#define KWARDEN_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "lib/maps.h"

#define EPERM 1

static __always_inline void kw_count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&kw_counters, &which);
	if (c)
		*c += 1;
}

static __always_inline __u32 kw_generation(void)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&kw_active, &zero);
	return g ? (*g & 1) : 0;
}

/* Inode ctime moved three times: timespec64 i_ctime (<= 6.5), __i_ctime (6.6-6.10),
 * i_ctime_sec/i_ctime_nsec (6.11+). CO-RE picks the one the running kernel has. */
struct inode___v61 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));
struct inode___v66 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

static __always_inline void kw_inode_ctime(struct inode *inode, __s64 *sec, __u32 *nsec)
{
	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		*sec = BPF_CORE_READ(inode, i_ctime_sec);
		*nsec = BPF_CORE_READ(inode, i_ctime_nsec);
	} else if (bpf_core_field_exists(((struct inode___v66 *)inode)->__i_ctime)) {
		struct inode___v66 *i = (void *)inode;
		*sec = BPF_CORE_READ(i, __i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, __i_ctime.tv_nsec);
	} else {
		struct inode___v61 *i = (void *)inode;
		*sec = BPF_CORE_READ(i, i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(i, i_ctime.tv_nsec);
	}
}

static __always_inline void kw_file_facts(struct file *file, struct kw_file_key *key, __s64 *ctime_sec,
					  __u32 *ctime_nsec)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
	kw_inode_ctime(inode, ctime_sec, ctime_nsec);
}

static __always_inline struct kw_task *kw_current_task_state(void)
{
	return bpf_task_storage_get(&kw_tasks, bpf_get_current_task_btf(), 0, 0);
}

/* Who is doing this, for events. */
static __always_inline void kw_fill_proc(struct kw_proc_info *p)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	struct kw_task *t = kw_current_task_state();

	p->pid = (__u32)pid_tgid;
	p->tgid = pid_tgid >> 32;
	p->uid = (__u32)uid_gid;
	p->gid = uid_gid >> 32;
	p->start_ns = BPF_CORE_READ(task, group_leader, start_time);
	p->cgroup_id = bpf_get_current_cgroup_id();
	p->ident = t ? t->ident : KW_IDENT_NONE;
	p->pin_id = t ? t->pin_id : ~0u;
	p->task_flags = t ? t->flags : 0;
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe)
		kw_file_facts(exe, &p->exe, &p->exe_ctime_sec, &p->exe_ctime_nsec);
	bpf_get_current_comm(p->comm, sizeof(p->comm));
}

static __always_inline void *kw_event_reserve(__u32 size, __u16 type)
{
	struct kw_ev_hdr *h = bpf_ringbuf_reserve(&kw_events, size, 0);
	if (!h) {
		kw_count(KW_CNT_EVENTS_DROPPED);
		return 0;
	}
	h->type = type;
	h->version = KW_ABI_VERSION;
	h->size = size;
	h->ktime_ns = bpf_ktime_get_ns();
	return h;
}

#endif /* KWARDEN_BPF_COMMON_H */
