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
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "bpf/btf_layout.h"
#include "core/unique_fd.h"
#include "kw_attest.skel.h"
#include "host/linux_host_view.h"
#include "kw_gate.skel.h"
#include "kw_guard.skel.h"
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

// A ring buffer pinned by a previous agent is taken over at the size it has (its programs
// write to it until ours replace them): this release's size applies to a fresh start.
void adopt_pinned_ring_sizes(std::initializer_list<bpf_object*> objects) {
    for (bpf_object* obj : objects) {
        bpf_map* map;
        bpf_object__for_each_map(map, obj) {
            const char* path = bpf_map__pin_path(map);
            if (!path || bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF) continue;
            core::UniqueFd fd(bpf_obj_get(path));
            bpf_map_info info{};
            uint32_t len = sizeof(info);
            if (fd.valid() && bpf_obj_get_info_by_fd(fd.get(), &info, &len) == 0 && info.type == BPF_MAP_TYPE_RINGBUF)
                bpf_map__set_max_entries(map, info.max_entries);
        }
    }
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

namespace {

// The ABI version the maps pinned under MAPS_DIR were written with: kw_abi's, or 3 for
// pins from before kw_abi existed.
Result<uint32_t> read_pinned_abi(const std::string& maps_dir) {
    core::UniqueFd fd(bpf_obj_get((maps_dir + "/kw_abi").c_str()));
    if (!fd.valid()) {
        if (errno == ENOENT) return uint32_t{3};
        return make_error("cannot open " + maps_dir + "/kw_abi: " + errno_text(errno) +
                          (errno == EPERM ? std::string(" (the pins are guarded: ") + kGuardAgentRule + ")" : ""));
    }
    // The lookup writes the pinned map's value size: check it before reading into ours.
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0)
        return make_error("cannot read " + maps_dir + "/kw_abi: " + errno_text(errno));
    if (info.type != BPF_MAP_TYPE_ARRAY || info.key_size != sizeof(uint32_t) || info.value_size != sizeof(kw_abi_pin))
        return make_error(maps_dir + "/kw_abi is not the ABI version map this agent knows (type " +
                          std::to_string(info.type) + ", key " + std::to_string(info.key_size) + " bytes, value " +
                          std::to_string(info.value_size) + " bytes): the pins are of an unknown kwarden. The "
                          "programs that pinned them keep enforcing; 'kwarden teardown' removes them");
    const uint32_t zero = 0;
    kw_abi_pin pin{};
    if (bpf_map_lookup_elem(fd.get(), &zero, &pin) != 0)
        return make_error("cannot read " + maps_dir + "/kw_abi: " + errno_text(errno));
    return pin.version;
}

// Every map of OBJECTS that is pinned already must be one this release can read: the
// same type, key and value sizes, flags, and (but for ring buffers, which libbpf sizes to
// the page) the same number of entries. Errors name each map that is not.
Result<void> check_pinned_maps(std::initializer_list<bpf_object*> objects, uint32_t pinned,
                               const std::string& maps_dir) {
    if (pinned > KW_ABI_VERSION)
        return make_error("the maps pinned under " + maps_dir + " are ABI version " + std::to_string(pinned) +
                          ", from a newer kwarden; this agent is version " + std::to_string(KW_ABI_VERSION) +
                          " and does not read them. The programs that pinned them keep enforcing: start the newer "
                          "agent again, or remove everything with 'kwarden teardown' (enforcement stops)");
    std::vector<std::string> unreadable;
    std::set<std::string> seen;  // the shared maps are declared by every object
    for (bpf_object* obj : objects) {
        bpf_map* map;
        bpf_object__for_each_map(map, obj) {
            const char* path = bpf_map__pin_path(map);
            if (!path || !seen.insert(bpf_map__name(map)).second) continue;
            core::UniqueFd fd(bpf_obj_get(path));
            if (!fd.valid()) continue;  // new in this release: created and pinned at load
            bpf_map_info info{};
            uint32_t len = sizeof(info);
            if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) {
                unreadable.push_back(std::string(bpf_map__name(map)) + " (" + errno_text(errno) + ")");
                continue;
            }
            std::vector<std::string> differs;
            auto compare = [&](const char* what, uint32_t theirs, uint32_t ours) {
                if (theirs != ours)
                    differs.push_back(std::string(what) + " " + std::to_string(theirs) + ", this release's " +
                                      std::to_string(ours));
            };
            compare("type", info.type, bpf_map__type(map));
            compare("key size", info.key_size, bpf_map__key_size(map));
            compare("value size", info.value_size, bpf_map__value_size(map));
            compare("flags", info.map_flags, bpf_map__map_flags(map));
            if (info.type != BPF_MAP_TYPE_RINGBUF) compare("entries", info.max_entries, bpf_map__max_entries(map));
            if (!differs.empty()) {
                std::string line = std::string(bpf_map__name(map)) + ": ";
                for (size_t i = 0; i < differs.size(); i++) line += (i ? ", " : "") + differs[i];
                unreadable.push_back(line);
            }
        }
    }
    if (unreadable.empty()) return {};
    std::string msg = "the maps pinned under " + maps_dir + " (ABI version " + std::to_string(pinned) +
                      ") cannot all be taken over by this agent (version " + std::to_string(KW_ABI_VERSION) + "): ";
    for (size_t i = 0; i < unreadable.size(); i++) msg += (i ? "; " : "") + unreadable[i];
    return make_error(msg +
                      ". The programs that pinned them keep enforcing; 'kwarden teardown' removes them "
                      "(enforcement stops) before a fresh start");
}

}  // namespace

struct Enforcer::Objects {
    kw_attest* attest = nullptr;
    kw_gate* gate = nullptr;
    kw_guard* guard = nullptr;
    kw_sockops* sockops = nullptr;
    std::vector<bpf_link*> links;
    bpf_link* sockops_link = nullptr;
    bpf_link* file_perm_link = nullptr;
    bpf_link* recvmsg_link = nullptr;
    ~Objects() {
        for (auto* l : links) bpf_link__destroy(l);  // pins keep them attached
        for (auto* l : {sockops_link, file_perm_link, recvmsg_link})
            if (l) bpf_link__destroy(l);
        kw_sockops__destroy(sockops);
        kw_guard__destroy(guard);
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
        if (e->took_over_ && err == -EPERM)
            msg += " (the pins under " + options.pin_dir + " are guarded: " + kGuardAgentRule + ")";
        if (e->took_over_ && err == -EINVAL)
            msg += " (maps pinned under " + maps_dir +
                   " may come from another kwarden version: 'kwarden teardown' removes them and stops enforcement)";
        return make_error(msg);
    };

    auto& o = *e->objs_;
    if (!(o.attest = kw_attest__open_opts(&opts))) return fail("open the attestation programs", -errno);
    if (!(o.gate = kw_gate__open_opts(&opts))) return fail("open the gate programs", -errno);
    if (!(o.guard = kw_guard__open_opts(&opts))) return fail("open the guard programs", -errno);
    if (!(o.sockops = kw_sockops__open_opts(&opts))) return fail("open the sockops program", -errno);
    // Pinned state of another release: checked map by map before anything is loaded, so
    // that what cannot be read is refused by name while the programs that pinned it keep
    // enforcing.
    if (e->took_over_) {
        auto pinned = read_pinned_abi(maps_dir);
        if (!pinned) return pinned.error();
        e->pinned_abi_ = *pinned;
        if (auto r = check_pinned_maps({o.attest->obj, o.gate->obj, o.guard->obj, o.sockops->obj}, *pinned, maps_dir);
            !r)
            return r.error();
    }
    adopt_pinned_ring_sizes({o.attest->obj, o.gate->obj, o.guard->obj, o.sockops->obj});
    // Container files resolve to their image layer's file through overlayfs's own
    // structures, whose layout the overlay module's BTF gives.
    const kw_ovl_layout ovl = overlay_layout();
    if (ovl.kind == KW_OVL_NONE)
        spdlog::warn("overlayfs's layout is unknown (module not loaded, or not a layout this release knows): "
                     "files in containers match no pin");
    o.attest->rodata->kw_ovl = ovl;
    o.guard->rodata->kw_ovl = ovl;
    // Loading is most of an agent's start (libbpf relocates each object against the
    // kernel's BTF, the kernel verifies each program): its time, object by object.
    using Clock = std::chrono::steady_clock;
    auto ms = [](Clock::time_point from, Clock::time_point to) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
    };
    const auto t0 = Clock::now();
    if (int err = kw_attest__load(o.attest)) return fail("load the attestation programs (kw_attest)", err);
    const auto t1 = Clock::now();
    if (int err = kw_gate__load(o.gate)) return fail("load the gate programs (kw_gate)", err);
    const auto t2 = Clock::now();
    if (int err = kw_guard__load(o.guard)) return fail("load the guard programs (kw_guard)", err);
    const auto t3 = Clock::now();
    if (int err = kw_sockops__load(o.sockops)) return fail("load the sockops program (kw_sockops)", err);
    const auto t4 = Clock::now();
    spdlog::info("loaded the kernel programs in {} ms (attest {}, gate {}, guard {}, sockops {})", ms(t0, t4),
                 ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4));
    // The counters a full kw_flows sends its connections to, one per result.
    {
        int cpus = libbpf_num_possible_cpus();
        std::vector<kw_flow_val> zeros(static_cast<size_t>(cpus > 0 ? cpus : 1));
        for (uint32_t result : {KW_FLOW_ALLOWED, KW_FLOW_DENIED, KW_FLOW_AUDITED}) {
            kw_flow_key k{};
            k.dset = KW_FLOW_OVERFLOW_DSET;
            k.result = result;
            if (bpf_map_update_elem(bpf_map__fd(o.attest->maps.kw_flows), &k, zeros.data(), BPF_NOEXIST) != 0 &&
                errno != EEXIST)
                return fail("make the overflow counters of kw_flows", -errno);
        }
    }
    // From now on the pins are this release's: a later agent checks against it.
    const uint32_t zero = 0;
    const kw_abi_pin version{.version = KW_ABI_VERSION, ._pad = 0};
    if (bpf_map_update_elem(bpf_map__fd(o.attest->maps.kw_abi), &zero, &version, BPF_ANY) != 0)
        return fail("record the ABI version in kw_abi", -errno);
    return e;
}

int Enforcer::map_fd(const char* name) const {
    bpf_map* m = bpf_object__find_map_by_name(objs_->attest->obj, name);
    return m ? bpf_map__fd(m) : -1;
}

namespace {

uint32_t object_id(int fd);

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
        {o.gate->progs.kw_getsockopt, "kw_getsockopt"},
        {o.gate->progs.kw_setsockopt, "kw_setsockopt"},
        {o.gate->progs.kw_socket_create, "kw_socket_create"},
        {o.gate->progs.kw_sock_create, "kw_sock_create"},
        {o.guard->progs.kw_ptrace_access, "kw_ptrace_access"},
        {o.guard->progs.kw_ptrace_traceme, "kw_ptrace_traceme"},
        {o.guard->progs.kw_file_receive, "kw_file_receive"},
        {o.guard->progs.kw_bpf, "kw_bpf"},
        {o.guard->progs.kw_inode_perm, "kw_inode_perm"},
        {o.guard->progs.kw_file_open, "kw_file_open"},
        {o.guard->progs.kw_inode_unlink, "kw_inode_unlink"},
        {o.guard->progs.kw_inode_rmdir, "kw_inode_rmdir"},
        {o.guard->progs.kw_inode_rename, "kw_inode_rename"},
        {o.guard->progs.kw_inode_link, "kw_inode_link"},
        {o.guard->progs.kw_inode_create, "kw_inode_create"},
        {o.guard->progs.kw_sb_umount, "kw_sb_umount"},
        {o.guard->progs.kw_cred_prepare, "kw_cred_prepare"},
        {o.guard->progs.kw_task_setrlimit, "kw_task_setrlimit"},
        // fentry/fexit: bpf_program__attach picks the attach type from the section.
        {o.guard->progs.kw_coredump_enter, "kw_coredump_enter"},
        {o.guard->progs.kw_coredump_exit, "kw_coredump_exit"},
        {o.guard->progs.kw_file_ioctl, "kw_file_ioctl"},
        {o.guard->progs.kw_file_free, "kw_file_free"},
        {o.guard->progs.kw_mmap_file, "kw_mmap_file"},
        {o.guard->progs.kw_file_mprotect, "kw_file_mprotect"},
        {o.gate->progs.kw_tcp_close, "kw_tcp_close"},
    };
    for (const auto& l : lsms) {
        bpf_link* link = bpf_program__attach(l.prog);
        if (!link) return make_error(std::string("cannot attach ") + l.name + ": " + errno_text(errno));
        o.links.push_back(link);
        if (auto r = pin_replacing(link, links_dir + "/" + l.name); !r) return r;
    }

    attached_ = true;
    // Held from the start for a previous agent's handshakes (their calls are served
    // again, or failed, by this one).
    if (auto r = hold_file_guard(std::chrono::steady_clock::now() + options_.file_guard_hold); !r) return r;
    return sync_sockops();
}

// A link attached only while it is wanted, pinned at links/NAME: made by MAKE when WANT
// and not attached; detached, its pin removed (a previous agent's included), when not
// WANT. The guard learns of the link made and of the pin removed. True when it changed.
Result<bool> Enforcer::sync_link(bool want, bpf_link*& link, const char* name, const std::function<bpf_link*()>& make) {
    const std::string pin = options_.pin_dir + "/links/" + name;
    if (want && !link) {
        bpf_link* made = make();
        if (!made) return make_error(std::string("cannot attach ") + name + ": " + errno_text(errno));
        link = made;
        if (auto r = pin_replacing(link, pin); !r) return r.error();
        if (guard_enabled()) {
            if (uint32_t id = object_id(bpf_link__fd(link)))
                if (auto r = guard_object(KW_OBJ_LINK, id); !r) return r.error();
            if (auto r = guard_inodes(guarded_dirs_); !r) return r.error();
        }
        return true;
    }
    if (!want && (link || access(pin.c_str(), F_OK) == 0)) {
        if (unlink(pin.c_str()) != 0 && errno != ENOENT)
            return make_error("cannot remove the pinned link " + pin + ": " + errno_text(errno));
        if (link) bpf_link__destroy(link);  // its pin is gone: detached
        link = nullptr;
        if (guard_enabled())
            if (auto r = guard_inodes(guarded_dirs_); !r) return r.error();
        return true;
    }
    return false;
}

// sockops runs for every TCP socket of the machine, several times per connection: it is
// attached only while a destination asks for lifecycle events.
Result<void> Enforcer::sync_sockops() {
    auto changed = sync_link(lifecycle_, objs_->sockops_link, "kw_sockops", [this]() -> bpf_link* {
        core::UniqueFd cg(open(options_.cgroup_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!cg.valid()) return nullptr;
        return bpf_program__attach_cgroup(objs_->sockops->progs.kw_sockops, cg.get());
    });
    if (!changed) return make_error(changed.message() + " (cgroup root " + options_.cgroup_root + ")");
    if (*changed)
        spdlog::info(lifecycle_ ? "sockops attached: a destination asks for lifecycle events"
                                : "sockops detached: no destination asks for lifecycle events");
    return {};
}

// The data guard's programs that nothing but a handshake needs: file_permission and
// socket_recvmsg (socket_sendmsg also gates sendto and raw sockets: always attached).
// file_permission first: once it is there, every path that reads a marked socket meets
// a hook (recv, read and splice all pass file_permission or recvmsg).
Result<void> Enforcer::sync_data_guard(bool want) {
    auto& o = *objs_;
    bool changed = false;
    for (auto [link, name, prog] : {std::tuple{&o.file_perm_link, "kw_file_perm", o.gate->progs.kw_file_perm},
                                    std::tuple{&o.recvmsg_link, "kw_recvmsg", o.gate->progs.kw_recvmsg}}) {
        auto r = sync_link(want, *link, name, [prog] { return bpf_program__attach(prog); });
        if (!r) return r.error();
        changed |= *r;
    }
    if (changed)
        spdlog::debug(want ? "data guard (file_permission, socket_recvmsg) attached: a handshake may run"
                           : "data guard (file_permission, socket_recvmsg) detached: no handshake ran for a while");
    return {};
}

Result<void> Enforcer::hold_file_guard(std::chrono::steady_clock::time_point until) {
    file_guard_until_ = std::max(file_guard_until_, until);
    return sync_data_guard(true);
}

Result<void> Enforcer::release_file_guard(std::chrono::steady_clock::time_point now) {
    // Every agent attaches them at start, a previous agent's pins replaced: detached, no pin is left.
    if (!attached_ || !file_guard_attached() || now < file_guard_until_) return {};
    return sync_data_guard(false);
}

bool Enforcer::file_guard_attached() const { return objs_->file_perm_link || objs_->recvmsg_link; }

bool Enforcer::sockops_attached() const { return objs_->sockops_link != nullptr; }

Result<void> Enforcer::set_lifecycle(bool on) {
    lifecycle_ = on;
    return attached_ ? sync_sockops() : Result<void>{};
}

std::vector<Enforcer::FlowEntry> Enforcer::flows() const {
    std::vector<FlowEntry> out;
    int fd = map_fd("kw_flows");
    int cpus = libbpf_num_possible_cpus();
    if (fd < 0 || cpus <= 0) return out;
    std::vector<kw_flow_val> per_cpu(static_cast<size_t>(cpus));
    kw_flow_key key{}, next{};
    const kw_flow_key* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        key = next;
        prev = &key;
        if (bpf_map_lookup_elem(fd, &key, per_cpu.data()) != 0) continue;  // deleted meanwhile
        FlowEntry e{key, {}};
        for (const auto& v : per_cpu) {
            e.value.connections += v.connections;
            e.value.bytes_sent += v.bytes_sent;
            e.value.bytes_received += v.bytes_received;
        }
        out.push_back(e);
    }
    return out;
}

uint32_t Enforcer::active_generation() const {
    uint32_t zero = 0, gen = 0;
    if (bpf_map_lookup_elem(map_fd("kw_active"), &zero, &gen) != 0) return 0;
    return gen & 1;
}

namespace {

template <typename K, typename V>
Result<int> make_inner(bpf_map_type type, const char* name, const std::vector<std::pair<K, V>>& entries,
                       uint32_t flags = 0, uint32_t max_entries = 0) {
    LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = flags);
    uint32_t max = max_entries ? max_entries : std::max<size_t>(1, entries.size());
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
    std::vector<std::pair<uint64_t, uint32_t>> cgsel(c.governed_cgroups.begin(), c.governed_cgroups.end());
    if (c.containers.size() > KW_CTR_MAX)
        return make_error("more than " + std::to_string(KW_CTR_MAX) + " container entries (containers x workloads)");
    std::vector<std::pair<kw_ctr_key, uint32_t>> ctrs;
    for (const auto& k : c.containers) ctrs.emplace_back(k, 1u);

    struct Inner {
        const char* outer;
        Result<int> fd;
    };
    Inner inners[] = {
        {"kw_files", make_inner(BPF_MAP_TYPE_HASH, "kw_files_in", c.files)},
        {"kw_lists", make_inner(BPF_MAP_TYPE_HASH, "kw_lists_in", lists)},
        {"kw_wls", make_inner(BPF_MAP_TYPE_HASH, "kw_wls_in", wls)},
        {"kw_cgsel", make_inner(BPF_MAP_TYPE_HASH, "kw_cgsel_in", cgsel)},
        {"kw_code", make_inner(BPF_MAP_TYPE_HASH, "kw_code_in", c.code)},
        {"kw_sources", make_inner(BPF_MAP_TYPE_HASH, "kw_sources_in", c.sources)},
        // Containers arrive between reloads: room for them (not preallocated).
        {"kw_ctrs", make_inner(BPF_MAP_TYPE_HASH, "kw_ctrs_in", ctrs, BPF_F_NO_PREALLOC, KW_CTR_MAX)},
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
    for (auto& in : inners) {
        if (!in.fd) continue;
        // Inner maps are kwarden's objects too: nobody else may get an fd for them.
        if (result) {
            bpf_map_info info{};
            uint32_t len = sizeof(info);
            if (bpf_obj_get_info_by_fd(*in.fd, &info, &len) == 0)
                if (auto r = guard_object(KW_OBJ_MAP, info.id); !r) result = r;
        }
        close(*in.fd);  // the outer maps hold them now
    }
    // Debuggers are not generation-buffered: an entry the policy drops is removed only
    // after the new ones are in.
    if (result) result = set_debuggers(c.debuggers);
    // Not a reason to refuse the policy, which is in force: its lifecycle events are
    // missing (or keep coming) until the next publish, and the log says why.
    if (result)
        if (auto r = set_lifecycle(c.lifecycle); !r) spdlog::error("lifecycle events: {}", r.message());
    return result;
}

Result<int> Enforcer::active_inner(const char* outer) const {
    const uint32_t gen = active_generation();
    uint32_t id = 0;
    if (bpf_map_lookup_elem(map_fd(outer), &gen, &id) != 0)
        return make_error(std::string("no generation ") + std::to_string(gen) + " of " + outer + ": " +
                          errno_text(errno));
    int fd = bpf_map_get_fd_by_id(id);
    if (fd < 0) return make_error(std::string("cannot open ") + outer + " of generation " + std::to_string(gen) +
                                  ": " + errno_text(errno));
    return fd;
}

Result<void> Enforcer::add_containers(const std::vector<kw_ctr_key>& entries) {
    auto fd = active_inner("kw_ctrs");
    if (!fd) return fd.error();
    core::UniqueFd inner(*fd);
    const uint32_t one = 1;
    for (const auto& k : entries)
        if (bpf_map_update_elem(inner.get(), &k, &one, BPF_ANY) != 0)
            return make_error("cannot record container cgroup " + std::to_string(k.cgroup_id) + " in kw_ctrs: " +
                              errno_text(errno));
    return {};
}

Result<void> Enforcer::remove_containers(const std::vector<kw_ctr_key>& entries) {
    auto fd = active_inner("kw_ctrs");
    if (!fd) return fd.error();
    core::UniqueFd inner(*fd);
    for (const auto& k : entries) bpf_map_delete_elem(inner.get(), &k);
    return {};
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
Result<void> Enforcer::set_socket_state(int fd, kw_ktls_state state, const char* what) {
    if (bpf_map_update_elem(map_fd("kw_ktls"), &fd, &state, BPF_ANY) != 0)
        return make_error(std::string("cannot mark the socket as ") + what + " (kw_ktls): " + errno_text(errno));
    return {};
}

Result<void> Enforcer::mark_handshake_socket(int fd, uint32_t owner) {
    // file_permission first: once marked, the socket's splice paths must meet it.
    if (auto r = hold_file_guard(std::chrono::steady_clock::now() + options_.file_guard_hold); !r) return r;
    return set_socket_state(fd, {KW_KTLS_HANDSHAKE, owner}, "in handshake");
}

Result<void> Enforcer::mark_managed_socket(int fd, uint32_t owner) {
    return set_socket_state(fd, {KW_KTLS_MANAGED, owner}, "managed");
}

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
            out.push_back({bpf_program__name(p), info.id, bpf_program__section_name(p), info.run_time_ns, info.run_cnt});
        }
    };
    add(objs_->attest->obj);
    add(objs_->gate->obj);
    add(objs_->guard->obj);
    add(objs_->sockops->obj);
    return out;
}

Result<void> Enforcer::guard_object(uint32_t kind, uint32_t id) {
    kw_guard_id key{kind, id};
    uint32_t one = 1;
    if (bpf_map_update_elem(map_fd("kw_guard_ids"), &key, &one, BPF_ANY) != 0)
        return make_error("cannot record BPF object " + std::to_string(id) + " in kw_guard_ids: " + errno_text(errno));
    return {};
}

namespace {

uint32_t object_id(int fd) {
    // bpf_prog_info, bpf_map_info and bpf_link_info all start with type, id.
    struct {
        uint32_t type;
        uint32_t id;
        uint8_t rest[256];
    } info{};
    uint32_t len = sizeof(info);
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

Result<host::KernelFileFacts> path_facts(const std::string& path) {
    core::UniqueFd fd(open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd.valid()) return make_error("cannot open " + path + ": " + errno_text(errno));
    auto f = host::kernel_file_facts(fd.get());
    if (!f) return make_error(path + ": " + f.message());
    return f;
}

}  // namespace

// The inodes of the pin tree and of the state tree, each with its kind. Entries from an
// earlier call that are gone (a replaced link pin) are removed after the new ones are in.
Result<void> Enforcer::guard_inodes(const std::vector<std::string>& state_dirs) {
    std::map<std::pair<uint64_t, uint64_t>, uint32_t> want;
    auto walk = [&](const std::string& root, uint32_t file_kind, uint32_t dir_kind) -> Result<void> {
        auto top = path_facts(root);
        if (!top) return top.error();
        want[{top->key.dev, top->key.ino}] = dir_kind;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec)) {
            auto f = path_facts(it->path().string());
            if (!f) return f.error();
            want[{f->key.dev, f->key.ino}] = it->is_directory(ec) ? dir_kind : file_kind;
        }
        if (ec) return make_error("cannot walk " + root + ": " + ec.message());
        return {};
    };
    if (auto r = walk(options_.pin_dir, KW_INODE_PIN, KW_INODE_PIN_DIR); !r) return r;
    for (const auto& dir : state_dirs) {
        std::error_code ec;
        if (!fs::exists(dir, ec)) continue;  // no CA directory: an ephemeral CA in memory
        if (auto r = walk(dir, KW_INODE_STATE, KW_INODE_STATE_DIR); !r) return r;
    }

    int fd = map_fd("kw_guard_inodes");
    for (const auto& [k, kind] : want) {
        kw_file_key key{k.first, k.second};
        if (bpf_map_update_elem(fd, &key, &kind, BPF_ANY) != 0)
            return make_error("cannot record an inode in kw_guard_inodes: " + errno_text(errno));
    }
    std::vector<kw_file_key> stale;
    kw_file_key key{}, next{};
    kw_file_key* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        if (!want.count({next.dev, next.ino})) stale.push_back(next);
        key = next;
        prev = &key;
    }
    for (const auto& k : stale) bpf_map_delete_elem(fd, &k);
    return {};
}

// The kernel records the executable (kw_file_open, on this process's next open): the
// (dev, ino, ctime) exec will compare, which stat(2) does not give on overlayfs; and the
// mount namespace and root the policy's paths were resolved in.
Result<void> Enforcer::record_agent_exe() {
    const int fd = map_fd("kw_guard");
    uint32_t zero = 0;
    kw_guard_cfg cfg{};
    bpf_map_lookup_elem(fd, &zero, &cfg);
    cfg.agent_exe = {};
    cfg.capture_tgid = static_cast<uint32_t>(getpid());
    if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0)
        return make_error("cannot write kw_guard: " + errno_text(errno));
    core::UniqueFd any(open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
    if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0 || cfg.capture_tgid != 0 || cfg.agent_exe.ino == 0)
        return make_error("the kernel did not record the agent's executable (kw_file_open attached?)");
    return {};
}

namespace {

// Everything an iterator link writes, to its end.
Result<std::string> read_iterator(bpf_link* link, const char* what) {
    core::UniqueFd it(bpf_iter_create(bpf_link__fd(link)));
    if (!it.valid()) return make_error(std::string("cannot start the ") + what + ": " + errno_text(errno));
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = read(it.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(std::string("reading the ") + what + ": " + errno_text(errno));
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

using LinkPtr = std::unique_ptr<bpf_link, decltype(&bpf_link__destroy)>;

}  // namespace

// Runs the listener probe over this process's descriptors: FD's record, and the filter's
// address left in kw_listener_filter.
Result<kw_listener_record> Enforcer::probe_listener(int fd) {
    auto& o = *objs_;
    if (fd < 0) return make_error("no listener");
    o.guard->bss->kw_listener_probe_fd = static_cast<uint32_t>(fd);
    o.guard->bss->kw_listener_filter = 0;
    bpf_iter_link_info info{};
    info.task.pid = static_cast<uint32_t>(getpid());  // this process's descriptors only
    LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info, .link_info_len = sizeof(info));
    LinkPtr link(bpf_program__attach_iter(o.guard->progs.kw_listener_probe, &opts), &bpf_link__destroy);
    if (!link) return make_error("cannot attach the listener probe: " + errno_text(errno));
    auto out = read_iterator(link.get(), "listener probe");
    if (!out) return out.error();
    // One record per task that shares this descriptor table: on 6.1 the iterator visits
    // every thread of the process, each with the same descriptor. Any of them will do.
    kw_listener_record rec{};
    for (size_t at = 0; at + sizeof(rec) <= out->size(); at += sizeof(rec)) {
        std::memcpy(&rec, out->data() + at, sizeof(rec));
        if (rec.fd == fd) return rec;
    }
    return make_error("the listener probe did not find descriptor " + std::to_string(fd));
}

Result<bool> Enforcer::listener_waits_killable(int fd) {
    auto rec = probe_listener(fd);
    if (!rec) return rec.error();
    if (rec->killable < 0) return make_error("this kernel's seccomp filters have no killable wait (Linux 5.19+)");
    return rec->killable == 1;
}

Result<std::vector<kw_filter_task>> Enforcer::listener_tasks(int fd) {
    auto rec = probe_listener(fd);
    if (!rec) return rec.error();
    auto& o = *objs_;
    if (!o.guard->bss->kw_listener_filter) return make_error("the listener probe found no filter");
    LinkPtr link(bpf_program__attach_iter(o.guard->progs.kw_listener_tasks, nullptr), &bpf_link__destroy);
    if (!link) return make_error("cannot attach the listener's task iterator: " + errno_text(errno));
    auto out = read_iterator(link.get(), "listener's task iterator");
    o.guard->bss->kw_listener_filter = 0;
    if (!out) return out.error();
    std::vector<kw_filter_task> tasks(out->size() / sizeof(kw_filter_task));
    if (out->size() % sizeof(kw_filter_task)) return make_error("the listener's task iterator wrote a partial record");
    std::memcpy(tasks.data(), out->data(), out->size());
    return tasks;
}

Result<void> Enforcer::protect(const std::vector<std::string>& state_dirs) {
    if (state_dirs.empty()) return make_error("protect: no state directory");
    auto& o = *objs_;
    for (bpf_object* obj : {o.attest->obj, o.gate->obj, o.guard->obj, o.sockops->obj}) {
        bpf_map* m;
        bpf_object__for_each_map(m, obj) {
            if (uint32_t id = object_id(bpf_map__fd(m)))
                if (auto r = guard_object(KW_OBJ_MAP, id); !r) return r;
        }
        bpf_program* p;
        bpf_object__for_each_program(p, obj) {
            if (uint32_t id = object_id(bpf_program__fd(p)))
                if (auto r = guard_object(KW_OBJ_PROG, id); !r) return r;
        }
    }
    for (bpf_link* l : o.links)
        if (uint32_t id = object_id(bpf_link__fd(l)))
            if (auto r = guard_object(KW_OBJ_LINK, id); !r) return r;
    // The links attached only while wanted (sync_link), when they are now.
    for (bpf_link* l : {objs_->sockops_link, objs_->file_perm_link, objs_->recvmsg_link})
        if (l)
            if (uint32_t id = object_id(bpf_link__fd(l)))
                if (auto r = guard_object(KW_OBJ_LINK, id); !r) return r;
    guarded_dirs_ = state_dirs;
    if (auto r = guard_inodes(state_dirs); !r) return r;
    if (auto r = record_agent_exe(); !r) return r;

    auto pins = path_facts(options_.pin_dir);
    auto state = path_facts(state_dirs[0]);
    if (!pins) return pins.error();
    if (!state) return state.error();
    for (size_t i = 1; i < state_dirs.size(); i++) {
        auto other = path_facts(state_dirs[i]);
        if (other && other->key.dev != state->key.dev)
            spdlog::warn("{} is on another filesystem than {}: the guard refuses changes to it, but reads of its "
                         "files only on the state directory's filesystem",
                         state_dirs[i], state_dirs[0]);
    }
    uint32_t zero = 0;
    kw_guard_cfg cfg{};
    bpf_map_lookup_elem(map_fd("kw_guard"), &zero, &cfg);
    cfg.pin_dev = pins->key.dev;
    cfg.state_dev = state->key.dev;
    cfg.enabled = 1;
    if (bpf_map_update_elem(map_fd("kw_guard"), &zero, &cfg, BPF_ANY) != 0)
        return make_error("cannot turn the guard on (kw_guard): " + errno_text(errno));
    return {};
}

Result<void> Enforcer::unprotect() {
    uint32_t zero = 0;
    kw_guard_cfg cfg{};
    bpf_map_lookup_elem(map_fd("kw_guard"), &zero, &cfg);
    cfg.enabled = 0;
    if (bpf_map_update_elem(map_fd("kw_guard"), &zero, &cfg, BPF_ANY) != 0)
        return make_error("cannot turn the guard off (kw_guard): " + errno_text(errno));
    return record_agent_exe();  // the agent's place, which argv's files are checked against, still counts
}

bool Enforcer::guard_enabled() const {
    uint32_t zero = 0;
    kw_guard_cfg cfg{};
    return bpf_map_lookup_elem(map_fd("kw_guard"), &zero, &cfg) == 0 && cfg.enabled;
}

// Replaces the debuggers: new entries first, then the ones the policy dropped.
Result<void> Enforcer::set_debuggers(const std::vector<std::pair<kw_debugger_key, uint32_t>>& debuggers) {
    int fd = map_fd("kw_debuggers");
    for (const auto& [k, idx] : debuggers)
        if (bpf_map_update_elem(fd, &k, &idx, BPF_ANY) != 0)
            return make_error("cannot record a debugger in kw_debuggers: " + errno_text(errno));
    std::vector<kw_debugger_key> stale;
    kw_debugger_key key{}, next{};
    kw_debugger_key* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, &next) == 0) {
        bool keep = false;
        for (const auto& [k, idx] : debuggers) keep = keep || std::memcmp(&k, &next, sizeof(k)) == 0;
        if (!keep) stale.push_back(next);
        key = next;
        prev = &key;
    }
    for (const auto& k : stale) bpf_map_delete_elem(fd, &k);
    return {};
}

Result<void> Enforcer::teardown(const std::string& pin_dir) {
    std::error_code ec;
    if (!fs::exists(pin_dir, ec)) return {};
    fs::remove_all(pin_dir, ec);
    if (ec) return make_error("cannot remove " + pin_dir + ": " + ec.message());
    return {};
}

}  // namespace kw::bpf
