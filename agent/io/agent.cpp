// See agent.h. One Asio thread serves everything: the kernel decides connections on its
// own, so nothing here is on a connection's path; the loop only feeds policy in and
// carries events out.
#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include "io/agent.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <spdlog/spdlog.h>
#include <sstream>
#include <vector>

#include "bpf/enforcer.h"
#include "bpf/proc_attest.h"
#include "host/linux_host_view.h"
#include "core/json_field.h"
#include "core/peer_limits.h"
#include "core/policy.h"
#include "core/unique_fd.h"
#include "identity/node_identity.h"
#include "tls/ktls.h"
#include "io/accept_loop.h"
#include "io/admin_session.h"
#include "io/event_sink.h"
#include "io/asio_loop.h"
#include "io/enrol_socket.h"
#include "runtime/enrolment_service.h"
#include "runtime/rotation.h"
#include "runtime/events.h"
#include "io/hygiene.h"
#include "io/metrics_server.h"
#include "runtime/metrics.h"
#include "io/linux_kernel.h"
#include "runtime/policy_service.h"
#include "io/worker.h"

namespace kw::io {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;
namespace fs = std::filesystem;
using runtime::EventFormatter;

namespace {


const char* counter_name(int i) {
    switch (i) {
        case KW_CNT_CONNECT_CHECKED: return "connect_checked";
        case KW_CNT_CONNECT_ALLOWED: return "connect_allowed";
        case KW_CNT_CONNECT_DENIED: return "connect_denied";
        case KW_CNT_CONNECT_AUDITED: return "connect_audited";
        case KW_CNT_EXEC_ATTESTED: return "exec_attested";
        case KW_CNT_EXEC_CLEARED: return "exec_cleared";
        case KW_CNT_EVENTS_DROPPED: return "events_dropped";
        case KW_CNT_GUARD_DENIED: return "guard_denied";
    }
    return "unknown";
}

std::string read_text(const std::string& path, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot read " + path + ": " + std::strerror(errno);
        return {};
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The agent's memory is locked (protect_key_memory), and what the allocator keeps after
// a peak stays resident for good: loading the programs parses the kernel's BTF once per
// object, compiling a policy builds its tables. What was freed goes back to the kernel.
void release_freed_memory() { ::malloc_trim(0); }

// Every enrolled process, held call and client costs descriptors: the soft limit (often
// 1024) is raised to the hard one, so that the per-uid bounds of the sockets, not the
// limit, decide when a user is refused.
void raise_descriptor_limit() {
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        spdlog::warn("cannot raise the descriptor limit from {}: {}", was, std::strerror(errno));
    else
        spdlog::info("descriptor limit raised from {} to {}", was, rl.rlim_cur);
}

class Agent final : public runtime::AdminPorts {
public:
    Agent(const AgentOptions& options)
        : options_(options),
          signals_(io_, SIGHUP, SIGTERM, SIGINT),
          acceptor_(io_),
          events_fd_(io_),
          timer_(io_),
          formatter_(options.cgroup_root),
          identity_(options.ca_dir),
          policy_(policy_ports()) {}

    int run();

    // runtime::AdminPorts
    json status() override;
    Result<void> unprotect() override { return enforcer_->unprotect(); }
    void exit_soon() override;
    void emit(const json& event) override;
    std::string render_metrics();
    void replay_events(const std::shared_ptr<runtime::AdminClient>& client, bool follow) override {
        events_.replay(client, follow);
    }
    Result<runtime::ProcessIdentity> process_identity(int pid) override;
    json svid_list() override { return identity_.svid_list(); }
    Result<std::string> bundle_json(const std::optional<std::string>& trust_domain) override {
        return identity_.bundle_json(trust_domain);
    }
    void apply_policy(std::string text, runtime::PolicyService::Done done) override {
        policy_.apply(std::move(text), std::move(done));
    }
    std::optional<std::string> identity_name(uint32_t ident) override { return policy_.ids().name(ident); }

private:
    runtime::PolicyPorts policy_ports();
    std::string policy_text(std::string& error) const;
    void on_signal();
    void watch_events();
    void on_event(const void* data, size_t size);
    Result<tls::Cipher> ensure_ktls() const;
    Result<void> start_enrollment(tls::Cipher cipher);
    void tick();
    Result<void> mark_self_as_agent();
    Result<void> open_admin_socket();
    void on_admin_connection(local::socket socket);
    void report_refusals();

    AgentOptions options_;
    // Before io_: the sessions io_ destroys refer to it.
    runtime::AdminService admin_{*this};
    asio::io_context io_;
    asio::signal_set signals_;
    local::acceptor acceptor_;
    AcceptLoop admin_accept_{io_, acceptor_, "admin socket", [this](local::socket s) { on_admin_connection(std::move(s)); }};
    asio::posix::stream_descriptor events_fd_;
    asio::steady_timer timer_;
    std::unique_ptr<bpf::Enforcer> enforcer_;
    std::unique_ptr<LinuxKernel> kernel_port_;  // the enrolment runtime's view of the kernel
    EventFormatter formatter_;
    identity::NodeIdentity identity_;
    AsioLoop loop_{io_};  // the runtime's loop
    // The handshakes' threads: after io_, so destroyed (their works waited for) before it.
    std::unique_ptr<AsioOffload> handshakes_;
    runtime::Rotation rotation_{loop_, identity_, [this] {
                                    if (options_.hooks.svids_issued) options_.hooks.svids_issued(identity_.svids());
                                }};
    std::unique_ptr<runtime::EnrollmentService> enrollment_;
    std::unique_ptr<EnrolSocket> enrol_socket_;  // after enrollment_: destroyed first
    std::unique_ptr<EnrolSocket> oci_socket_;
    EventSink events_;
    uint64_t dropped_reported_ = 0;
    // Exceptions that reached the event loop: each was logged, and the loop kept running.
    uint64_t loop_exceptions_ = 0;
    uint64_t undecodable_ = 0;  // event records of another ABI version, or cut short
    std::string metrics_error_;  // why the metrics endpoint is not served
    std::string kernel_release_;
    LinuxPolicyKernel policy_kernel_{enforcer_};
    LinuxContainerHost container_host_{enforcer_, options_.cgroup_root};
    runtime::Containers containers_{container_host_};
    runtime::PolicyService policy_;
    runtime::Metrics metrics_;
    std::unique_ptr<MetricsServer> metrics_server_;
    Worker compiler_;  // last: stopped first, while what its job uses still exists
};

runtime::PolicyPorts Agent::policy_ports() {
    runtime::PolicyPorts ports;
    ports.kernel = &policy_kernel_;
    ports.identity = &identity_;
    ports.host = [root = options_.cgroup_root] { return std::make_unique<host::LinuxHostView>(root); };
    ports.off_loop = [this](std::function<void()> job) { compiler_.post(std::move(job)); };
    ports.on_loop = [this](std::function<void()> job) { asio::post(io_, std::move(job)); };
    ports.pins_file = options_.state_dir + "/pins.json";
    ports.containers = &containers_;
    ports.installed = [this](const std::shared_ptr<const runtime::PolicyView>& view) {
        formatter_.set_policy(view);
        release_freed_memory();
    };
    ports.svids_issued = [this] {
        if (options_.hooks.svids_issued) options_.hooks.svids_issued(identity_.svids());
        rotation_.schedule();
    };
    return ports;
}

std::string Agent::policy_text(std::string& error) const {
    if (!options_.policy_path) return core::default_policy_text();
    return read_text(*options_.policy_path, error);
}

void Agent::on_signal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            std::string error;
            std::string text = policy_text(error);
            if (!error.empty()) {
                spdlog::error("SIGHUP: {}; the previous policy stays in force", error);
            } else {
                policy_.apply(std::move(text), [](Result<runtime::PolicyService::Applied> r,
                                                  const std::vector<core::PolicyProblem>&) {
                    if (!r)
                        spdlog::error("SIGHUP: {}", r.message());
                    else
                        spdlog::info("SIGHUP: applied revision {}", r->revision.substr(0, 16));
                });
            }
            on_signal();
            return;
        }
        spdlog::info("signal {}: exiting; the pinned programs keep enforcing revision {}", sig,
                     policy_.view() ? policy_.view()->policy.revision.substr(0, 16) : "?");
        io_.stop();
    });
}

void Agent::on_event(const void* data, size_t size) {
    auto j = formatter_.format(data, size);
    if (!j) {
        // After an upgrade the previous programs write records of their ABI version until
        // their links are replaced: one line for the first, then one per thousand.
        kw_ev_hdr hdr{};
        if (size >= sizeof(hdr)) std::memcpy(&hdr, data, sizeof(hdr));
        if (undecodable_++ % 1000 == 0)
            spdlog::warn("dropped an event record of {} bytes (ABI version {}, this agent's is {}) that this agent "
                         "cannot decode; {} so far",
                         size, hdr.version, KW_ABI_VERSION, undecodable_);
        return;
    }
    emit(*j);
}

void Agent::emit(const json& event) {
    metrics_.observe(event);
    events_.emit(event);
}

namespace {

// The agent process as the process_* families describe it, from /proc/self.
void read_self(runtime::MetricsInputs& in) {
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the command (which may hold spaces): state is field 3.
    auto close = line.rfind(')');
    if (close != std::string::npos) {
        std::istringstream rest(line.substr(close + 2));
        std::vector<std::string> f((std::istream_iterator<std::string>(rest)), std::istream_iterator<std::string>());
        // f[0] is field 3: utime 14, stime 15, starttime 22, rss 24.
        if (f.size() > 21) {
            in.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / tick;
            in.resident_bytes = std::stod(f[21]) * page;
            std::ifstream up("/proc/stat");
            std::string key;
            double btime = 0;
            while (up >> key)
                if (key == "btime") {
                    up >> btime;
                    break;
                }
            in.start_time = btime + std::stod(f[19]) / tick;
        }
    }
    std::error_code ec;
    for (auto it = fs::directory_iterator("/proc/self/fd", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        in.open_fds++;
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) in.max_fds = static_cast<double>(rl.rlim_cur);
}

}  // namespace

std::string Agent::render_metrics() {
    runtime::MetricsInputs in;
    in.counters = enforcer_->counters();
    for (const auto& f : enforcer_->flows()) in.flows.emplace_back(f.key, f.value);
    in.name_flow = [this](const kw_flow_key& k) {
        std::string identity = k.ident == KW_IDENT_NONE ? "unattested"
                                                        : policy_.ids().name(k.ident).value_or("unknown");
        // Destination sets are numbered per policy: named by the one that decided.
        std::string destination;
        if (const runtime::PolicyView* v = formatter_.view_of(k.revision))
            for (const auto& name : runtime::destination_names(*v, k.dset))
                destination += (destination.empty() ? "" : ",") + name;
        return std::make_pair(identity, destination.empty() ? std::string("_unknown") : destination);
    };
    if (enrollment_) {
        in.enrolled_processes = enrollment_->enrolled();
        in.held_calls = enrollment_->held_calls();
    }
    for (const auto& [id, svid] : identity_.svids().all())
        in.svid_not_after[id] = std::chrono::duration<double>(svid->not_after.time_since_epoch()).count();
    if (auto view = policy_.view()) {
        in.policy_revision = view->policy.revision;
        in.policy_loaded_at = std::chrono::duration<double>(policy_.loaded_at().time_since_epoch()).count();
        in.policy_load_seconds = std::chrono::duration<double>(policy_.last_load()).count();
    }
    in.sockops_attached = enforcer_->sockops_attached();
    for (const auto& p : enforcer_->programs()) in.programs.push_back({p.name, p.run_time_ns, p.run_cnt});
    std::ifstream stats("/proc/sys/kernel/bpf_stats_enabled");
    int enabled = 0;
    in.bpf_stats_enabled = (stats >> enabled) && enabled != 0;
    in.undecodable_events = undecodable_;
    read_self(in);
    return metrics_.render(in);
}

void Agent::watch_events() {
    events_fd_.async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
        if (ec) return;
        enforcer_->poll_events(0);
        watch_events();
    });
}

void Agent::tick() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([this](boost::system::error_code ec) {
        if (ec) return;
        auto counters = enforcer_->counters();
        if (counters[KW_CNT_EVENTS_DROPPED] > dropped_reported_) {
            spdlog::warn("{} events dropped: the ring buffer was full (total {})",
                         counters[KW_CNT_EVENTS_DROPPED] - dropped_reported_, counters[KW_CNT_EVENTS_DROPPED]);
            dropped_reported_ = counters[KW_CNT_EVENTS_DROPPED];
        }
        policy_.recheck_cgroups([](Result<runtime::PolicyService::Applied> r, const std::vector<core::PolicyProblem>&) {
            if (!r) spdlog::error("cgroup re-resolution: {}", r.message());
        });
        report_refusals();
        if (auto r = enforcer_->release_file_guard(std::chrono::steady_clock::now()); !r)
            spdlog::error("file_permission guard: {}", r.message());
        tick();
    });
}

Result<void> Agent::open_admin_socket() {
    fs::path path(options_.admin_socket);
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    ::unlink(path.c_str());
    boost::system::error_code bec;
    mode_t old = umask(0177);  // the socket is born 0600: no window where others can connect
    acceptor_.open(local(), bec);
    if (!bec) acceptor_.bind(local::endpoint(path.string()), bec);
    umask(old);
    if (!bec) acceptor_.listen(asio::socket_base::max_listen_connections, bec);
    if (bec) return make_error("cannot listen on admin socket " + path.string() + ": " + bec.message());
    // Anyone may connect, so that a refused peer is seen (a guard event); the session
    // answers root peers only (SO_PEERCRED).
    chmod(path.c_str(), 0666);
    return {};
}

// Anyone may connect; only root is served. Any other peer is answered at once and
// closed: the answer fits a fresh socket's buffer, so nothing waits on that peer and it
// holds none of the agent's descriptors once this returns.
void Agent::on_admin_connection(local::socket socket) {
    struct ucred cred {};
    socklen_t len = sizeof(cred);
    if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) cred.uid = ~0u;
    auto refusal = admin_.refuse({cred.pid, cred.uid, cred.gid});
    if (!refusal) {
        std::make_shared<AdminSession>(std::move(socket), admin_)->start();
        return;
    }
    std::string line = core::json_text(*refusal) + "\n";
    (void)::send(socket.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

json Agent::status() {
    json s;
    s["kernel"] = kernel_release_;
    s["took_over_pins"] = enforcer_->took_over();
    s["guard"] = enforcer_->guard_enabled() ? "on" : "off";
    s["generation"] = enforcer_->active_generation();
    s["policy_source"] = options_.policy_path ? *options_.policy_path : "embedded default";
    json progs = json::array();
    for (const auto& p : enforcer_->programs()) progs.push_back({{"name", p.name}, {"id", p.id}, {"attach", p.attach}});
    s["programs"] = progs;
    json counters;
    auto c = enforcer_->counters();
    for (int i = 0; i < KW_CNT_MAX; i++) counters[counter_name(i)] = c[i];
    s["counters"] = counters;
    if (auto view = policy_.view()) {
        s["revision"] = view->policy.revision;
        s["mode"] = view->policy.mode == core::Mode::Audit ? "audit" : "enforce";
        s["trust_domain"] = view->policy.trust_domain;
        s["workloads"] = view->policy.workloads.size();
        s["destinations"] = view->policy.destinations.size();
        s["rules"] = view->policy.rules.size();
        json pins = json::array();
        for (const auto& p : view->compiled.pins) {
            pins.push_back({{"path", p.path},
                            {"role", p.role == core::PinRole::Exe ? "exe" : p.role == core::PinRole::Script ? "script" : "source"},
                            {"sha256", p.pinned_sha256},
                            {"pinned_from", p.pin_source},
                            {"active", p.active},
                            {"problem", p.problem.empty() ? json(nullptr) : json(p.problem)}});
        }
        s["pinned_binaries"] = pins;
        json ids = json::object();
        for (const auto& [id, name] : policy_.ids().all()) ids[std::to_string(id)] = name;
        s["identities"] = ids;
    }
    s["identity"] = identity_.status();
    s["enrolled_processes"] = enrollment_ ? enrollment_->enrolled() : 0;
    s["listener_holder"] = {{"socket", options_.holder_socket},
                            {"attached", enrollment_ && enrollment_->holder_attached()}};
    // What the sockets any local user may reach refused, and failed accepts.
    json sockets;
    sockets["admin"] = {{"accept_errors", admin_accept_.errors()},
                        {"refused_not_root", admin_.refused("not_root")},
                        {"idle_timeouts", admin_.refused("idle")}};
    if (enrollment_) {
        sockets["enroll"] = enrollment_->socket_status();
        sockets["enroll"]["accept_errors"] = enrol_socket_ ? enrol_socket_->accept_errors() : 0;
        sockets["oci"] = {{"path", options_.oci_socket},
                          {"accept_errors", oci_socket_ ? oci_socket_->accept_errors() : 0},
                          {"refused", enrollment_->refused_runtimes()}};
    }
    s["sockets"] = sockets;
    s["loop_exceptions"] = loop_exceptions_;
    if (metrics_server_)
        s["metrics"] = {{"address", metrics_server_->address()},
                        {"scrapes", metrics_server_->scrapes()},
                        {"bad_requests", metrics_server_->bad_requests()},
                        {"turned_away", metrics_server_->turned_away()},
                        {"accept_errors", metrics_server_->accept_errors()}};
    else
        s["metrics"] = {{"address", nullptr}, {"error", metrics_error_.empty() ? json(nullptr) : json(metrics_error_)}};
    s["lifecycle_events"] = enforcer_->sockops_attached();
    s["handshake_workers"] = options_.handshake_workers;
    s["file_permission_guard"] = enforcer_->file_guard_attached();
    return s;
}

// Refusals kept back by the report interval, summed up per uid and reason.
void Agent::report_refusals() {
    auto now = core::PeerLimits::Clock::now();
    admin_.report_refusals(now);
    if (enrollment_) enrollment_->report_refusals(now);
}

void Agent::exit_soon() {
    auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
    t->async_wait([this, t](boost::system::error_code) { io_.stop(); });
}

Result<runtime::ProcessIdentity> Agent::process_identity(int pid) {
    core::UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) return make_error("no process " + std::to_string(pid) + ": " + std::strerror(errno));
    auto t = enforcer_->task_identity(pidfd.get());
    if (!t) return runtime::ProcessIdentity{KW_IDENT_NONE, false};
    return runtime::ProcessIdentity{t->ident, (t->flags & KW_TASK_FROM_PROC) != 0};
}

Result<void> Agent::mark_self_as_agent() {
    core::UniqueFd self(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
    if (!self.valid()) return make_error(std::string("pidfd_open(self): ") + std::strerror(errno));
    kw_task task = enforcer_->task_identity(self.get()).value_or(kw_task{});
    task.flags |= KW_TASK_AGENT;
    if (auto r = enforcer_->set_task_identity(self.get(), task); !r)
        return make_error("cannot mark the agent in task storage: " + r.message());
    return {};
}

// kTLS must work before any process is enrolled: the tls module is loaded here (autoload
// needs CAP_NET_ADMIN in the init namespace), and a kernel without it stops the agent
// before it touches the kernel's programs.
Result<tls::Cipher> Agent::ensure_ktls() const {
    auto cipher = tls::parse_cipher(options_.tls_cipher);
    if (!cipher) return make_error("--tls-cipher: " + cipher.message());
    if (!tls::probe_ktls(*cipher)) {
        int rc = std::system("/sbin/modprobe tls >/dev/null 2>&1");
        (void)rc;
    }
    if (auto probe = tls::probe_ktls(*cipher); !probe)
        return make_error("kTLS is not available (" + probe.message() +
                          "): load the tls module (modprobe tls) or use a kernel with CONFIG_TLS");
    return cipher;
}

Result<void> Agent::start_enrollment(tls::Cipher cipher) {
    runtime::EnrollContext ctx;
    ctx.loop = &loop_;
    ctx.policy = [this] { return policy_.view(); };
    kernel_port_ = std::make_unique<LinuxKernel>(*enforcer_);
    ctx.kernel = kernel_port_.get();
    ctx.identity = &identity_;
    // A handshake's event names the container of the process it ran for: the process is
    // still held in its call when the event is made.
    ctx.emit = [this](const json& e) {
        if (e.value("type", "") != "tls" || !e.contains("tgid")) return emit(e);
        json named = e;
        if (auto cg = container_host_.cgroup_of(e["tgid"].get<pid_t>()))
            if (auto c = formatter_.container(cg->id)) named["container"] = std::move(*c);
        emit(named);
    };
    ctx.handshake_timeout = options_.handshake_timeout;
    if (options_.handshake_workers) {
        handshakes_ = std::make_unique<AsioOffload>(io_, options_.handshake_workers, tls::kHandshakeStackBytes);
        ctx.handshakes = handshakes_.get();
    }
    ctx.cipher = cipher;
    ctx.holder_socket = options_.holder_socket;
    ctx.containers = &containers_;
    ctx.listener_killable = [this](int fd) { return enforcer_->listener_waits_killable(fd); };
    ctx.listener_tasks = [this](int fd) { return enforcer_->listener_tasks(fd); };
    formatter_.set_containers(&containers_);
    ctx.keys_installed = options_.hooks.keys_installed;
    enrollment_ = std::make_unique<runtime::EnrollmentService>(std::move(ctx));
    // The processes a previous agent served come back first, with the calls they hold.
    // Without a holder the agent still runs; each enrolment tries to reach one again.
    if (auto adopted = enrollment_->adopt(); !adopted)
        spdlog::error("listener holder at {}: {}", options_.holder_socket, adopted.message());
    else if (*adopted)
        spdlog::info("adopted {} enrolled process(es) from the listener holder", *adopted);
    enrol_socket_ = std::make_unique<EnrolSocket>(
        io_, "enrolment socket", [this](core::UniqueFd fd) { enrollment_->on_connection(std::move(fd)); });
    // Any user enrols their own processes; the service checks who.
    if (auto r = enrol_socket_->listen(options_.enroll_socket, 0666); !r) return r;
    if (options_.oci_socket.empty()) return {};
    oci_socket_ = std::make_unique<EnrolSocket>(
        io_, "seccomp-agent socket", [this](core::UniqueFd fd) { enrollment_->on_runtime_connection(std::move(fd)); });
    return oci_socket_->listen(options_.oci_socket, 0600);  // container runtimes run as root
}

int Agent::run() {
    // The mTLS handshakes write with write(2) (BoringSSL's socket BIO) on connections a
    // peer may reset at any moment: a write must fail with EPIPE, not kill the agent.
    ::signal(SIGPIPE, SIG_IGN);
    auto probe = bpf::probe_kernel(options_.pin_dir);
    kernel_release_ = probe.release;
    if (!probe.ok()) {
        spdlog::error("this kernel ({}) cannot run kwarden:", probe.release);
        for (const auto& m : probe.missing) spdlog::error("  - {}", m);
        return 1;
    }

    raise_descriptor_limit();
    std::error_code ec;
    fs::create_directories(options_.state_dir, ec);
    if (ec) {
        spdlog::error("cannot create state directory {}: {}", options_.state_dir, ec.message());
        return 1;
    }
    chmod(options_.state_dir.c_str(), 0700);
    // The guard's refusal says why here, not as an unreadable file further on.
    if (int fd = ::open(options_.state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
        ::close(fd);
    } else if (errno == EPERM) {
        spdlog::error("the kernel refuses this process its state directory {}: {}", options_.state_dir,
                      bpf::kGuardAgentRule);
        return 1;
    }
    policy_.load_pins();
    // Before the first key exists: locked memory, no core dumps, no ptrace by the uid.
    if (auto r = protect_key_memory(); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    if (auto r = identity_.load_ca(); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }

    // Validate before touching the kernel: a bad policy at start changes nothing.
    std::string error;
    std::string text = policy_text(error);
    if (!error.empty()) {
        spdlog::error("{}", error);
        return 1;
    }
    auto parsed = core::parse_policy(text);
    if (!parsed.errors.empty() || !parsed.policy) {
        spdlog::error("policy {} rejected:", options_.policy_path.value_or("(embedded)"));
        for (const auto& e : parsed.errors) spdlog::error("  {}", e.to_string());
        return 1;
    }

    auto cipher = ensure_ktls();
    if (!cipher) {
        spdlog::error("{}", cipher.message());
        return 1;
    }

    // The programs find a container file's image-layer inode through overlayfs's own
    // types, which the kernel describes only while the module is loaded: load it now, so
    // that containers started later are covered (without it their files match nothing).
    // Loaded already (a container runtime ran, or a previous agent), nothing is spawned.
    if (std::error_code overlay_ec; !fs::exists("/sys/module/overlay", overlay_ec) &&
                                    std::system("/sbin/modprobe overlay >/dev/null 2>&1") != 0)
        spdlog::warn("cannot load the overlay module: files in containers started later will match no pin");
    // The file_permission guard outlives the longest handshake (--handshake-timeout bounds
    // each from before its socket is marked) twice over.
    auto enforcer = bpf::Enforcer::load(
        {.pin_dir = options_.pin_dir,
         .cgroup_root = options_.cgroup_root,
         .file_guard_hold = std::max<std::chrono::milliseconds>(2 * options_.handshake_timeout, std::chrono::seconds(5))});
    if (!enforcer) {
        spdlog::error("{}", enforcer.message());
        return 1;
    }
    enforcer_ = std::move(*enforcer);
    if (auto r = enforcer_->restore_identities(policy_.identities()); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    // Only an operator's apply re-pins: a restart re-verifies against the pins on record.
    if (auto r = policy_.start(std::move(*parsed.policy), nullptr); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    if (auto r = enforcer_->attach(); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    // The gate lets only this process connect to mutual-TLS destinations (for enrolled
    // processes, after its own policy check). Task storage is per thread: the Asio loop,
    // which makes those connections, is this main thread.
    if (auto r = mark_self_as_agent(); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    // The guard: from here on only this process (and root running this binary again)
    // touches the pins, the maps and the state directory.
    auto guard = options_.unprotect ? enforcer_->unprotect() : enforcer_->protect({options_.state_dir, options_.ca_dir});
    if (!guard) {
        spdlog::error("{}", guard.message());
        return 1;
    }
    if (options_.unprotect) spdlog::warn("--unprotect: the guard is off: kwarden's pins, maps and keys are unguarded");
    spdlog::info("{} kernel programs under {} (kernel {})",
                 enforcer_->took_over() ? "took over the pinned" : "attached and pinned", options_.pin_dir,
                 kernel_release_);
    if (enforcer_->took_over() && enforcer_->pinned_abi() != KW_ABI_VERSION)
        spdlog::info("the pinned maps were ABI version {}: taken over as version {}", enforcer_->pinned_abi(),
                     KW_ABI_VERSION);
    if (!enforcer_->took_over()) {
        auto st = bpf::attest_running_processes(*enforcer_, policy_.view()->compiled, options_.cgroup_root);
        spdlog::info("attested {} of {} running processes from /proc (weaker than exec attestation)",
                     st.attested, st.scanned);
    }

    if (auto r = events_.open(options_.events_path); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    if (auto r = enforcer_->open_events([this](const void* d, size_t n) { on_event(d, n); }); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    events_fd_.assign(::dup(enforcer_->events_epoll_fd()));
    emit(runtime::protection_event(!options_.unprotect, options_.unprotect ? "kwarden agent --unprotect" : "agent start"));
    if (auto r = open_admin_socket(); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    if (auto r = start_enrollment(*cipher); !r) {
        spdlog::error("{}", r.message());
        return 1;
    }
    // Enforcement does not depend on it: an address in use is an error in the log and in
    // status, and the agent serves on without metrics.
    if (!options_.metrics_address.none()) {
        metrics_server_ = std::make_unique<MetricsServer>(io_, [this] { return render_metrics(); });
        if (auto r = metrics_server_->listen(options_.metrics_address); !r) {
            spdlog::error("{}; the agent runs on without metrics", r.message());
            metrics_error_ = r.message();
            metrics_server_.reset();
        } else {
            spdlog::info("metrics on http://{}/metrics", metrics_server_->address());
        }
    }
    dropped_reported_ = enforcer_->counters()[KW_CNT_EVENTS_DROPPED];

    on_signal();
    watch_events();
    admin_accept_.start();
    tick();
    release_freed_memory();
    spdlog::info("ready: admin socket {}", options_.admin_socket);
    // A handler that throws loses its own work (a request, a connection), never the agent:
    // the exception is logged and counted (status), and the loop runs on. Asio allows
    // run() to be called again after a handler's exception without a restart().
    for (;;) {
        try {
            io_.run();
            break;
        } catch (const std::exception& e) {
            ++loop_exceptions_;
            spdlog::error("event loop: a handler failed ({} so far), serving on: {}", loop_exceptions_, e.what());
        }
    }
    enforcer_->poll_events(0);  // what the kernel reported before we stopped
    ::unlink(options_.admin_socket.c_str());
    ::unlink(options_.enroll_socket.c_str());
    if (!options_.oci_socket.empty()) ::unlink(options_.oci_socket.c_str());
    return 0;
}

}  // namespace

size_t default_handshake_workers() {
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    return std::clamp<size_t>(cpus > 0 ? static_cast<size_t>(cpus) : 1, 1, kMaxHandshakeWorkers);
}

int run_agent(const AgentOptions& options) {
    Agent agent(options);
    return agent.run();
}

}  // namespace kw::io
