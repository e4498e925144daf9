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
 *   fentry/fexit do_coredump, cred_prepare
 *                        no core dump of an attested or enrolled process (unless its
 *                        workload sets "allow_core_dumps"), to a file or a pipe helper:
 *                        do_coredump() takes a copy of the credentials (prepare_creds)
 *                        before it looks at core_pattern, opens a file or starts a
 *                        helper, and gives up when that fails. The fentry marks the dying
 *                        task (KW_TASK_DUMPING), cred_prepare refuses the copy for a
 *                        marked task, the fexit clears the mark.
 *   task_setrlimit       another process raising the core limit (prlimit) of one.
 *   mmap_file, file_mprotect
 *                        an attested process maps executable only the code pinned for
 *                        its identity (kw_code): its exe, loader, libraries and the
 *                        policy's allow_code, each unchanged since the policy was applied.
 *                        Anonymous memory (JIT compilers) is no file and stays allowed.
 *   file_open            at the paths its entry's argv names, an attested process opens
 *                        only the files pinned there (kw_sources).
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
	if (!(mask & (MAY_READ | MAY_WRITE | MAY_APPEND)))
		return 0;
	struct super_block *sb = inode->i_sb;
	if (!sb || sb->s_magic != BPF_FS_MAGIC)
		return 0;
	struct kw_file_key key = {};
	if (kw_inode_kind(inode, &key) != KW_INODE_PIN)
		return 0;
	return kw_deny_inode(KW_INODE_PIN, &key, KW_OP_OPEN, 0);
}

/* A refusal of the code rules (ACTION: exec_map, source) for FILE (key FK) under IDENT,
 * with an event; audit mode (of generation GEN) reports it and allows. */
static __always_inline int kw_code_refusal(struct file *file, __u8 action, __u32 detail, __u32 ident,
					   struct kw_file_key *fk, __u32 gen)
{
	struct kw_config *cfg = bpf_map_lookup_elem(&kw_cfg, &gen);
	int audit = cfg && cfg->mode == KW_MODE_AUDIT;
	struct kw_guard_target g = {
		.action = action,
		.decision = audit ? KW_DECISION_ALLOW : KW_DECISION_DENY,
		.err = audit ? 0 : EPERM,
		.detail = detail | (audit ? KW_MAP_AUDIT : 0),
		.ident = ident,
		.inode = *fk,
		.name = (const char *)BPF_CORE_READ(file, f_path.dentry, d_name.name),
	};
	kw_emit_guard(&g);
	return audit ? 0 : -EPERM;
}

/*
 * Sources (kw_sources): a process attested by an entry whose argv names files opens, at
 * those paths, only the files pinned there, unchanged since the policy was applied. The
 * path is the opened file's own (bpf_d_path: symlinks resolved, seen from the process's
 * root, which the exec check held to the agent's). Another inode there (a file renamed
 * or bind-mounted over it) or a rewritten one (another ctime) is refused with EPERM and
 * a "source" event, before the interpreter reads a byte. Like the code rule, this holds
 * whatever the guard switch says; audit mode reports and allows.
 */
static __always_inline int kw_source_check(struct file *file, struct kw_task *t)
{
	__u32 gen = kw_generation();
	void *sources = bpf_map_lookup_elem(&kw_sources, &gen);
	__u32 zero = 0;
	struct kw_source_key *k = bpf_map_lookup_elem(&kw_source_scratch, &zero);
	struct kw_path_buf *tmp = bpf_map_lookup_elem(&kw_path_scratch, &zero);
	if (!sources || !k || !tmp)
		return 0;
	long len = bpf_d_path(&file->f_path, tmp->buf, KW_SOURCE_PATH_MAX);
	if (len <= 0 || len > KW_SOURCE_PATH_MAX)
		return 0; /* longer than any source's path */
	/* d_path() builds the name at the buffer's end before moving it to the start: the
	 * bytes after the NUL are the name's tail. The key is the name and zeros, copied up
	 * to the NUL into a cleared key (a loop over the bytes after the NUL, each a branch
	 * on the length, was most of this program's verification). */
	__builtin_memset(k, 0, sizeof(*k));
	k->set = t->ident;
	bpf_probe_read_kernel_str(k->path, sizeof(k->path), tmp->buf);
	struct kw_source_val *v = bpf_map_lookup_elem(sources, k);
	if (!v)
		return 0;
	struct kw_file_key fk = {};
	__s64 sec = 0;
	__u32 nsec = 0;
	kw_file_facts(file, &fk, &sec, &nsec);
	if (fk.dev == v->file.dev && fk.ino == v->file.ino && sec == v->ctime_sec && nsec == v->ctime_nsec)
		return 0;
	return kw_code_refusal(file, KW_GUARD_SOURCE, 0, t->ident, &fk, gen);
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
		/* The agent asked to be recorded: its executable as exec saw it, and where it
		 * stands in the file system. */
		struct task_struct *me = bpf_get_current_task_btf();
		struct file *exe = BPF_CORE_READ(me, mm, exe_file);
		if (exe)
			kw_file_facts(exe, &cfg->agent_exe, &cfg->agent_ctime_sec, &cfg->agent_ctime_nsec);
		cfg->home_mntns = (__u64)BPF_CORE_READ(me, nsproxy, mnt_ns);
		cfg->home_root_mnt = (__u64)BPF_CORE_READ(me, fs, root.mnt);
		cfg->home_root_dentry = (__u64)BPF_CORE_READ(me, fs, root.dentry);
		cfg->capture_tgid = 0;
	}
	struct kw_task *t = kw_process_state(bpf_get_current_task_btf());
	if (t && (t->flags & KW_TASK_SOURCES) && t->ident != KW_IDENT_NONE) {
		int err = kw_source_check(file, t);
		if (err)
			return err;
	}
	struct super_block *sb = inode ? inode->i_sb : 0;
	if (!cfg->enabled || !sb || sb->s_dev != cfg->state_dev)
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

/*
 * Core dumps. The memory of an attested process must not reach a file or a pipe helper
 * (systemd-coredump hands the core back to the same uid) because someone of the same uid
 * raised its core limit and sent it SIGSEGV: the limit may come from before the exec, or
 * be ignored altogether (a pipe core_pattern dumps whatever RLIMIT_CORE says, but 1).
 * So the dump itself is refused, whatever the limit and core_pattern. do_coredump() runs
 * in the dying task, and its first step that can fail after the dumpable check is
 * prepare_creds(): a refusal there ends the dump before a byte is written or a helper
 * runs. The decision is taken at entry (the process's state: for a process attested from
 * /proc, its leader's) and kept on the dumping thread's own storage.
 */
SEC("fentry/do_coredump")
int BPF_PROG(kw_coredump_enter)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct kw_task *t = kw_process_state(task);

	if (!kw_task_is_guarded(t) || kw_task_is_agent(t) || !kw_guard_on() ||
	    kw_task_allows(t, KW_SEL_ALLOW_CORE_DUMPS))
		return 0;
	struct kw_task *me = bpf_task_storage_get(&kw_tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (me)
		me->flags |= KW_TASK_DUMPING;
	return 0;
}

/* A dump that ended before prepare_creds (not dumpable) leaves no mark behind. */
SEC("fexit/do_coredump")
int BPF_PROG(kw_coredump_exit)
{
	struct kw_task *me = kw_current_task_state();
	if (me)
		me->flags &= ~KW_TASK_DUMPING;
	return 0;
}

/* The cost everywhere else (every exec, setuid, ...): one task-storage lookup. */
SEC("lsm/cred_prepare")
int BPF_PROG(kw_cred_prepare, struct cred *new, const struct cred *old, gfp_t gfp, int ret)
{
	if (ret)
		return ret;
	struct kw_task *me = kw_current_task_state();
	if (!me || !(me->flags & KW_TASK_DUMPING))
		return 0;
	me->flags &= ~KW_TASK_DUMPING; /* one refusal per dump */
	struct task_struct *task = bpf_get_current_task_btf();
	struct kw_task *t = kw_process_state(task);
	struct kw_guard_target g = {
		.action = KW_GUARD_CORE_DUMP,
		.decision = KW_DECISION_DENY,
		.tgid = BPF_CORE_READ(task, tgid),
		.ident = t ? t->ident : KW_IDENT_NONE,
		.name = task->comm,
	};
	kw_emit_guard(&g);
	return -EPERM;
}

#define RLIMIT_CORE 4

/*
 * prlimit(2) by another process: raising an attested process's core limit (soft or hard)
 * is refused. The process itself may (setrlimit, or prlimit on its own pid), and anyone
 * may lower it. The dump is refused anyway; this reports the attempt where it is made.
 */
SEC("lsm/task_setrlimit")
int BPF_PROG(kw_task_setrlimit, struct task_struct *p, unsigned int resource, struct rlimit *new_rlim, int ret)
{
	if (ret)
		return ret;
	if (resource != RLIMIT_CORE)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (BPF_CORE_READ(p, tgid) == task->tgid)
		return 0;
	struct kw_task *t = kw_process_state(p);
	if (!kw_task_is_guarded(t) || !kw_guard_on() || kw_task_is_agent(kw_current_task_state()) ||
	    kw_task_allows(t, KW_SEL_ALLOW_CORE_DUMPS))
		return 0;
	__u64 cur = BPF_CORE_READ(new_rlim, rlim_cur);
	__u64 max = BPF_CORE_READ(new_rlim, rlim_max);
	__u64 old_cur = BPF_CORE_READ(p, signal, rlim[RLIMIT_CORE].rlim_cur);
	__u64 old_max = BPF_CORE_READ(p, signal, rlim[RLIMIT_CORE].rlim_max);
	if (cur <= old_cur && max <= old_max)
		return 0;
	struct kw_guard_target g = {
		.action = KW_GUARD_RLIMIT,
		.decision = KW_DECISION_DENY,
		.err = EPERM,
		.detail = cur > 0xffffffffull ? 0xffffffffu : (__u32)cur,
		.tgid = BPF_CORE_READ(p, tgid),
		.ident = t->ident,
		.name = p->comm,
	};
	kw_emit_guard(&g);
	return -EPERM;
}

/*
 * Seccomp listeners. A filter's user-notification listener answers the syscalls of every
 * process under the filter (kw_attest.bpf.c withholds the identity at exec unless the
 * agent alone holds each listener of the chain). The agent registers a listener by
 * sending it SECCOMP_IOCTL_NOTIF_ID_VALID for call id 0 before it confirms an enrolment;
 * the registration succeeds only when no other reference to the listener file exists:
 * the enrolling process closed its copy, and no copy was dup'd, forked, passed over a
 * socket (also one still in flight) or taken with pidfd_getfd. Every such copy is a
 * reference to the same struct file, so the count sees them all. The agent retries while
 * the launcher's close is on its way (EBUSY).
 *
 * A listener is an anonymous inode named "seccomp notify" (no user-chosen names live on
 * that filesystem), whose private_data is the filter. When its file is freed, the filter's
 * notif is gone too and the registration is dropped (file_free_security), so an address
 * reused by a later filter is not registered.
 */
#define ANON_INODE_FS_MAGIC 0x09041934
/* SECCOMP_IOCTL_NOTIF_ID_VALID: _IOR('!', 2, __u64), and its first, _IOW, encoding. */
#define KW_NOTIF_ID_VALID 0x80082102u
#define KW_NOTIF_ID_VALID_OLD 0x40082102u
#define EBUSY 16
#define ENOSPC 28

static __always_inline int kw_on_anon_inode(struct file *file)
{
	struct inode *inode = file->f_inode;
	struct super_block *sb = inode ? inode->i_sb : 0;
	return sb && sb->s_magic == ANON_INODE_FS_MAGIC;
}

static __always_inline int kw_is_listener(struct file *file)
{
	char name[16] = {};

	if (!kw_on_anon_inode(file))
		return 0;
	bpf_probe_read_kernel_str(name, sizeof(name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
	const char want[] = "seccomp notify";
	for (int i = 0; i < (int)sizeof(want); i++)
		if (name[i] != want[i])
			return 0;
	return 1;
}

SEC("lsm/file_ioctl")
int BPF_PROG(kw_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg, int ret)
{
	__u64 id = 1;

	if (ret)
		return ret;
	if ((cmd != KW_NOTIF_ID_VALID && cmd != KW_NOTIF_ID_VALID_OLD) || !kw_is_listener(file))
		return 0;
	if (!kw_task_is_agent(kw_current_task_state()))
		return 0;
	if (bpf_probe_read_user(&id, sizeof(id), (void *)arg) || id != 0)
		return 0; /* the agent checking a held call, not registering */
	struct seccomp_filter *filter = BPF_CORE_READ(file, private_data);
	struct notification *n = BPF_CORE_READ(filter, notif);
	if (!filter || !n)
		return 0;
	__u64 key = (__u64)filter;
	struct kw_listener *l = bpf_map_lookup_elem(&kw_listeners, &key);
	if (l && l->notif == (__u64)n)
		return 0;
	/* The agent's descriptor, plus the reference this ioctl took if the agent's
	 * descriptor table is shared (its threads): fdget() takes one only then. */
	struct task_struct *me = bpf_get_current_task_btf();
	long mine = BPF_CORE_READ(me, files, count.counter) > 1 ? 2 : 1;
	if (BPF_CORE_READ(file, f_count.counter) > mine)
		return -EBUSY;
	struct kw_listener v = { .notif = (__u64)n };
	return bpf_map_update_elem(&kw_listeners, &key, &v, BPF_ANY) ? -ENOSPC : 0;
}

SEC("lsm/file_free_security")
int BPF_PROG(kw_file_free, struct file *file)
{
	if (!kw_on_anon_inode(file))
		return 0;
	__u64 key = (__u64)file->private_data;
	if (key && bpf_map_lookup_elem(&kw_listeners, &key))
		bpf_map_delete_elem(&kw_listeners, &key);
	return 0;
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
	/* A container's file: its image layer's file may be the pinned one. */
	struct kw_file_key lk = {};
	if (kw_file_layer_facts(file, &lk, &sec, &nsec)) {
		k.dev = lk.dev;
		k.ino = lk.ino;
		v = bpf_map_lookup_elem(code, &k);
		if (v && v->ctime_sec == sec && v->ctime_nsec == nsec)
			return 0;
	}
	return kw_code_refusal(file, KW_GUARD_EXEC_MAP, op, t->ident, &fk, gen);
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

/*
 * How a seccomp listener's filter was installed, read from the filter itself: the agent
 * runs this iterator over its own descriptors (the link names its process) and keeps the
 * record of descriptor kw_listener_probe_fd, which it has checked is a seccomp listener
 * (its anonymous inode is "seccomp notify": private_data is the filter). The record:
 * killable is 1 when the filter was installed with SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
 * 0 when not, -1 when this kernel's filter has no such field. The filter's address is
 * kept in kw_listener_filter, for kw_listener_tasks.
 */
__u32 kw_listener_probe_fd;
__u64 kw_listener_filter;

SEC("iter/task_file")
int kw_listener_probe(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct kw_listener_record rec = { .fd = ctx->fd, .killable = -1 };

	if (!file || !ctx->task || ctx->fd != kw_listener_probe_fd)
		return 0;
	struct seccomp_filter *f = BPF_CORE_READ(file, private_data);
	if (f && bpf_core_field_exists(f->wait_killable_recv))
		rec.killable = BPF_CORE_READ(f, wait_killable_recv);
	kw_listener_filter = (__u64)f;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/*
 * The processes under the filter the listener probe last read (kw_listener_filter): the
 * agent runs this iterator over every task when a runtime hands over a listener, to learn
 * which process it serves (crun exec does not say) and to check the one a runtime names.
 * A task is under the filter when the filter is in its chain (its own, or one stacked
 * below filters installed after it); thread-group leaders only, one record each.
 */
SEC("iter/task")
int kw_listener_tasks(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task || !kw_listener_filter)
		return 0;
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	struct seccomp_filter *f = BPF_CORE_READ(task, seccomp.filter);
	for (int depth = 0; f && depth < KW_FILTER_DEPTH; depth++) {
		if ((__u64)f == kw_listener_filter) {
			struct kw_filter_task rec = {
				.tgid = BPF_CORE_READ(task, tgid),
				.parent = BPF_CORE_READ(task, real_parent, tgid),
				.start_ns = BPF_CORE_READ(task, start_time),
			};
			bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
			return 0;
		}
		f = BPF_CORE_READ(f, prev);
	}
	return 0;
}
