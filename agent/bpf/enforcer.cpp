// Loading, attaching and feeding the BPF programs. See enforcer.h.
#include "bpf/enforcer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/unique_fd.h"
#include "kw_attest.skel.h"
#include "kw_gate.skel.h"
#include "kw_sockops.skel.h"

namespace kw::bpf {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int err) { return std::string(std::strerror(err < 0 ? -err : err)); }

int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list args) {
    // Verifier logs arrive in one call and run to many KiB: size the buffer to fit.
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(nullptr, 0, fmt, copy);
    va_end(copy);
    if (n <= 0) return n;
    std::string buf(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(buf.data(), buf.size(), fmt, args);
    buf.resize(static_cast<size_t>(n));
    while (!buf.empty() && buf.back() == '\n') buf.pop_back();
    switch (level) {
        case LIBBPF_WARN: spdlog::warn("libbpf: {}", buf); break;
        case LIBBPF_INFO: spdlog::debug("libbpf: {}", buf); break;
        default: spdlog::trace("libbpf: {}", buf); break;
    }
    return n;
}

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return true;
}

}  // namespace

KernelProbe probe_kernel(const std::string& pin_dir) {
    KernelProbe p;
    struct utsname u {};
    if (uname(&u) == 0) p.release = u.release;

    std::string lsm;
    if (!read_file("/sys/kernel/security/lsm", lsm)) {
        p.missing.push_back(
            "cannot read /sys/kernel/security/lsm (securityfs not mounted?): the active LSM list is unknown");
    } else {
        std::string padded = "," + lsm + ",";
        padded.erase(std::remove(padded.begin(), padded.end(), '\n'), padded.end());
        if (padded.find(",bpf,") == std::string::npos)
            p.missing.push_back("bpf is not an active LSM (active: " + lsm.substr(0, lsm.find('\n')) +
                                "): boot with lsm=...,bpf on the kernel command line (CONFIG_BPF_LSM=y)");
    }
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        p.missing.push_back("no kernel BTF at /sys/kernel/btf/vmlinux: a kernel with CONFIG_DEBUG_INFO_BTF=y is needed");

    fs::path parent = fs::path(pin_dir).parent_path();
    struct statfs sfs {};
    if (statfs(parent.c_str(), &sfs) != 0 || sfs.f_type != BPF_FS_MAGIC)
        p.missing.push_back(parent.string() + " is not a bpf filesystem: mount -t bpf bpf " + parent.string());
    if (statfs("/sys/fs/cgroup", &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
        p.missing.push_back("/sys/fs/cgroup is not cgroup v2 (unified hierarchy is required)");
    return p;
}

struct Enforcer::Objects {
    kw_attest* attest = nullptr;
    kw_gate* gate = nullptr;
    kw_sockops* sockops = nullptr;
    std::vector<bpf_link*> links;
    ~Objects() {
        for (auto* l : links) bpf_link__destroy(l);  // pins keep them attached
        kw_sockops__destroy(sockops);
        kw_gate__destroy(gate);
        kw_attest__destroy(attest);
    }
};

Enforcer::~Enforcer() {
    if (events_) ring_buffer__free(events_);
}

Result<std::unique_ptr<Enforcer>> Enforcer::load(const LoadOptions& options) {
    libbpf_set_print(libbpf_log);
    std::unique_ptr<Enforcer> e(new Enforcer());
    e->options_ = options;
    e->objs_ = std::make_unique<Objects>();

    const std::string maps_dir = options.pin_dir + "/maps";
    std::error_code ec;
    fs::create_directories(maps_dir, ec);
    if (ec) return make_error("cannot create " + maps_dir + ": " + ec.message());
    e->took_over_ = fs::exists(maps_dir + "/kw_active");

    LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = maps_dir.c_str());
    auto fail = [&](const char* what, int err) {
        std::string msg = std::string("cannot ") + what + ": " + errno_text(err);
        if (e->took_over_ && err == -EINVAL)
            msg += " (maps pinned under " + maps_dir +
                   " may come from another kwarden version: 'kwarden teardown' removes them and stops enforcement)";
        return make_error(msg);
    };

    auto& o = *e->objs_;
    if (!(o.attest = kw_attest__open_opts(&opts))) return fail("open the attestation programs", -errno);
    if (int err = kw_attest__load(o.attest)) return fail("load the attestation programs (kw_attest)", err);
    if (!(o.gate = kw_gate__open_opts(&opts))) return fail("open the gate programs", -errno);
    if (int err = kw_gate__load(o.gate)) return fail("load the gate programs (kw_gate)", err);
    if (!(o.sockops = kw_sockops__open_opts(&opts))) return fail("open the sockops program", -errno);
    if (int err = kw_sockops__load(o.sockops)) return fail("load the sockops program (kw_sockops)", err);
    return e;
}

int Enforcer::map_fd(const char* name) const {
    bpf_map* m = bpf_object__find_map_by_name(objs_->attest->obj, name);
    return m ? bpf_map__fd(m) : -1;
}

namespace {

// Pins NEW at PATH, replacing whatever link a previous agent pinned there only once the
// new one is attached.
Result<void> pin_replacing(bpf_link* link, const std::string& path) {
    bpf_link* old = nullptr;
    if (access(path.c_str(), F_OK) == 0) {
        old = bpf_link__open(path.c_str());
        if (unlink(path.c_str()) != 0)
            return make_error("cannot replace the pinned link " + path + ": " + errno_text(errno));
    }
    int err = bpf_link__pin(link, path.c_str());
    if (old) bpf_link__destroy(old);  // its pin is gone; closing its fd detaches it
    if (err) return make_error("cannot pin link at " + path + ": " + errno_text(err));
    return {};
}

}  // namespace

Result<void> Enforcer::attach() {
    const std::string links_dir = options_.pin_dir + "/links";
    std::error_code ec;
    fs::create_directories(links_dir, ec);
    if (ec) return make_error("cannot create " + links_dir + ": " + ec.message());

    auto& o = *objs_;
    struct Lsm {
        bpf_program* prog;
        const char* name;
    };
    const Lsm lsms[] = {
        {o.attest->progs.kw_task_alloc, "kw_task_alloc"},
        {o.attest->progs.kw_exec_begin, "kw_exec_begin"},
        {o.attest->progs.kw_exec_commit, "kw_exec_commit"},
        {o.gate->progs.kw_connect, "kw_connect"},
        {o.gate->progs.kw_sendmsg, "kw_sendmsg"},
        {o.gate->progs.kw_recvmsg, "kw_recvmsg"},
        {o.gate->progs.kw_file_perm, "kw_file_perm"},
        {o.gate->progs.kw_getsockopt, "kw_getsockopt"},
        {o.gate->progs.kw_setsockopt, "kw_setsockopt"},
    };
    for (const auto& l : lsms) {
        bpf_link* link = bpf_program__attach_lsm(l.prog);
        if (!link) return make_error(std::string("cannot attach ") + l.name + ": " + errno_text(errno));
        o.links.push_back(link);
        if (auto r = pin_replacing(link, links_dir + "/" + l.name); !r) return r;
    }

    core::UniqueFd cg(open(options_.cgroup_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.valid()) return make_error("cannot open cgroup root " + options_.cgroup_root + ": " + errno_text(errno));
    bpf_link* link = bpf_program__attach_cgroup(o.sockops->progs.kw_sockops, cg.get());
    if (!link) return make_error("cannot attach kw_sockops to " + options_.cgroup_root + ": " + errno_text(errno));
    o.links.push_back(link);
    if (auto r = pin_replacing(link, links_dir + "/kw_sockops"); !r) return r;
    return {};
}

uint32_t Enforcer::active_generation() const {
    uint32_t zero = 0, gen = 0;
    if (bpf_map_lookup_elem(map_fd("kw_active"), &zero, &gen) != 0) return 0;
    return gen & 1;
}

namespace {

template <typename K, typename V>
Result<int> make_inner(bpf_map_type type, const char* name, const std::vector<std::pair<K, V>>& entries,
                       uint32_t flags = 0) {
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
    uint32_t max = std::max<size_t>(1, entries.size());
    int fd = bpf_map_create(type, name, sizeof(K), sizeof(V), max, &opts);
    if (fd < 0) return make_error(std::string("cannot create map ") + name + ": " + errno_text(errno));
    for (const auto& [k, v] : entries) {
        if (bpf_map_update_elem(fd, &k, &v, BPF_NOEXIST) != 0) {
            int err = errno;
            close(fd);
            return make_error(std::string("cannot fill map ") + name + ": " + errno_text(err));
        }
    }
    return fd;
}

}  // namespace

Result<void> Enforcer::publish(const core::CompiledPolicy& c) {
    const uint32_t next = active_generation() ^ 1;

    std::vector<std::pair<uint32_t, kw_cand_list>> lists;
    for (uint32_t i = 0; i < c.lists.size(); i++) lists.emplace_back(i, c.lists[i]);
    std::vector<std::pair<uint32_t, kw_workload>> wls;
    for (uint32_t i = 0; i < c.workloads.size(); i++) wls.emplace_back(i, c.workloads[i]);

    struct Inner {
        const char* outer;
        Result<int> fd;
    };
    Inner inners[] = {
        {"kw_files", make_inner(BPF_MAP_TYPE_HASH, "kw_files_in", c.files)},
        {"kw_lists", make_inner(BPF_MAP_TYPE_HASH, "kw_lists_in", lists)},
        {"kw_wls", make_inner(BPF_MAP_TYPE_HASH, "kw_wls_in", wls)},
        {"kw_dsts", make_inner(BPF_MAP_TYPE_LPM_TRIE, "kw_dsts_in", c.dsts, BPF_F_NO_PREALLOC)},
        {"kw_allow", make_inner(BPF_MAP_TYPE_HASH, "kw_allow_in", c.allows)},
    };
    Result<void> result;
    for (auto& in : inners) {
        if (!in.fd) {
            result = in.fd.error();
            break;
        }
    }
    if (result) {
        for (auto& in : inners) {
            int fd = *in.fd;
            if (bpf_map_update_elem(map_fd(in.outer), &next, &fd, BPF_ANY) != 0) {
                result = make_error(std::string("cannot install generation ") + std::to_string(next) + " of " +
                                    in.outer + ": " + errno_text(errno));
                break;
            }
        }
    }
    if (result && bpf_map_update_elem(map_fd("kw_cfg"), &next, &c.config, BPF_ANY) != 0)
        result = make_error("cannot write kw_cfg: " + errno_text(errno));
    // The flip: one aligned 32-bit store that programs read once per call.
    uint32_t zero = 0;
    if (result && bpf_map_update_elem(map_fd("kw_active"), &zero, &next, BPF_ANY) != 0)
        result = make_error("cannot switch to generation " + std::to_string(next) + ": " + errno_text(errno));
    for (auto& in : inners)
        if (in.fd) close(*in.fd);  // the outer maps hold them now
    return result;
}

Result<void> Enforcer::store_identities(const core::IdentityTable& ids) {
    int fd = map_fd("kw_idents");
    for (const auto& [id, name] : ids.all()) {
        kw_ident_name v{};
        if (name.size() > KW_SPIFFE_ID_MAX) return make_error("SPIFFE ID longer than 2048 bytes: " + name);
        std::memcpy(v.id, name.data(), name.size());
        if (bpf_map_update_elem(fd, &id, &v, BPF_ANY) != 0)
            return make_error("cannot record identity " + name + " in kw_idents: " + errno_text(errno));
    }
    return {};
}

Result<void> Enforcer::restore_identities(core::IdentityTable& ids) const {
    int fd = map_fd("kw_idents");
    uint32_t key = 0, next = 0;
    uint32_t* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        kw_ident_name v{};
        if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
            v.id[KW_SPIFFE_ID_MAX] = '\0';
            ids.restore(next, v.id);
        }
        key = next;
        prev = &key;
    }
    return {};
}

std::optional<kw_task> Enforcer::task_identity(int pidfd) const {
    kw_task t{};
    if (bpf_map_lookup_elem(map_fd("kw_tasks"), &pidfd, &t) != 0) return std::nullopt;
    return t;
}

// The whole value is written: a socket is in exactly one state (bpf/abi.h, kw_ktls_flags).
Result<void> Enforcer::set_socket_state(int fd, uint32_t state, const char* what) {
    if (bpf_map_update_elem(map_fd("kw_ktls"), &fd, &state, BPF_ANY) != 0)
        return make_error(std::string("cannot mark the socket as ") + what + " (kw_ktls): " + errno_text(errno));
    return {};
}

Result<void> Enforcer::mark_handshake_socket(int fd) {
    return set_socket_state(fd, KW_KTLS_HANDSHAKE, "in handshake");
}

Result<void> Enforcer::mark_managed_socket(int fd) { return set_socket_state(fd, KW_KTLS_MANAGED, "managed"); }

Result<void> Enforcer::set_task_identity(int pidfd, const kw_task& task) {
    if (bpf_map_update_elem(map_fd("kw_tasks"), &pidfd, &task, BPF_ANY) != 0)
        return make_error("cannot record identity in task storage: " + errno_text(errno));
    return {};
}

std::array<uint64_t, KW_CNT_MAX> Enforcer::counters() const {
    std::array<uint64_t, KW_CNT_MAX> out{};
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) return out;
    std::vector<uint64_t> per(ncpu);
    for (uint32_t k = 0; k < KW_CNT_MAX; k++) {
        if (bpf_map_lookup_elem(map_fd("kw_counters"), &k, per.data()) != 0) continue;
        for (auto v : per) out[k] += v;
    }
    return out;
}

Result<void> Enforcer::open_events(EventCallback callback) {
    callback_ = std::move(callback);
    auto trampoline = [](void* ctx, void* data, size_t size) -> int {
        static_cast<Enforcer*>(ctx)->callback_(data, size);
        return 0;
    };
    events_ = ring_buffer__new(map_fd("kw_events"), trampoline, this, nullptr);
    if (!events_) return make_error("cannot open the kw_events ring buffer: " + errno_text(errno));
    return {};
}

int Enforcer::events_epoll_fd() const { return events_ ? ring_buffer__epoll_fd(events_) : -1; }

int Enforcer::poll_events(int timeout_ms) {
    if (!events_) return -EINVAL;
    return timeout_ms == 0 ? ring_buffer__consume(events_) : ring_buffer__poll(events_, timeout_ms);
}

std::vector<Enforcer::ProgramInfo> Enforcer::programs() const {
    std::vector<ProgramInfo> out;
    auto add = [&](bpf_object* obj) {
        bpf_program* p;
        bpf_object__for_each_program(p, obj) {
            bpf_prog_info info{};
            uint32_t len = sizeof(info);
            bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len);
            out.push_back({bpf_program__name(p), info.id, bpf_program__section_name(p)});
        }
    };
    add(objs_->attest->obj);
    add(objs_->gate->obj);
    add(objs_->sockops->obj);
    return out;
}

Result<void> Enforcer::teardown(const std::string& pin_dir) {
    std::error_code ec;
    if (!fs::exists(pin_dir, ec)) return {};
    fs::remove_all(pin_dir, ec);
    if (ec) return make_error("cannot remove " + pin_dir + ": " + ec.message());
    return {};
}

}  // namespace kw::bpf
