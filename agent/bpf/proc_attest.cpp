// See proc_attest.h.
#include "bpf/proc_attest.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>

#include "host/linux_host_view.h"
#include "core/container_cgroup.h"
#include "core/proc_facts.h"
#include "core/unique_fd.h"
#include <sstream>
#include <string>

namespace kw::bpf {
namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The whole file, or nullopt if it cannot be read (slurp() cannot tell that from empty).
std::optional<std::string> read_whole(const std::string& path) {
    core::UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return std::nullopt;
    std::string text;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) return text;
        text.append(buf, static_cast<size_t>(n));
    }
}

// What the kernel checks of an exec's condition (code-loading variables, an exe with no name
// on disk, a tracer), read now. Unreadable facts count against the process.
void read_condition(const std::string& dir, const std::string& status, core::ProcessFacts& facts) {
    auto env = read_whole(dir + "/environ");
    facts.code_env = env ? core::code_env_bits(*env) : 0;
    facts.env_unread = !env;
    char link[4096];
    ssize_t n = readlink((dir + "/exe").c_str(), link, sizeof link);
    facts.anon_exe = n <= 0 || static_cast<size_t>(n) == sizeof link ||
                     core::is_anonymous_exe(std::string_view(link, static_cast<size_t>(n)));
    facts.traced = core::tracer_pid(status).value_or(1) != 0;
    // Another mount namespace or root than the agent's: paths there may name other files.
    struct stat ns {}, own_ns {}, root {}, own_root {};
    facts.elsewhere = stat((dir + "/ns/mnt").c_str(), &ns) != 0 || stat("/proc/self/ns/mnt", &own_ns) != 0 ||
                      stat((dir + "/root/").c_str(), &root) != 0 || stat("/", &own_root) != 0 ||
                      ns.st_ino != own_ns.st_ino || ns.st_dev != own_ns.st_dev || root.st_ino != own_root.st_ino ||
                      root.st_dev != own_root.st_dev;
}

// Why a process whose selectors match a workload was not attested: "LD_PRELOAD, PYTHON*, traced".
std::string refusal_text(const core::ProcessFacts& facts) {
    std::string text;
    auto add = [&](std::string_view why) { text += (text.empty() ? "" : ", ") + std::string(why); };
    for (const auto& l : core::kCodeEnvVars)
        if (facts.code_env & l.var) add(l.name);
    if (facts.env_unread) add("environment unreadable");
    if (facts.anon_exe) add("exe has no name on disk");
    if (facts.traced) add("traced");
    if (facts.elsewhere) add("mount namespace or root");
    return text;
}

// Real uid and gid from /proc/PID/status ("Uid:\treal\teffective...").
bool read_ids(const std::string& status, uint32_t& uid, uint32_t& gid) {
    std::istringstream in(status);
    std::string line;
    int found = 0;
    while (std::getline(in, line)) {
        if (line.rfind("Uid:", 0) == 0) {
            uid = static_cast<uint32_t>(std::stoul(line.substr(4)));
            found++;
        } else if (line.rfind("Gid:", 0) == 0) {
            gid = static_cast<uint32_t>(std::stoul(line.substr(4)));
            found++;
        }
    }
    return found == 2;
}

// Ids of the process's cgroup v2 and its ancestors, root first.
std::vector<uint64_t> cgroup_ancestors(const std::string& dir, const std::string& root) {
    auto path = core::unified_cgroup_path(slurp(dir + "/cgroup"));
    std::vector<uint64_t> ids;
    if (!path) return ids;
    std::string cur = root;
    struct stat st {};
    if (stat(cur.c_str(), &st) != 0) return {};
    ids.push_back(st.st_ino);
    std::istringstream parts(*path);
    std::string part;
    while (std::getline(parts, part, '/')) {
        if (part.empty()) continue;
        cur += "/" + part;
        if (stat(cur.c_str(), &st) != 0) return {};
        ids.push_back(st.st_ino);
    }
    return ids;
}

}  // namespace

namespace {

uint64_t clock_ns(clockid_t clock) {
    struct timespec now {};
    clock_gettime(clock, &now);
    return static_cast<uint64_t>(now.tv_sec) * 1000000000ull + static_cast<uint64_t>(now.tv_nsec);
}

// How long ago process PID started: /proc/PID/stat's starttime (field 22, clock ticks
// after boot) against CLOCK_BOOTTIME.
std::optional<uint64_t> process_age_ns(pid_t pid) {
    std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    size_t close = stat.rfind(')');  // comm may hold spaces and parentheses
    if (close == std::string::npos) return std::nullopt;
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 22 && in >> field; ++i)
        if (i == 22) {
            const long hz = sysconf(_SC_CLK_TCK);
            const uint64_t started = std::stoull(field) * (1000000000ull / static_cast<uint64_t>(hz > 0 ? hz : 100));
            const uint64_t now = clock_ns(CLOCK_BOOTTIME);
            return now > started ? std::optional<uint64_t>(now - started) : std::nullopt;
        }
    return std::nullopt;
}

// The name of a mapping in /proc/PID/map_files: its range from /proc/PID/maps without
// the zero padding maps adds below 0x10000000 (a non-PIE binary's, at 0x400000).
std::string map_files_name(const std::string& range) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(range.c_str(), "%lx-%lx", &start, &end) != 2) return range;
    char name[40];
    std::snprintf(name, sizeof(name), "%lx-%lx", start, end);
    return name;
}

// For a process attested from /proc: whether every file it maps executable is its
// executable EXE (pinned, matched already) or in the code set of workload W, as the
// kernel would have checked each mapping had the process been attested at its exec
// (bpf/kw_guard.bpf.c kw_code_check). Its own identity or its image layer's, at the
// ctime pinned. An unreadable mapping fails. WHY names the first other.
bool code_pinned(const core::CompiledPolicy& compiled, const kw_workload& w, const kw_file_key& exe, long pid,
                 std::string& why) {
    const uint32_t set = w.ident;
    auto in_set = [&](const host::KernelFileFacts& f) {
        if (f.key.dev == exe.dev && f.key.ino == exe.ino) return true;
        for (const auto& [k, v] : compiled.code)
            if (k.set == set && k.dev == f.key.dev && k.ino == f.key.ino && v.ctime_sec == f.ctime_sec &&
                v.ctime_nsec == f.ctime_nsec)
                return true;
        return false;
    };
    for (const auto& [k, v] : compiled.code)
        if (k.set == set && k.dev == 0 && k.ino == 0) return true;  // selected by no file: never named
    const std::string dir = "/proc/" + std::to_string(pid);
    std::istringstream maps(slurp(dir + "/maps"));
    std::string line;
    std::set<std::string> seen;
    while (std::getline(maps, line)) {
        std::istringstream f(line);
        std::string range, perms, offset, dev, inode;
        if (!(f >> range >> perms >> offset >> dev >> inode)) continue;
        if (perms.size() < 3 || perms[2] != 'x' || inode == "0" || !seen.insert(range).second) continue;
        std::string path;
        std::getline(f >> std::ws, path);
        core::UniqueFd fd(open((dir + "/map_files/" + map_files_name(range)).c_str(), O_RDONLY | O_CLOEXEC));
        auto own = fd.valid() ? host::kernel_file_facts(fd.get(), dir + "/mountinfo")
                              : Result<host::KernelFileFacts>(make_error("unreadable"));
        if (own && in_set(*own)) continue;
        if (fd.valid())
            if (auto layer = host::overlay_layer_facts(static_cast<pid_t>(pid), fd.get(), path); layer && in_set(*layer))
                continue;
        why = path.empty() ? range : path;
        return false;
    }
    return true;
}

// Attests the process PID (its pidfd PIDFD) from /proc if it matches a workload, keeping
// the task flags FLAGS (enrolment survives). Whether it did. HOW says when, for the log.
bool attest_one(Enforcer& enforcer, const core::CompiledPolicy& compiled, const std::string& cgroup_root, long pid,
                int pidfd, uint32_t flags, const char* how) {
    const std::string dir = "/proc/" + std::to_string(pid);
    core::ProcessFacts facts;
    core::UniqueFd exe(open((dir + "/exe").c_str(), O_RDONLY | O_CLOEXEC));
    // The exe's mount is the process's (a container's root is in no mount table of ours).
    auto exe_facts = exe.valid() ? host::kernel_file_facts(exe.get(), dir + "/mountinfo")
                                 : Result<host::KernelFileFacts>(make_error("cannot open its exe"));
    const std::string status = slurp(dir + "/status");
    if (!exe_facts || !read_ids(status, facts.uid, facts.gid)) {
        spdlog::debug("process {}: {}", pid, exe_facts ? "unreadable status" : exe_facts.message());
        return false;
    }
    auto pinned = [&](const host::KernelFileFacts& f) {
        for (const auto& [k, v] : compiled.files)
            if (k.dev == f.key.dev && k.ino == f.key.ino && v.ctime_sec == f.ctime_sec && v.ctime_nsec == f.ctime_nsec)
                return true;
        return false;
    };
    // As the kernel: the file's own identity, else its image layer's (a container's).
    if (pinned(*exe_facts)) {
        facts.exe = exe_facts->key;
    } else if (auto layer = host::overlay_layer_facts(static_cast<pid_t>(pid), exe.get()); layer && pinned(*layer)) {
        facts.exe = layer->key;
    }
    facts.cgroup_ancestors = cgroup_ancestors(dir, cgroup_root);
    facts.argv = slurp(dir + "/cmdline");
    read_condition(dir, status, facts);
    if (!facts.exe)
        spdlog::debug("process {}: its exe (dev {:#x}, ino {}) is no pinned file, nor its image layer's", pid,
                      exe_facts->key.dev, exe_facts->key.ino);
    auto wl = core::match_workload(compiled, facts);
    if (!wl && (facts.code_env || facts.env_unread || facts.anon_exe || facts.traced || facts.elsewhere)) {
        core::ProcessFacts unconditioned = facts;
        unconditioned.code_env = 0;
        unconditioned.env_unread = false;
        unconditioned.anon_exe = unconditioned.traced = unconditioned.elsewhere = false;
        if (auto would = core::match_workload(compiled, unconditioned))
            spdlog::info("running process {} not attested from /proc as workload {}: {}", pid, *would,
                         refusal_text(facts));
    }
    if (!wl) {
        spdlog::debug("process {} (uid {}, cgroup {}) matches no workload", pid, facts.uid,
                      facts.cgroup_ancestors.empty() ? 0 : facts.cgroup_ancestors.back());
        return false;
    }
    // Running before anyone watched: its loader mapped its libraries (and it may have
    // dlopen'd more) while nobody checked them: a library preloaded from a container's
    // writable layer, say. The kernel would have refused such a mapping under the
    // identity; here the identity is refused instead.
    if (std::string why;
        !code_pinned(compiled, compiled.workloads[*wl], facts.exe.value_or(kw_file_key{}), pid, why)) {
        spdlog::warn("process {} not attested {} as workload {}: it maps {} executable, which its code set "
                     "does not pin",
                     pid, how, *wl, why);
        return false;
    }
    kw_task t{};
    t.ident = compiled.workloads[*wl].ident;
    t.wl = *wl + 1;
    t.flags = flags | KW_TASK_FROM_PROC;
    // Its sources were opened before anyone watched; later opens are checked.
    if (compiled.workloads[*wl].flags & KW_SEL_SOURCES) t.flags |= KW_TASK_SOURCES;
    t.pin_id = ~0u;
    struct timespec now {};
    clock_gettime(CLOCK_MONOTONIC, &now);
    t.exec_ns = static_cast<uint64_t>(now.tv_sec) * 1000000000ull + now.tv_nsec;
    // The pidfd keeps naming this task; if it exited, the update fails.
    if (auto r = enforcer.set_task_identity(pidfd, t); !r) {
        spdlog::debug("process {}: {}", pid, r.message());
        return false;
    }
    spdlog::info("attested running process {} from /proc as workload {}", pid, *wl);
    return true;
}

}  // namespace

ProcScanStats attest_running_processes(Enforcer& enforcer, const core::CompiledPolicy& compiled,
                                       const std::string& cgroup_root) {
    ProcScanStats stats;
    DIR* d = opendir("/proc");
    if (!d) return stats;
    const pid_t self = getpid();
    while (dirent* ent = readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(ent->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == self) continue;
        core::UniqueFd pidfd(pidfd_open(static_cast<pid_t>(pid)));
        if (!pidfd.valid()) continue;
        stats.scanned++;
        // The kernel's record wins: never overwrite an identity it assigned at exec.
        if (enforcer.task_identity(pidfd.get()).has_value()) continue;
        if (attest_one(enforcer, compiled, cgroup_root, pid, pidfd.get(), 0, "from /proc")) stats.attested++;
    }
    closedir(d);
    return stats;
}

ProcScanStats attest_unattested(Enforcer& enforcer, const core::CompiledPolicy& compiled,
                                const std::vector<pid_t>& pids, const std::string& cgroup_root) {
    ProcScanStats stats;
    for (pid_t pid : pids) {
        core::UniqueFd pidfd(pidfd_open(pid));
        if (!pidfd.valid()) continue;
        stats.scanned++;
        auto known = enforcer.task_identity(pidfd.get());
        if (known && known->ident != KW_IDENT_NONE) {
            spdlog::debug("process {} already has identity {}", pid, known->ident);
            continue;
        }
        if (!attest_one(enforcer, compiled, cgroup_root, pid, pidfd.get(), known ? known->flags & KW_TASK_ENROLLED : 0,
                        "late"))
            continue;
        stats.attested++;
        // Since its exec, when the kernel recorded it (an enrolled process); else since
        // the process started (an upper bound: it may have exec'd after).
        uint64_t waited = 0;
        if (known && known->exec_ns && known->exec_ns < clock_ns(CLOCK_MONOTONIC))
            waited = clock_ns(CLOCK_MONOTONIC) - known->exec_ns;
        else if (auto age = process_age_ns(pid))
            waited = *age;
        stats.longest_wait_ns = std::max(stats.longest_wait_ns, waited);
    }
    return stats;
}

}  // namespace kw::bpf
