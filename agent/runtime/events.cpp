// See events.h.
#include "runtime/events.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/linux_host_view.h"
#include "core/json_field.h"

namespace kw::runtime {
using nlohmann::json;

namespace {

int64_t clock_ns(clockid_t clock) {
    struct timespec ts {};
    clock_gettime(clock, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

const char* proto_name(uint8_t p) { return p == KW_PROTO_UDP ? "udp" : p == KW_PROTO_TCP ? "tcp" : "other"; }

}  // namespace

std::string format_address(const uint8_t addr[16]) {
    static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[INET6_ADDRSTRLEN] = {};
    if (std::memcmp(addr, v4_prefix, 12) == 0)
        inet_ntop(AF_INET, addr + 12, buf, sizeof(buf));
    else
        inet_ntop(AF_INET6, addr, buf, sizeof(buf));
    return buf;
}

EventFormatter::EventFormatter(std::string cgroup_root) : cgroup_root_(std::move(cgroup_root)) {
    mono_to_real_ns_ = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
}

std::string EventFormatter::wall_time(uint64_t ktime_ns) const {
    int64_t real = static_cast<int64_t>(ktime_ns) + mono_to_real_ns_;
    time_t secs = real / 1000000000;
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%09lldZ", static_cast<long long>(real % 1000000000));
    return buf;
}

std::optional<std::string> EventFormatter::cgroup_path(uint64_t id) {
    if (auto it = cgroup_paths_.find(id); it != cgroup_paths_.end()) return it->second;
    // Unknown id: walk the hierarchy once and remember every directory. Cgroup ids are
    // 64-bit and never reused within a boot, so a cached entry cannot name another one.
    std::error_code ec;
    struct stat st {};
    if (stat(cgroup_root_.c_str(), &st) == 0) cgroup_paths_[st.st_ino] = "/";
    for (auto it = std::filesystem::recursive_directory_iterator(
             cgroup_root_, std::filesystem::directory_options::skip_permission_denied, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (!it->is_directory(ec)) continue;
        if (stat(it->path().c_str(), &st) == 0)
            cgroup_paths_[st.st_ino] = it->path().string().substr(cgroup_root_.size());
    }
    if (auto it = cgroup_paths_.find(id); it != cgroup_paths_.end()) return it->second;
    return std::nullopt;
}

std::string EventFormatter::spiffe_id(uint32_t ident) const {
    if (ident == KW_IDENT_NONE) return "unattested";
    if (view_)
        if (auto name = view_->ids.name(ident)) return *name;
    return "unknown-identity-" + std::to_string(ident);
}

EventFormatter::ExeFacts EventFormatter::exe_facts(const kw_proc_info& p) {
    const kw_file_key& key = p.exe;
    // A pinned binary: the path and hash the policy pinned.
    if (view_) {
        for (const auto& pin : view_->compiled.pins) {
            if (pin.active && pin.actual && pin.actual->key.dev == key.dev && pin.actual->key.ino == key.ino &&
                pin.actual->ctime_sec == p.exe_ctime_sec && pin.actual->ctime_nsec == p.exe_ctime_nsec)
                return {pin.path, pin.pinned_sha256};
        }
    }
    // Anything else: the path the kernel walked when it decided (the process may be gone
    // by now), hashed once per (dev, ino, ctime), and only through a file that is still
    // exactly that inode: /proc/TGID/exe while the process lives (right across mount
    // namespaces), else the path itself.
    ExeFacts f;
    f.path.assign(p.exe_path, strnlen(p.exe_path, sizeof(p.exe_path)));
    auto cache_key = std::make_tuple(key.dev, key.ino, p.exe_ctime_sec, p.exe_ctime_nsec);
    if (auto it = hash_cache_.find(cache_key); it != hash_cache_.end()) {
        f.sha256 = it->second;
        return f;
    }
    for (const std::string& candidate : {"/proc/" + std::to_string(p.tgid) + "/exe", f.path}) {
        if (candidate.empty()) continue;
        struct stat st {};
        if (::stat(candidate.c_str(), &st) != 0 || st.st_ino != key.ino) continue;
        const auto size = static_cast<uint64_t>(st.st_size);
        const auto now = clock_();
        if (now - hash_second_ >= std::chrono::seconds(1)) {
            hash_second_ = now;
            hashed_this_second_ = 0;
        }
        if (size > kMaxHashedExe || hashed_this_second_ + size > kHashBytesPerSecond) break;
        hashed_this_second_ += size;
        auto pinned = host::hash_file(candidate);
        if (pinned && pinned->key.dev == key.dev && pinned->key.ino == key.ino &&
            pinned->ctime_sec == p.exe_ctime_sec && pinned->ctime_nsec == p.exe_ctime_nsec) {
            if (hash_cache_.size() >= kHashCacheMax) hash_cache_.clear();
            hash_cache_[cache_key] = pinned->sha256;
            f.sha256 = pinned->sha256;
            break;
        }
    }
    return f;
}

json EventFormatter::process_fields(const kw_proc_info& p) {
    auto exe = exe_facts(p);
    auto cgroup = cgroup_path(p.cgroup_id);
    json out = {
        {"pid", p.pid},
        {"tgid", p.tgid},
        {"process_start_ns", p.start_ns},
        {"comm", std::string(p.comm, strnlen(p.comm, sizeof(p.comm)))},
        {"exe", exe.path},
        {"sha256", exe.sha256 ? json(*exe.sha256) : json(nullptr)},
        {"uid", p.uid},
        {"gid", p.gid},
        {"cgroup", cgroup ? json(*cgroup) : json(nullptr)},
        {"cgroup_id", p.cgroup_id},
        {"spiffe_id", spiffe_id(p.ident)},
        {"attested_from_proc", (p.task_flags & KW_TASK_FROM_PROC) != 0},
    };
    if (auto c = container(p.cgroup_id)) out["container"] = std::move(*c);
    return out;
}

std::optional<json> EventFormatter::container(uint64_t cgroup_id) const {
    const core::ContainerFacts* c = containers_ ? containers_->facts_of(cgroup_id) : nullptr;
    if (!c) return std::nullopt;
    auto or_null = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
    return json{{"id", c->id},
                {"name", or_null(c->name)},
                {"image", or_null(c->image)},
                {"pod_namespace", or_null(c->pod_namespace)},
                {"pod_name", or_null(c->pod_name)}};
}

namespace {

const char* guard_action_name(uint8_t a) {
    switch (a) {
    case KW_GUARD_PTRACE: return "ptrace";
    case KW_GUARD_FD_RECEIVE: return "fd_receive";
    case KW_GUARD_BPF: return "bpf_object";
    case KW_GUARD_PIN: return "pin";
    case KW_GUARD_STATE: return "state_dir";
    case KW_GUARD_EXEC: return "exec";
    case KW_GUARD_RAW_SOCKET: return "raw_socket";
    case KW_GUARD_CORE_DUMP: return "core_dump";
    case KW_GUARD_RLIMIT: return "rlimit";
    case KW_GUARD_FOREIGN_SOCKET: return "foreign_socket";
    case KW_GUARD_EXEC_MAP: return "exec_map";
    case KW_GUARD_SOURCE: return "source";
    }
    return "unknown";
}

const char* inode_op_name(uint32_t op) {
    switch (op) {
    case KW_OP_OPEN: return "open";
    case KW_OP_UNLINK: return "unlink";
    case KW_OP_RENAME: return "rename";
    case KW_OP_LINK: return "link";
    case KW_OP_CREATE: return "create";
    case KW_OP_UMOUNT: return "umount";
    }
    return "unknown";
}

const char* family_name(uint32_t family) {
    switch (family) {
    case 2: return "AF_INET";
    case 10: return "AF_INET6";
    case 17: return "AF_PACKET";
    case 44: return "AF_XDP";
    }
    return "unknown";
}

const char* socket_type_name(uint32_t type) {
    switch (type) {
    case 1: return "SOCK_STREAM";
    case 2: return "SOCK_DGRAM";
    case 3: return "SOCK_RAW";
    case 5: return "SOCK_SEQPACKET";
    case 10: return "SOCK_PACKET";
    }
    return "unknown";
}

const char* bpf_cmd_name(uint32_t cmd) {
    switch (cmd) {
    case 13: return "BPF_PROG_GET_FD_BY_ID";
    case 14: return "BPF_MAP_GET_FD_BY_ID";
    case 30: return "BPF_LINK_GET_FD_BY_ID";
    }
    return "bpf";
}

// The refusal bits BITS, each code-loading variable of ENV (KW_ENV_*) by its allow_env
// name: ["PYTHON*", "traced"].
json exec_reasons(uint32_t bits, uint32_t env) {
    static const std::pair<uint32_t, const char*> names[] = {
        {KW_EXEC_ENV_UNREAD, "environment unreadable"},
        {KW_EXEC_ANON, "anonymous executable"},
        {KW_EXEC_TRACED, "traced"},
        {KW_EXEC_LISTENER, "seccomp listener"},
        {KW_EXEC_ELSEWHERE, "mount namespace or root"},
    };
    // The LD_* three are refusal bits of their own; the others come with KW_EXEC_CODE_ENV.
    constexpr uint32_t kLdNamed = KW_EXEC_LD_PRELOAD | KW_EXEC_LD_AUDIT | KW_EXEC_LD_LIBRARY_PATH;
    env = (env & ~kLdNamed) | (bits & kLdNamed);
    if (!(bits & KW_EXEC_CODE_ENV)) env &= kLdNamed;
    json out = json::array();
    for (const auto& v : core::kCodeEnvVars)
        if (env & v.var) out.push_back(v.name);
    if ((bits & KW_EXEC_CODE_ENV) && !(env & ~kLdNamed)) out.push_back("code-loading variable");
    for (const auto& [bit, name] : names)
        if (bits & bit) out.push_back(name);
    return out;
}

// "EPERM" for the errnos guard refusals surface, the number for any other; null for none.
json errno_field(int err) {
    switch (err) {
    case 0: return nullptr;
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    default: return std::to_string(err);
    }
}

}  // namespace

json EventFormatter::format_guard(const kw_ev_hdr& hdr, const kw_ev_guard& e) {
    const bool allowed = e.decision == KW_DECISION_ALLOW;
    const std::string name(e.name, strnlen(e.name, sizeof(e.name)));
    json j = {
        {"type", "guard"},
        {"time", wall_time(hdr.ktime_ns)},
        {"action", guard_action_name(e.action)},
        {"decision", allowed ? "allow" : "deny"},
        {"errno", errno_field(e.err)},
    };
    j.update(process_fields(e.proc));
    std::string why;
    switch (e.action) {
    case KW_GUARD_PTRACE:
        j["target"] = {{"tgid", e.target_tgid}, {"comm", name}, {"spiffe_id", spiffe_id(e.target_ident)}};
        j["ptrace_mode"] = e.detail;
        if (allowed) {
            why = "allow_debuggers[" + std::to_string(e.obj_id) + "]";
            // The index is into the list of the policy the kernel decided under.
            if (const PolicyView* decided = view_of(e.revision);
                decided && e.obj_id < decided->policy.allow_debuggers.size())
                why += " (" + decided->policy.allow_debuggers[e.obj_id] + ")";
        } else {
            why = "attach, /proc/PID/mem, process_vm_* and pidfd_getfd on an attested or enrolled process, or the "
                  "agent, are the agent's only";
        }
        break;
    case KW_GUARD_FD_RECEIVE:
        j["socket_owner"] = spiffe_id(e.target_ident);
        why = "a mutual-TLS socket passes only to a process of its owner's identity";
        break;
    case KW_GUARD_BPF:
        j["bpf_command"] = bpf_cmd_name(e.detail);
        j["object_id"] = e.obj_id;
        why = "kwarden's BPF maps, programs and links are the agent's only";
        break;
    case KW_GUARD_PIN:
    case KW_GUARD_STATE:
        j["operation"] = inode_op_name(e.detail);
        j["file"] = name.empty() ? json(nullptr) : json(name);
        j["inode"] = {{"dev", e.inode.dev}, {"ino", e.inode.ino}};
        why = e.action == KW_GUARD_PIN ? "the pins under the pin directory are the agent's only"
                                       : "the agent's state directory (CA keys) is the agent's only";
        break;
    case KW_GUARD_EXEC:
        j["workload"] = spiffe_id(e.target_ident);
        j["withheld_because"] = exec_reasons(e.detail, e.target_tgid);
        why = "no identity for an exec whose environment may load code nobody pinned (allow_env), that has no "
              "file on disk, is traced, or has its syscalls answered by a seccomp listener the agent does not hold "
              "alone";
        break;
    case KW_GUARD_RAW_SOCKET:
        // Audit mode lets the socket be: the caller got no errno.
        j["mode"] = e.err == 0 ? "audit" : "enforce";
        j["family"] = family_name(e.detail >> 16);
        j["socket_type"] = socket_type_name(e.detail & 0xffff);
        why = "raw and packet sockets reach destinations without connect(): refused to attested processes and to "
              "processes in a workload's cgroup (allow_raw_sockets opens it for a workload)";
        break;
    case KW_GUARD_CORE_DUMP:
        j["target"] = {{"tgid", e.target_tgid}, {"comm", name}, {"spiffe_id", spiffe_id(e.target_ident)}};
        why = "the memory of an attested or enrolled process is not dumped (allow_core_dumps opens it for a workload)";
        break;
    case KW_GUARD_RLIMIT:
        j["target"] = {{"tgid", e.target_tgid}, {"comm", name}, {"spiffe_id", spiffe_id(e.target_ident)}};
        j["core_limit"] = e.detail;
        why = "only the process itself raises the core limit of an attested or enrolled process";

        break;
    case KW_GUARD_FOREIGN_SOCKET:
        j["mode"] = e.err == 0 ? "audit" : "enforce";
        j["socket_creator"] = spiffe_id(e.target_ident);
        j["port"] = e.obj_id;
        j["path"] = e.detail == KW_PATH_SENDMSG ? "sendmsg" : "connect";
        why = "a socket reaches a destination under an identity's rule only if that identity created it";
        break;
    case KW_GUARD_EXEC_MAP:
        j["operation"] = (e.detail & 0xff) == KW_MAP_MPROTECT ? "mprotect" : "mmap";
        j["file"] = name.empty() ? json(nullptr) : json(name);
        j["inode"] = {{"dev", e.inode.dev}, {"ino", e.inode.ino}};
        j["audit"] = (e.detail & KW_MAP_AUDIT) != 0;
        why = (e.detail & KW_MAP_AUDIT) ? "audit mode: an attested process mapped unpinned code executable"
                                         : "an attested process maps executable only the code pinned for its identity";
        break;
    case KW_GUARD_SOURCE:
        j["operation"] = "open";
        j["file"] = name.empty() ? json(nullptr) : json(name);
        j["inode"] = {{"dev", e.inode.dev}, {"ino", e.inode.ino}};
        j["audit"] = (e.detail & KW_MAP_AUDIT) != 0;
        why = (e.detail & KW_MAP_AUDIT)
                  ? "audit mode: an attested process opened another file than the pinned one at a path its argv names"
                  : "at a path its argv names, an attested process opens only the file pinned there, unchanged";
        break;
    }
    j["decided_by"] = why;
    return j;
}

void EventFormatter::set_policy(std::shared_ptr<const PolicyView> view) {
    view_ = std::move(view);
    if (!view_) return;
    uint64_t revision = view_->compiled.config.revision;
    std::erase_if(kept_, [&](const auto& v) { return v->compiled.config.revision == revision; });
    kept_.push_front(view_);
    if (kept_.size() > kKeptViews) kept_.pop_back();
}

std::vector<std::string> destination_names(const PolicyView& view, uint32_t dset) {
    std::vector<std::string> names;
    if (dset < view.compiled.dset_members.size())
        for (uint32_t d : view.compiled.dset_members[dset]) names.push_back(view.policy.destinations[d].name);
    return names;
}

const PolicyView* EventFormatter::view_of(uint64_t revision) const {
    for (const auto& v : kept_)
        if (v->compiled.config.revision == revision) return v.get();
    return nullptr;
}

std::optional<json> EventFormatter::format(const void* data, size_t size) {
    if (size < sizeof(kw_ev_hdr)) return std::nullopt;
    kw_ev_hdr hdr;
    std::memcpy(&hdr, data, sizeof(hdr));
    if (hdr.version != KW_ABI_VERSION || hdr.size > size) return std::nullopt;

    if (hdr.type == KW_EV_CONNECT && size >= sizeof(kw_ev_connect)) {
        kw_ev_connect e;
        std::memcpy(&e, data, sizeof(e));
        const auto& p = e.proc;
        // Destination sets and rules are numbered per policy: they are named by the policy
        // the decision was made under, never by one loaded since.
        const PolicyView* decided = view_of(e.revision);
        json names = decided ? json(destination_names(*decided, e.dset)) : json::array();
        std::string decided_by;
        const std::string dst_names = names.empty() ? "?" : core::json_text(names);
        if (e.reason == KW_REASON_NO_RULE) {
            decided_by = "default deny: no rule allows " + spiffe_id(p.ident) + " to reach " + dst_names;
        } else if (e.reason == KW_REASON_MTLS_ONLY) {
            decided_by = "mutual TLS destination " + dst_names +
                         ": reached only through the agent (kwarden exec), never directly";
        } else if (e.reason == KW_REASON_AGENT) {
            decided_by = "the kwarden agent, connecting for an enrolled process";
        } else if (decided && e.rule < decided->policy.rules.size()) {
            const auto& r = decided->policy.rules[e.rule];
            decided_by = "rule " + std::to_string(e.rule) + " (" + r.from + " -> " + r.to + ")";
        } else {
            decided_by = "rule " + std::to_string(e.rule);
        }
        char rev[17];
        snprintf(rev, sizeof(rev), "%016llx", static_cast<unsigned long long>(e.revision));
        if (!decided) decided_by += " (under policy revision " + std::string(rev) + ", no longer kept)";
        json j = {
            {"type", "connect"},
            {"time", wall_time(hdr.ktime_ns)},
            {"decision", e.decision == KW_DECISION_ALLOW ? "allow" : "deny"},
            {"mode", e.mode == KW_MODE_AUDIT ? "audit" : "enforce"},
        };
        j.update(process_fields(p));
        j.update(json{
            {"dst_addr", format_address(e.addr)},
            {"dst_port", e.port},
            {"protocol", proto_name(e.proto)},
            {"path", e.path == KW_PATH_SENDMSG ? "sendmsg" : "connect"},
            {"destinations", names},
            {"decided_by", decided_by},
            {"rule", e.rule == ~0u ? json(nullptr) : json(e.rule)},
            {"policy_revision", rev},
        });
        return j;
    }
    if (hdr.type == KW_EV_GUARD && size >= sizeof(kw_ev_guard)) {
        kw_ev_guard e;
        std::memcpy(&e, data, sizeof(e));
        return format_guard(hdr, e);
    }
    if ((hdr.type == KW_EV_ESTABLISHED || hdr.type == KW_EV_CLOSED) && size >= sizeof(kw_ev_sock)) {
        kw_ev_sock e;
        std::memcpy(&e, data, sizeof(e));
        // Named by the policy the connect was allowed under, as connect events are: a
        // connection that outlives a policy change keeps the names it was allowed to.
        const PolicyView* decided = e.revision ? view_of(e.revision) : nullptr;
        json names = decided ? json(destination_names(*decided, e.dset)) : json::array();
        char rev[17];
        snprintf(rev, sizeof(rev), "%016llx", static_cast<unsigned long long>(e.revision));
        return json{
            {"type", hdr.type == KW_EV_ESTABLISHED ? "established" : "closed"},
            {"time", wall_time(hdr.ktime_ns)},
            {"tgid", e.tgid},
            {"spiffe_id", spiffe_id(e.ident)},
            {"socket_cookie", e.cookie},
            {"dst_addr", format_address(e.addr)},
            {"dst_port", e.port},
            {"protocol", proto_name(e.proto)},
            {"destinations", names},
            {"policy_revision", e.revision ? json(rev) : json(nullptr)},
            {"bytes_sent", e.bytes_sent},
            {"bytes_received", e.bytes_received},
            {"duration_ns", e.duration_ns},
        };
    }
    return std::nullopt;
}

json refused_event(const std::string& socket, const core::PeerLimits::Refusal& refusal) {
    return {{"type", "refused"}, {"time", now_rfc3339()}, {"socket", socket},
            {"uid", refusal.uid}, {"reason", refusal.reason}, {"count", refusal.count}};
}

json protection_event(bool on, const std::string& by) {
    return {{"type", "protection"}, {"time", now_rfc3339()}, {"guard", on ? "on" : "off"}, {"by", by}};
}

}  // namespace kw::runtime
