// Compiles a validated Policy into the exact contents of the BPF policy maps of one
// generation (bpf/abi.h). Pure: the host (files, hashes, cgroups) is reached through the
// HostView interface, so compilation is unit-tested without root or a kernel.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "abi.h"
#include "core/policy.h"
#include "core/result.h"

namespace kw::core {

// A file as the kernel knows it, and its content hash, taken from one open fd.
struct PinnedContent {
    kw_file_key key{};  // as the kernel sees it (see kernel_file_facts in host/linux_host_view.h)
    int64_t ctime_sec = 0;
    uint32_t ctime_nsec = 0;
    std::string sha256;  // lowercase hex
};

// What an absolute argv argument names. A regular file is a source: pinned by content,
// and recognised by the kernel when the process opens it, at its own path.
struct ArgPath {
    enum Kind { Missing, File, Directory, Other } kind = File;
    std::string real_path;  // File: the path with every symlink resolved
    std::string problem;    // File: why someone but root could change what the path names
};

struct CgroupRef {
    uint64_t id = 0;     // cgroup v2 id (the directory's inode number)
    uint32_t level = 0;  // depth below the root cgroup
};

class HostView {
public:
    virtual ~HostView() = default;
    // Opens PATH, fstat()s it, hashes its content through the same fd, fstat()s again;
    // fails if the file changed meanwhile, is not a regular file, or cannot be read.
    virtual Result<PinnedContent> pin_file(const std::string& path) = 0;
    // Resolves a cgroup v2 path (relative to the cgroup2 mount, starting with '/');
    // nullopt when it does not exist (yet).
    virtual std::optional<CgroupRef> resolve_cgroup(const std::string& path) = 0;
    // The files the loader maps for the ELF file PATH: its PT_INTERP loader first, then its
    // shared-library closure, absolute paths. A shared object (no PT_INTERP) is asked of
    // LOADER, when given. Empty for a static executable or a file that is not ELF (and
    // here, for hosts that have no loader to ask).
    virtual Result<std::vector<std::string>> code_closure(const std::string& path, const std::string& loader) {
        (void)path;
        (void)loader;
        return std::vector<std::string>{};
    }
    // The interpreter a #! script names, nullopt when PATH does not start with "#!".
    virtual std::optional<std::string> script_interpreter(const std::string& path) {
        (void)path;
        return std::nullopt;
    }
    // The files an "allow_code" entry opens: PATH itself, or every regular file directly
    // inside it when it is a directory.
    virtual Result<std::vector<std::string>> code_files(const std::string& path) {
        return std::vector<std::string>{path};
    }
    // What the absolute argv argument PATH names; for a file, its real path and whether
    // a user other than root could replace it (the file, or a directory or symlink on
    // the way to it, owned or writable by someone else).
    virtual ArgPath arg_path(const std::string& path) { return ArgPath{ArgPath::File, path, ""}; }
};


// SPIFFE ID <-> identity id. Append-only: ids are never reused or renumbered while the
// pinned maps live, so a reload never renames a running process. Id 0 is unattested.
class IdentityTable {
public:
    uint32_t id_for(const std::string& spiffe_id);  // assigns the next id if new
    std::optional<uint32_t> find(const std::string& spiffe_id) const;
    std::optional<std::string> name(uint32_t id) const;
    const std::map<uint32_t, std::string>& all() const { return by_id_; }
    void restore(uint32_t id, const std::string& spiffe_id);  // from pinned state

private:
    std::map<std::string, uint32_t> by_name_;
    std::map<uint32_t, std::string> by_id_;
    uint32_t next_ = 1;
};

enum class PinRole { Exe, Script, Source };  // Source: a file an argv selector names

// One binary or script the policy names, with the hash it is pinned to.
struct PinnedFile {
    std::string path;
    PinRole role = PinRole::Exe;
    std::string pinned_sha256;           // what is accepted
    std::string pin_source;              // "policy" (sha256 given) | "computed" | "previous"
    std::optional<PinnedContent> actual;  // what is on disk now (nullopt: unreadable)
    std::string real_path;               // Source: the path the kernel shows for it
    bool active = false;                 // actual matches the pin: in the kernel map
    std::string problem;                 // why not active
};

// Hashes that earlier loads pinned (path -> sha256), kept in the state directory, so that
// an agent restart re-verifies against them rather than re-pinning a modified binary.
using PreviousPins = std::map<std::string, std::string>;

struct CompileOptions {
    // true for an operator's apply (SIGHUP, `policy apply`, first load): hashes not given
    // in the policy are computed afresh. false on agent restart: previous pins are kept.
    bool repin = true;
};

struct CompiledPolicy {
    kw_config config{};
    std::vector<std::pair<kw_file_key, kw_file_val>> files;
    std::vector<kw_cand_list> lists;  // index = list_id; list 0 = KW_LIST_ANY
    std::vector<kw_workload> workloads;  // index = workload index (policy order)
    std::vector<std::pair<kw_dst_key, kw_dst_val>> dsts;
    std::vector<std::pair<kw_allow_key, kw_allow_val>> allows;
    // kw_cgsel: the cgroups that cgroup selectors name, as (cgroup id, level), each once.
    // The processes in them or below are governed whether attested or not (raw sockets).
    std::vector<std::pair<uint64_t, uint32_t>> governed_cgroups;
    // kw_code: per identity, the files its processes may map executable (bpf/abi.h).
    std::vector<std::pair<kw_code_key, kw_code_val>> code;
    std::map<uint32_t, std::vector<std::string>> code_paths;  // identity -> paths in its set, for status
    // kw_sources: per identity, the files its entries' argv name, at their real paths.
    std::vector<std::pair<kw_source_key, kw_source_val>> sources;
    // kw_ctrs: (container cgroup, workload) for the containers the agent knows now. Not
    // the compiler's: the runtime adds them (container_entries, core/container_match.h).
    std::vector<kw_ctr_key> containers;

    std::vector<PinnedFile> pins;                  // index = pin_id
    std::vector<std::vector<uint32_t>> dset_members;  // dset -> destination indices
    // Some destination set wants lifecycle events (KW_DSET_LIFECYCLE): sockops is attached
    // only then, since it runs for every TCP socket of the machine.
    bool lifecycle = false;
    std::vector<std::optional<CgroupRef>> cgroups;    // per workload, as resolved
    // kw_debuggers: "allow_debuggers" entry -> its index in the policy. A SPIFFE ID is
    // {KW_DEBUGGER_IDENT, its identity id}; a path {KW_DEBUGGER_EXE, 0, the file's key now}
    // (no entry while the file is missing: a warning). One key, the lowest index.
    std::vector<std::pair<kw_debugger_key, uint32_t>> debuggers;
    std::vector<PolicyProblem> warnings;
};

// Compiles POLICY. Identities are taken from (and added to) IDS. A file that cannot be
// pinned or no longer matches its pin is a warning, not an error: its workloads match
// nothing until it does (fail closed). Structural limits (more than KW_CAND_MAX
// workloads sharing one binary, argv longer than KW_ARGV_MAX) are errors.
Result<CompiledPolicy> compile_policy(const Policy& policy, HostView& host, IdentityTable& ids,
                                      const PreviousPins& previous, const CompileOptions& options);

// The selector logic of the kernel's exec attestation, for processes that were already
// running when the agent started (attested once from /proc: weaker, documented).
struct ProcessFacts {
    std::optional<kw_file_key> exe;  // with ctime checked by the caller against the pin
    std::optional<kw_file_key> script;
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::vector<uint64_t> cgroup_ancestors;  // ids from the root (index = level)
    std::string argv;                        // NUL-separated, as in /proc/PID/cmdline
    uint32_t code_env = 0;    // KW_ENV_* set in the environment (CodeEnvVar bits)
    bool env_unread = false;  // the environment could not be read: no workload matches
    bool anon_exe = false;  // the exe has no name on disk: memfd, O_TMPFILE, deleted
    bool traced = false;    // under ptrace (by anyone: /proc cannot tell a debugger)
    bool elsewhere = false; // another mount namespace or root than the agent's (argv's files)
};
// Index of the first workload (policy order) whose selectors all match and that the
// process's condition does not refuse, if any. As in the kernel, a workload is refused
// when the environment sets a code-loading variable its allow_env does not list (an unread
// environment is never allowed), and every workload when the exe is anonymous or the
// process is traced; a refused workload does not match, and later ones are tried.
std::optional<uint32_t> match_workload(const CompiledPolicy& compiled, const ProcessFacts& facts);


}  // namespace kw::core
