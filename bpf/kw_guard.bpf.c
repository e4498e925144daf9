// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The guard: an attacker with code execution next to a workload (same uid, same cgroup,
 * root in a container) must not borrow its identity or switch kwarden off.
 *
 *   ptrace_access_check  PTRACE_ATTACH/SEIZE, /proc/PID/mem, process_vm_readv/writev and
 *                        pidfd_getfd (all PTRACE_MODE_ATTACH) against an attested or
 *                        enrolled process, or the agent: the agent only, plus the
 *                        debuggers the policy lists (each one an event).
 *   ptrace_traceme       the same, asked the other way round (the target offers itself).
 *   file_receive         a socket the agent runs mutual TLS on is received (SCM_RIGHTS,
 *                        pidfd_getfd, seccomp ADDFD) only by a process of its owner's
 *                        identity, or the agent. fork() passes no file and is not affected.
 *   bpf                  *_GET_FD_BY_ID of kwarden's maps, programs and links (kw_guard_ids).
 *   inode_permission     opening a pin under the pin directory (BPF_OBJ_GET, open(2)).
 *   file_open            also records the agent's executable when the agent asks
 *                        (kw_guard_cfg.capture_tgid).
 *   mmap_file, file_mprotect
 *                        an attested process maps executable only the code pinned for
 *                        its identity (kw_code): its exe, loader, libraries and the
 *                        policy's allow_code, each unchanged since the policy was applied.
 *                        Anonymous memory (JIT compilers) is no file and stays allowed.
 *   inode_unlink/rmdir/rename/link/create, sb_umount
 *                        removing, replacing or hiding pins, and the same on the agent's
 *                        state directory (CA keys); file_open reads of that directory.
 *
 * Each refusal is an event (kw_ev_guard) and EPERM (which /proc/PID/mem reports as
 * EACCES; a descriptor refused to recvmsg is dropped with MSG_CTRUNC). Everything passes while the guard is
 * off (kw_guard.enabled = 0: `kwarden agent --unprotect`, or `kwarden stop`), and for the
 * agent (KW_TASK_AGENT: set by the agent on itself, or at exec for root running the
 * recorded kwarden binary; see kw_attest.bpf.c).
 */
#include "lib/guard.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define PTRACE_MODE_ATTACH 0x02
#define PTRACE_MODE_FSCREDS 0x08
#define MAY_WRITE 0x02
#define MAY_READ 0x04
#define MAY_APPEND 0x08
#define BPF_FS_MAGIC 0xcafe4a11

/* Refuses TRACER (storage TT) access to TARGET (storage T) unless it is the agent or an
 * allowed debugger; the decision is an event either way but for the agent. */
static __always_inline int kw_guard_ptrace(struct task_struct *tracer, struct kw_task *tt, struct task_struct *target,
					   struct kw_task *t, __u32 mode)
{
	if (!kw_task_is_guarded(t) || !kw_guard_on() || kw_task_is_agent(tt))
		return 0;
	struct kw_guard_target g = {
		.action = KW_GUARD_PTRACE,
		.detail = mode,
		.tgid = BPF_CORE_READ(target, tgid),
		.ident = t->ident,
		.name = target->comm,
	};
	/* Debuggers are for workloads: the agent's memory holds the CA and SVID keys. */
	__u32 dbg = kw_task_is_agent(t) ? 0 : kw_debugger_of(tracer, tt);
	if (dbg) {
		g.decision = KW_DECISION_ALLOW;
		g.obj_id = dbg - 1;
		kw_emit_guard(&g);
		return 0;
	}
	g.decision = KW_DECISION_DENY;
	/* The event names what the caller gets: mm_access() (/proc/PID/mem, the one
	 * ATTACH|FSCREDS user) turns any refusal into EACCES. */
	g.err = (mode & PTRACE_MODE_FSCREDS) ? EACCES : EPERM;
	kw_emit_guard(&g);
	return -EPERM;
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(kw_ptrace_access, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return ret;
	/* PTRACE_MODE_READ (ps, /proc/PID/fd, ...) stays open: it reads no memory. */
	if (!(mode & PTRACE_MODE_ATTACH))
		return 0;
	struct kw_task *t = kw_process_state(child);
	if (!t)
		return 0;
	return kw_guard_ptrace(bpf_get_current_task_btf(), kw_current_task_state(), child, t, mode);
}

SEC("lsm/ptrace_traceme")
int BPF_PROG(kw_ptrace_traceme, struct task_struct *parent, int ret)
{
	if (ret)
		return ret;
	struct task_struct *task = bpf_get_current_task_btf();
	struct kw_task *me = kw_process_state(task);
	if (!me)
		return 0;
	struct kw_task *pt = bpf_task_storage_get(&kw_tasks, parent, 0, 0);
	return kw_guard_ptrace(parent, pt, task, me, PTRACE_MODE_ATTACH);
}

SEC("lsm/file_receive")
int BPF_PROG(kw_file_receive, struct file *file, int ret)
{
	if (ret)
		return ret;
	struct kw_ktls_state *s = kw_ktls_of_file(file);
	if (!s || !(s->flags & (KW_KTLS_MANAGED | KW_KTLS_HANDSHAKE)))
		return 0;
	struct kw_task *me = kw_current_task_state();
	if (kw_task_is_agent(me) || !kw_guard_on())
		return 0;
	if (me && s->ident != KW_IDENT_NONE && me->ident == s->ident)
		return 0;
	struct kw_guard_target g = {
		.action = KW_GUARD_FD_RECEIVE,
		.decision = KW_DECISION_DENY,
		.err = EPERM,
		.detail = s->flags,
		.ident = s->ident,
	};
	kw_emit_guard(&g);
	return -EPERM;
}

/* The hook gained a fourth argument (bool kernel) in 6.9: read the first three only, and
 * no "ret" (its position differs), so one object loads on 6.1 and 6.12. */
SEC("lsm/bpf")
int BPF_PROG(kw_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	struct kw_guard_id key = {};

	if (cmd == BPF_MAP_GET_FD_BY_ID) {
		key.kind = KW_OBJ_MAP;
		key.id = BPF_CORE_READ(attr, map_id);
	} else if (cmd == BPF_PROG_GET_FD_BY_ID) {
		key.kind = KW_OBJ_PROG;
		key.id = BPF_CORE_READ(attr, prog_id);
	} else if (cmd == BPF_LINK_GET_FD_BY_ID) {
		key.kind = KW_OBJ_LINK;
		key.id = BPF_CORE_READ(attr, link_id);
	} else {
		return 0;
	}
	if (!bpf_map_lookup_elem(&kw_guard_ids, &key) || !kw_guard_on() || kw_task_is_agent(kw_current_task_state()))
		return 0;
	struct kw_guard_target g = {
		.action = KW_GUARD_BPF,
		.decision = KW_DECISION_DENY,
		.err = EPERM,
		.detail = cmd,
		.obj_id = key.id,
	};
	kw_emit_guard(&g);
	return -EPERM;
}

/* The guard kind of INODE (enum kw_guard_inode), 0 when it is none of kwarden's. */
static __always_inline __u32 kw_inode_kind(struct inode *inode, struct kw_file_key *key)
{
	if (!inode)
		return 0;
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->ino = BPF_CORE_READ(inode, i_ino);
	__u32 *kind = bpf_map_lookup_elem(&kw_guard_inodes, key);
	return kind ? *kind : 0;
}

static __always_inline int kw_deny_inode(__u32 kind, struct kw_file_key *key, __u32 op, const char *name)
{
	if (!kw_guard_on() || kw_task_is_agent(kw_current_task_state()))
		return 0;
	struct kw_guard_target g = {
		.action = (kind == KW_INODE_PIN || kind == KW_INODE_PIN_DIR) ? KW_GUARD_PIN : KW_GUARD_STATE,
		.decision = KW_DECISION_DENY,
		.err = EPERM,
		.detail = op,
		.inode = *key,
		.name = name,
	};
	kw_emit_guard(&g);
	return -EPERM;
}

/*
 * A change to the directory entry DENTRY in DIR: refused when the entry is one of
 * kwarden's inodes, or when DIR is a guarded directory (so nothing is added next to the
 * pins or the keys either).
 */
static __always_inline int kw_guard_entry(struct inode *dir, struct dentry *dentry, __u32 op)
{
	struct kw_file_key key = {};
	__u32 kind = kw_inode_kind(BPF_CORE_READ(dentry, d_inode), &key);
	if (!kind) {
		kind = kw_inode_kind(dir, &key);
		if (kind != KW_INODE_PIN_DIR && kind != KW_INODE_STATE_DIR)
			return 0;
	}
	return kw_deny_inode(kind, &key, op, (const char *)BPF_CORE_READ(dentry, d_name.name));
}

/*
 * Pins are opened by BPF_OBJ_GET (path lookup + inode_permission, no file is opened) or
 * by open(2). Path walks ask MAY_EXEC of each directory: only a read or write of a file
 * of the bpf filesystem goes on to the lookup, so the cost elsewhere is a superblock
 * magic compare.
 */
SEC("lsm/inode_permission")
int BPF_PROG(kw_inode_perm, struct inode *inode, int mask, int ret)
{
	if (ret)
		return ret;
	if (!(mask & (MAY_READ | MAY_WRITE | MAY_APPEND)) || BPF_CORE_READ(inode, i_sb, s_magic) != BPF_FS_MAGIC)
		return 0;
	struct kw_file_key key = {};
	if (kw_inode_kind(inode, &key) != KW_INODE_PIN)
		return 0;
	return kw_deny_inode(KW_INODE_PIN, &key, KW_OP_OPEN, 0);
}

/* The state directory (CA keys): reads by anyone but the agent, root included. The
 * superblock compare keeps the lookups to files on the state directory's filesystem. */
SEC("lsm/file_open")
int BPF_PROG(kw_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	struct kw_guard_cfg *cfg = kw_guard_cfg();
	struct inode *inode = file->f_inode;
	if (!cfg)
		return 0;
	if (cfg->capture_tgid && cfg->capture_tgid == bpf_get_current_pid_tgid() >> 32) {
		/* The agent asked to be recorded: its executable as exec saw it. */
		struct file *exe = BPF_CORE_READ(bpf_get_current_task_btf(), mm, exe_file);
		if (exe)
			kw_file_facts(exe, &cfg->agent_exe, &cfg->agent_ctime_sec, &cfg->agent_ctime_nsec);
		cfg->capture_tgid = 0;
	}
	if (!cfg->enabled || !inode || BPF_CORE_READ(inode, i_sb, s_dev) != cfg->state_dev)
		return 0;
	struct kw_file_key key = {};
	__u32 kind = kw_inode_kind(inode, &key);
	if (kind != KW_INODE_STATE && kind != KW_INODE_STATE_DIR) {
		struct kw_file_key pkey = {};
		if (kw_inode_kind(BPF_CORE_READ(file, f_path.dentry, d_parent, d_inode), &pkey) != KW_INODE_STATE_DIR)
			return 0;
		kind = KW_INODE_STATE;
	}
	return kw_deny_inode(kind, &key, KW_OP_OPEN, (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name));
}

SEC("lsm/inode_unlink")
int BPF_PROG(kw_inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return kw_guard_entry(dir, dentry, KW_OP_UNLINK);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(kw_inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret)
		return ret;
	return kw_guard_entry(dir, dentry, KW_OP_UNLINK);
}

SEC("lsm/inode_rename")
int BPF_PROG(kw_inode_rename, struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
	     struct dentry *new_dentry)
{
	int err = kw_guard_entry(old_dir, old_dentry, KW_OP_RENAME);
	return err ? err : kw_guard_entry(new_dir, new_dentry, KW_OP_RENAME);
}

SEC("lsm/inode_link")
int BPF_PROG(kw_inode_link, struct dentry *old_dentry, struct inode *dir, struct dentry *new_dentry, int ret)
{
	if (ret)
		return ret;
	struct kw_file_key key = {};
	__u32 kind = kw_inode_kind(BPF_CORE_READ(old_dentry, d_inode), &key);
	if (kind)
		return kw_deny_inode(kind, &key, KW_OP_LINK, (const char *)BPF_CORE_READ(old_dentry, d_name.name));
	return kw_guard_entry(dir, new_dentry, KW_OP_LINK);
}

SEC("lsm/inode_create")
int BPF_PROG(kw_inode_create, struct inode *dir, struct dentry *dentry, unsigned short mode, int ret)
{
	if (ret)
		return ret;
	return kw_guard_entry(dir, dentry, KW_OP_CREATE);
}

/* Unmounting the bpf filesystem that holds the pins would drop them, and with them every
 * program once no agent runs. */
SEC("lsm/sb_umount")
int BPF_PROG(kw_sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	if (ret)
		return ret;
	struct kw_guard_cfg *cfg = kw_guard_cfg();
	struct super_block *sb = BPF_CORE_READ(mnt, mnt_sb);
	if (!cfg || !cfg->enabled || BPF_CORE_READ(sb, s_dev) != cfg->pin_dev)
		return 0;
	struct kw_file_key key = { .dev = cfg->pin_dev, .ino = BPF_CORE_READ(mnt, mnt_root, d_inode, i_ino) };
	return kw_deny_inode(KW_INODE_PIN_DIR, &key, KW_OP_UMOUNT, 0);
}

#define PROT_EXEC 0x4

/*
 * Pinned code only: a PROT_EXEC mapping of FILE by an attested process is refused unless
 * the file, unchanged (same ctime), is in its identity's code set. Refused rather than
 * "identity dropped": sockets the process already holds would stay with the injected
 * code. The set is keyed by the identity id, which outlives policy reloads, so a running
 * process is checked against its identity's set in the policy now in force.
 * Independent of the guard switch: this is the attestation's promise, like the gate.
 */
static __always_inline int kw_code_check(struct file *file, __u32 op)
{
	struct kw_task *t = kw_process_state(bpf_get_current_task_btf());
	if (!t || t->ident == KW_IDENT_NONE || kw_task_is_agent(t))
		return 0;
	__u32 gen = kw_generation();
	void *code = bpf_map_lookup_elem(&kw_code, &gen);
	if (!code)
		return 0; /* no policy applied yet */
	struct kw_code_key k = { .set = t->ident };
	if (bpf_map_lookup_elem(code, &k))
		return 0; /* an identity selected by no file: its code was never named */
	struct kw_file_key fk = {};
	__s64 sec = 0;
	__u32 nsec = 0;
	kw_file_facts(file, &fk, &sec, &nsec);
	k.dev = fk.dev;
	k.ino = fk.ino;
	struct kw_code_val *v = bpf_map_lookup_elem(code, &k);
	if (v && v->ctime_sec == sec && v->ctime_nsec == nsec)
		return 0;
	struct kw_config *cfg = bpf_map_lookup_elem(&kw_cfg, &gen);
	int audit = cfg && cfg->mode == KW_MODE_AUDIT;
	struct kw_guard_target g = {
		.action = KW_GUARD_EXEC_MAP,
		.decision = audit ? KW_DECISION_ALLOW : KW_DECISION_DENY,
		.err = audit ? 0 : EPERM,
		.detail = op | (audit ? KW_MAP_AUDIT : 0),
		.ident = t->ident,
		.inode = fk,
		.name = (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name),
	};
	kw_emit_guard(&g);
	return audit ? 0 : -EPERM;
}

/* Arguments (file, reqprot, prot, flags) on 6.1 and 6.12; "ret" is not read, as its
 * position is not needed: a refusal by an earlier LSM ends the call chain. prot is what
 * the kernel maps (READ_IMPLIES_EXEC included). */
SEC("lsm/mmap_file")
int BPF_PROG(kw_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)
{
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return kw_code_check(file, KW_MAP_MMAP);
}

SEC("lsm/file_mprotect")
int BPF_PROG(kw_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)
{
	if (!(prot & PROT_EXEC))
		return 0;
	struct file *file = BPF_CORE_READ(vma, vm_file);
	if (!file)
		return 0;
	return kw_code_check(file, KW_MAP_MPROTECT);
}
