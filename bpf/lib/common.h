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
#define EACCES 13

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

/*
 * overlayfs (a container's root) gives every file an inode of its own, on a device of its
 * own that did not exist when the policy was applied. A file that was never copied up is
 * the image layer's file, unchanged: it is also identified by that inode, which the agent
 * pins by the layer's host path. A file with an upper dentry was written in the container's
 * writable layer (or had its metadata changed there): it keeps the overlay inode, which
 * nothing pins. A file whose data comes from a second lower layer (metacopy) is not
 * mapped either: its first lower inode is a metadata-only file, not the code.
 * overlayfs is a module, so its types are in the module's BTF: the agent reads their
 * layout there before loading the programs (bpf/abi.h kw_ovl_layout); without the
 * module every overlay file keeps its overlay inode, which matches nothing.
 */
#define KW_OVERLAYFS_SUPER_MAGIC 0x794c7630

const volatile struct kw_ovl_layout kw_ovl = {};

static __always_inline void *kw_read_ptr(void *base, __u32 off)
{
	void *p = 0;
	bpf_probe_read_kernel(&p, sizeof(p), base + off);
	return p;
}

static __always_inline struct inode *kw_overlay_lower(struct inode *inode)
{
	struct dentry *lower = 0;
	void *oi = (void *)inode - kw_ovl.vfs_inode;

	if (kw_ovl.kind == KW_OVL_ENTRY) {
		void *oe = kw_read_ptr(oi, kw_ovl.oe);
		unsigned int numlower = 0;
		if (kw_read_ptr(oi, kw_ovl.upperdentry) || !oe)
			return inode;
		bpf_probe_read_kernel(&numlower, sizeof(numlower), oe + kw_ovl.numlower);
		if (numlower != 1)
			return inode;
		lower = kw_read_ptr(oe, kw_ovl.lower_dentry);
	} else if (kw_ovl.kind == KW_OVL_LOWERPATH) {
		if (kw_read_ptr(oi, kw_ovl.upperdentry) || kw_read_ptr(oi, kw_ovl.lowerdata))
			return inode;
		lower = kw_read_ptr(oi, kw_ovl.lower_dentry);
	}
	struct inode *real = lower ? BPF_CORE_READ(lower, d_inode) : 0;
	return real ? real : inode;
}

static __always_inline void kw_inode_facts(struct inode *inode, struct kw_file_key *key, __s64 *ctime_sec,
					   __u32 *ctime_nsec)
{
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
	kw_inode_ctime(inode, ctime_sec, ctime_nsec);
}

/* FILE's own inode: what stat(2) of its path says (in the kernel's dev_t encoding). */
static __always_inline void kw_file_facts(struct file *file, struct kw_file_key *key, __s64 *ctime_sec,
					  __u32 *ctime_nsec)
{
	kw_inode_facts(BPF_CORE_READ(file, f_inode), key, ctime_sec, ctime_nsec);
}

/*
 * The image layer's file under FILE, when FILE is on overlayfs and comes unchanged from
 * one lower layer: 1 and its facts, else 0. A file is pinned by one of two identities:
 * its own inode (a host whose root is an overlay pins its files by their paths there),
 * or, for a container's file, its layer's file, which the policy names by its host path.
 * Lookups try the own inode first, then this one.
 */
static __always_inline int kw_file_layer_facts(struct file *file, struct kw_file_key *key, __s64 *ctime_sec,
					       __u32 *ctime_nsec)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (BPF_CORE_READ(inode, i_sb, s_magic) != KW_OVERLAYFS_SUPER_MAGIC)
		return 0;
	struct inode *lower = kw_overlay_lower(inode);
	if (lower == inode)
		return 0;
	kw_inode_facts(lower, key, ctime_sec, ctime_nsec);
	return 1;
}

static __always_inline struct kw_task *kw_current_task_state(void)
{
	return bpf_task_storage_get(&kw_tasks, bpf_get_current_task_btf(), 0, 0);
}

/*
 * The absolute path of FILE, as d_path() would give it in the caller's mount tree.
 * bpf_d_path() is not allowed in the hooks that need this (socket_connect), and the
 * process may be gone by the time the agent reads the event, so walk it here: up the
 * dentries to the mount's root, across to the mountpoint in the parent mount, until
 * the root of the tree. Components are collected first, then written root-first.
 * Both loops are bpf_loop() callbacks (open-coded, their data-dependent branches exhaust
 * the verifier). The verifier walks a callback until its states converge; the counters
 * live in the per-CPU scratch value, whose contents it does not track, so the state is
 * the same at every step and the walk ends at once. (On the stack, precise as array
 * indices, they made it one walk per step up to the depth, in every program that emits
 * an event.)
 */
struct kw_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
};

static long kw_walk_up(__u32 i, struct kw_walk *w)
{
	__u32 zero = 0;
	struct kw_path_buf *s = bpf_map_lookup_elem(&kw_path_scratch, &zero);
	/* Locals, not w->x inside BPF_CORE_READ: CO-RE would relocate struct kw_walk. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (!s)
		return 1;
	if (dentry == root || dentry == parent) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
		if (up == mnt || !up)
			return 1; /* the root of the mount tree */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		w->vfsmnt = __builtin_preserve_access_index(&up->mnt);
		return 0;
	}
	__u32 n = s->n;
	s->names[n & (KW_PATH_DEPTH - 1)] = (__u64)BPF_CORE_READ(dentry, d_name.name);
	s->lens[n & (KW_PATH_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.len);
	s->n = ++n;
	w->dentry = parent;
	return n >= KW_PATH_DEPTH;
}

static long kw_write_down(__u32 j, void *unused)
{
	__u32 zero = 0;
	struct kw_path_buf *s = bpf_map_lookup_elem(&kw_path_scratch, &zero);

	if (!s)
		return 1;
	__u32 n = s->n, off = s->off;
	if (j >= n || off >= KW_PATH_MAX - 1)
		return 1;
	__u32 idx = (n - 1 - j) & (KW_PATH_DEPTH - 1);
	s->buf[off & (KW_PATH_MAX - 1)] = '/';
	off++;
	bpf_probe_read_kernel_str(&s->buf[off & (KW_PATH_MAX - 1)], KW_PATH_MAX, (void *)s->names[idx]);
	s->off = off + (s->lens[idx] & (KW_PATH_MAX - 1));
	return 0;
}

static __always_inline void kw_file_path(struct file *file, char *out)
{
	__u32 zero = 0;
	struct kw_path_buf *s = bpf_map_lookup_elem(&kw_path_scratch, &zero);
	struct kw_walk w = {};

	if (!s)
		return;
	w.dentry = BPF_CORE_READ(file, f_path.dentry);
	w.vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	w.mnt = container_of(w.vfsmnt, struct mount, mnt);
	s->n = 0;
	s->off = 0;
	bpf_loop(KW_PATH_DEPTH, kw_walk_up, &w, 0);
	s->buf[0] = '/';
	s->buf[1] = 0;
	bpf_loop(KW_PATH_DEPTH, kw_write_down, 0, 0);
	__u32 n = s->n, off = s->off;
	if (n > 0)
		s->buf[(off >= KW_PATH_MAX ? KW_PATH_MAX - 1 : off) & (KW_PATH_MAX - 1)] = 0;
	__builtin_memcpy(out, s->buf, KW_PATH_MAX);
	out[KW_PATH_MAX - 1] = 0;
}

/* Who is doing this, for events. A global function: the verifier walks it once per
 * program, not once per place the program may emit an event from (a program with three
 * such places carried three copies of the path walk, and took seconds to load under
 * emulation). */
__noinline int kw_fill_proc(struct kw_proc_info *p)
{
	if (!p)
		return 0;
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
	if (exe) {
		kw_file_facts(exe, &p->exe, &p->exe_ctime_sec, &p->exe_ctime_nsec);
		kw_file_path(exe, p->exe_path);
	}
	bpf_get_current_comm(p->comm, sizeof(p->comm));
	return 0;
}

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define CLONE_THREAD 0x00010000 /* include/uapi/linux/sched.h */

/*
 * The kw_ktls state of the socket FILE is, NULL for any other file or an unmarked socket.
 * For anything that is not a socket this is two loads and a compare. bpf_sock_from_file
 * (checks f_op, which is what makes file->private_data a struct socket) is reached
 * through tracing_prog_func_proto, which bpf_lsm_func_proto falls back to on 6.1 and
 * 6.12; it returns a BTF pointer whose ->sk the sk-storage helper takes, where a read of
 * the void * private_data would only give a scalar.
 */
static __always_inline struct kw_ktls_state *kw_ktls_of_file(struct file *file)
{
	struct inode *inode = file->f_inode;
	if (!inode || (inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock || !sock->sk || !sock->sk->sk_bpf_storage)
		return 0; /* nothing stored on the socket: no helper call */
	return bpf_sk_storage_get(&kw_ktls, sock->sk, 0, 0);
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
