// The kernel side of the agent, and the only code that touches libbpf or skeletons:
// feature probes, loading with pinned maps, attaching with pinned links (taking over a
// previous agent's with no window), publishing compiled policies by generation flip,
// identities by pidfd, counters and the event ring buffer.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abi.h"
#include "core/compile.h"
#include "core/result.h"

struct ring_buffer;
struct bpf_link;

namespace kw::bpf {

inline constexpr const char* kDefaultPinDir = "/sys/fs/bpf/kwarden";

// What the guard asks of a process before it takes it for the agent: the reason a
// refused agent is given.
inline constexpr const char* kGuardAgentRule =
    "while the guard is on, only root running the kwarden binary that turned it on, untraced and with no "
    "LD_*, GLIBC_TUNABLES or GCONV_PATH in its environment, is the agent; turn the guard off first with "
    "'kwarden stop', or 'kwarden agent --unprotect' run from that binary";

struct KernelProbe {
    std::string release;
    std::vector<std::string> missing;  // each says what is missing and how to get it
    bool ok() const { return missing.empty(); }
};

// Checks what enforcement needs: bpf in the active LSM list, kernel BTF, a bpf
// filesystem, cgroup v2. Never loads anything.
KernelProbe probe_kernel(const std::string& pin_dir = kDefaultPinDir);

struct LoadOptions {
    std::string pin_dir = kDefaultPinDir;
    std::string cgroup_root = "/sys/fs/cgroup";
    // How long the file_permission program stays attached after the last socket was
    // marked for a handshake (hold_file_guard): beyond the longest handshake.
    std::chrono::milliseconds file_guard_hold{20000};
};

class Enforcer {
public:
    ~Enforcer();
    Enforcer(const Enforcer&) = delete;
    Enforcer& operator=(const Enforcer&) = delete;

    // Opens and loads the programs. Maps are reused from PIN_DIR/maps when a previous
    // agent left them (took_over()), else created and pinned there.
    static Result<std::unique_ptr<Enforcer>> load(const LoadOptions& options);

    bool took_over() const { return took_over_; }
    // The ABI version of the pinned maps taken over (KW_ABI_VERSION for an upgrade
    // within a release); 0 when none were.
    uint32_t pinned_abi() const { return pinned_abi_; }

    // Attaches every program and pins its link under PIN_DIR/links. A link pinned by a
    // previous agent is released only after the new one is attached: both enforce for
    // a moment, never neither.
    Result<void> attach();

    // Whether sockops is wanted (a destination asks for lifecycle events): attached or
    // detached now if attach() ran, else by attach().
    Result<void> set_lifecycle(bool on);
    bool sockops_attached() const;

    // The data guard's file_permission program (kw_file_perm) runs on every read and
    // write of the machine (a pipe's included), its socket_recvmsg program (kw_recvmsg)
    // on every receive, and both are needed only while an app's socket may be in its
    // mutual-TLS handshake (splice from a socket meets no socket hook). They are attached
    // when a socket is marked for a handshake (mark_handshake_socket) and at attach(),
    // and held for LoadOptions::file_guard_hold after the last of those (the agent gives
    // twice its handshake timeout, which bounds each handshake from before its mark).
    // release_file_guard (the agent's tick) detaches them after that. A socket whose
    // handshake failed keeps its mark but is shut down both ways: a read then gets at
    // most the handshake's ciphertext, and a write nothing (socket_sendmsg stays).
    Result<void> hold_file_guard(std::chrono::steady_clock::time_point until);
    Result<void> release_file_guard(std::chrono::steady_clock::time_point now);
    bool file_guard_attached() const;  // either of the two

    // The kernel's connection counters (kw_flows), each key summed over the CPUs.
    struct FlowEntry {
        kw_flow_key key;
        kw_flow_val value;
    };
    std::vector<FlowEntry> flows() const;

    // Builds the inner maps of the idle generation from COMPILED, then flips kw_active.
    Result<void> publish(const core::CompiledPolicy& compiled);
    uint32_t active_generation() const;
    // Containers that started (or ended) since the last publish: their kw_ctrs entries in
    // the generation in force. The next publish writes the entries it is given, all of them.
    Result<void> add_containers(const std::vector<kw_ctr_key>& entries);
    Result<void> remove_containers(const std::vector<kw_ctr_key>& entries);

    Result<void> store_identities(const core::IdentityTable& ids);
    Result<void> restore_identities(core::IdentityTable& ids) const;

    // The identity the kernel recorded for the process behind PIDFD (task storage).
    std::optional<kw_task> task_identity(int pidfd) const;
    Result<void> set_task_identity(int pidfd, const kw_task& task);
    // Records that the agent starts a TLS handshake on the socket FD refers to: until
    // mark_managed_socket, nobody but the agent moves data on it (send/recv, read/write,
    // sendfile, splice) or touches SOL_TLS. The agent never clears it: a socket whose
    // handshake failed keeps refusing data, so it never carries plaintext.
    // OWNER is the kernel identity of the process the socket is for: only a process of
    // that identity (or the agent) may receive the socket by fd passing.
    Result<void> mark_handshake_socket(int fd, uint32_t owner);
    // Records that the agent installed kTLS on the socket FD refers to (replacing the
    // handshake mark): data moves again, and only the agent may
    // getsockopt/setsockopt(SOL_TLS) on it.
    Result<void> mark_managed_socket(int fd, uint32_t owner);

    // The guard (bpf/kw_guard.bpf.c). protect() records what is kwarden's (its maps,
    // programs and links, the inodes of the pin tree and of STATE_DIR) and this process's
    // executable as the agent's, then turns the guard on. Call it after attach() and
    // again after anything re-pins. unprotect() turns it off (the operator's way out).
    // STATE_DIRS: the state directory first, then others (the CA's) on the same filesystem.
    Result<void> protect(const std::vector<std::string>& state_dirs);
    Result<void> unprotect();
    bool guard_enabled() const;
    // allow_debuggers of the policy: who may ptrace guarded processes (each time an event).
    Result<void> set_debuggers(const std::vector<std::pair<kw_debugger_key, uint32_t>>& debuggers);
    // Records the executable that is the agent from now on: root running exactly that
    // file is marked as the agent at exec (a restart, the CLI's teardown).
    Result<void> record_agent_exe();

    // Whether the seccomp listener FD of this process was installed with
    // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, read from its filter in the kernel (the
    // listener probe). FD must be a seccomp listener: the caller checked its inode.
    Result<bool> listener_waits_killable(int fd);
    // The processes under the filter of seccomp listener FD of this process (thread-group
    // leaders; the filter in their chain), read from every task in the kernel.
    Result<std::vector<kw_filter_task>> listener_tasks(int fd);

    std::array<uint64_t, KW_CNT_MAX> counters() const;

    // Ring buffer of events; CALLBACK gets each record (header first).
    using EventCallback = std::function<void(const void* data, size_t size)>;
    Result<void> open_events(EventCallback callback);
    int events_epoll_fd() const;
    int poll_events(int timeout_ms);  // records consumed, or -errno

    struct ProgramInfo {
        std::string name;
        uint32_t id = 0;
        std::string attach;
        uint64_t run_time_ns = 0;  // while kernel.bpf_stats_enabled was on
        uint64_t run_cnt = 0;
    };
    std::vector<ProgramInfo> programs() const;

    // Removes every pin under PIN_DIR: enforcement stops once no agent holds the links.
    static Result<void> teardown(const std::string& pin_dir = kDefaultPinDir);

private:
    Enforcer() = default;
    struct Objects;
    int map_fd(const char* name) const;
    Result<int> active_inner(const char* outer) const;
    Result<void> set_socket_state(int fd, kw_ktls_state state, const char* what);
    Result<void> guard_object(uint32_t kind, uint32_t id);
    Result<void> guard_inodes(const std::vector<std::string>& state_dirs);
    Result<kw_listener_record> probe_listener(int fd);
    Result<void> sync_sockops();
    Result<void> sync_data_guard(bool want);
    Result<bool> sync_link(bool want, bpf_link*& link, const char* name, const std::function<bpf_link*()>& make);

    std::unique_ptr<Objects> objs_;
    LoadOptions options_;
    bool took_over_ = false;
    uint32_t pinned_abi_ = 0;
    bool attached_ = false;
    bool lifecycle_ = false;
    std::chrono::steady_clock::time_point file_guard_until_{};
    std::vector<std::string> guarded_dirs_;  // protect()'s, for the inodes of a new pin
    ring_buffer* events_ = nullptr;
    EventCallback callback_;
};

}  // namespace kw::bpf
