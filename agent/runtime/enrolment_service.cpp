// Enrolment, the listener holder, and the seccomp listeners of enrolled processes (see
// enrolment_service.h).
#include "runtime/enrolment_service.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/kcmp.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <ctime>
#include <string_view>

#include "core/json_field.h"
#include "core/unique_fd.h"
#include "enroll/fd_message.h"
#include "enroll/notifier.h"
#include "core/oci_state.h"
#include "core/wall_clock.h"
#include "runtime/enrolment.h"
#include "runtime/events.h"
#include "runtime/sessions.h"

namespace kw::runtime {
using json = nlohmann::json;
using core::now_rfc3339;

namespace {

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_getfd(int pidfd, int fd) { return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)); }

// Whether descriptors A and B of this process are the same open file (kcmp(2)).
bool same_open_file(int a, int b) {
    pid_t self = ::getpid();
    return ::syscall(SYS_kcmp, self, self, KCMP_FILE, a, b) == 0;
}

json container_json(const core::ContainerFacts& f) {
    auto or_null = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
    return {{"id", f.id},
            {"name", or_null(f.name)},
            {"image", or_null(f.image)},
            {"pod_namespace", or_null(f.pod_namespace)},
            {"pod_name", or_null(f.pod_name)},
            {"pod_uid", or_null(f.pod_uid)}};
}

// container_json's inverse, for what the holder kept; nullopt for anything else.
std::optional<core::ContainerFacts> container_from_json(const json& j) {
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return std::nullopt;
    core::ContainerFacts f;
    f.id = j["id"].get<std::string>();
    auto text = [&](const char* key, std::optional<std::string>& out) {
        if (j.contains(key) && j[key].is_string()) out = j[key].get<std::string>();
    };
    text("name", f.name);
    text("image", f.image);
    text("pod_namespace", f.pod_namespace);
    text("pod_name", f.pod_name);
    text("pod_uid", f.pod_uid);
    return f;
}

// What the holder keeps of a container, and what events show: bounded.
constexpr size_t kContainerFactsMax = 16 * 1024;

bool is_seccomp_listener(int fd) {
    char link[64] = {};
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(path.c_str(), link, sizeof(link) - 1);
    return n > 0 && std::string_view(link, static_cast<size_t>(n)) == "anon_inode:seccomp notify";
}

}  // namespace

// Why the descriptor FD that WHAT names cannot be served, or nothing. Its inode first,
// before anything else reads it (an ioctl on an arbitrary file could do anything).
std::optional<std::string> EnrollmentService::unservable_listener(int fd, const std::string& what) const {
    if (!is_seccomp_listener(fd)) return what + " is not a seccomp listener";
    if (!context_.listener_killable) return "the agent cannot read how the seccomp filter was installed";
    auto killable = context_.listener_killable(fd);
    if (!killable) return "cannot read how the seccomp filter was installed: " + killable.message();
    if (!*killable)
        return "the seccomp filter was installed without SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: a signal would "
               "interrupt a call the agent holds in the middle of its handshake (with crun, add \"flags\": "
               "[\"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV\"] to the seccomp profile; runc before 1.5 cannot set it)";
    return std::nullopt;
}

// One enrolled process tree (the filter is inherited by its children): its seccomp
// listener, through which the runtime answers the calls it holds (runtime/calls.h).
class EnrolledProcess final : public CallPort, public std::enable_shared_from_this<EnrolledProcess> {
public:
    EnrolledProcess(EnrollmentService& service, core::UniqueFd listener, std::optional<enroll::Journal> journal,
                    pid_t pid, uid_t uid, std::string command)
        : service_(service),
          notifier_(std::move(listener), std::move(journal)),
          watch_(service.loop().watch(notifier_.fd())),
          pid_(pid),
          uid_(uid),
          command_(std::move(command)) {}

    // Serves the calls the process makes from now on, after answering those a previous
    // agent had taken and not answered. Returns how many of those there were.
    size_t start();
    const enroll::Notifier& notifier() const { return notifier_; }
    pid_t pid() const { return pid_; }
    uid_t uid() const { return uid_; }
    const std::string& command() const { return command_; }
    // What its runtime said of its container (the seccomp-agent socket); nullopt otherwise.
    const std::optional<core::ContainerFacts>& container() const { return container_; }
    void set_container(core::ContainerFacts facts) { container_ = std::move(facts); }
    json container_record() const { return container_ ? container_json(*container_) : json(nullptr); }

    // CallPort, on the listener and the caller's pidfd.
    bool held(uint64_t id) override { return notifier_.valid(id); }
    Result<std::vector<uint8_t>> read_memory(const enroll::Call& call, uint64_t addr, size_t len) override {
        return notifier_.read_memory(call, addr, len);
    }
    Result<void> write_memory(const enroll::Call& call, uint64_t addr, const void* bytes, size_t len) override {
        return notifier_.write_memory(call, addr, bytes, len);
    }
    Result<void> allow(uint64_t id) override { return notifier_.allow(id); }
    Result<void> fail(uint64_t id, int error) override { return notifier_.fail(id, error); }
    Result<void> succeed(uint64_t id, int64_t value) override { return notifier_.succeed(id, value); }
    Result<int> send_fd(uint64_t id, int fd, unsigned int flags) override { return notifier_.send_fd(id, fd, flags); }
    void note_saved_flags(uint64_t id, int flags) override { notifier_.note_saved_flags(id, flags); }
    std::optional<Caller> caller(const enroll::Call& call) override {
        auto tgid = enroll::tgid_of(call.tid);
        if (!tgid) return std::nullopt;
        core::UniqueFd pidfd(pidfd_open(*tgid));
        if (!pidfd.valid() || !notifier_.valid(call.id)) return std::nullopt;
        return Caller{*tgid, std::move(pidfd)};
    }
    Result<core::UniqueFd> take_fd(const Caller& caller, int fd) override {
        core::UniqueFd copy(pidfd_getfd(caller.pidfd.get(), fd));
        if (!copy.valid()) return make_error(std::string("pidfd_getfd: ") + std::strerror(errno));
        return copy;
    }

private:
    void wait_next();
    void handle(const enroll::Call& call) { serve_call(service_.context(), shared_from_this(), pid_, call); }
    EnrollmentService& service_;
    enroll::Notifier notifier_;
    std::unique_ptr<Readiness> watch_;
    pid_t pid_;
    uid_t uid_;
    std::string command_;
    std::optional<core::ContainerFacts> container_;
};

// ---- EnrolledProcess ---------------------------------------------------------------

size_t EnrollmentService::held_calls() const {
    size_t n = 0;
    for (const auto& [raw, process] : processes_) n += process->notifier().held();
    return n;
}

size_t EnrolledProcess::start() {
    size_t resumed = 0;
    if (notifier_.journal()) {
        for (const auto& entry : notifier_.journal()->held()) {
            if (!notifier_.valid(entry.call.id)) {  // answered, or the caller is gone
                notifier_.note_answered(entry.call.id);
                continue;
            }
            ++resumed;
            notifier_.note_held(entry.call.id);
            resume_call(service_.context(), shared_from_this(), pid_, entry);
        }
    }
    wait_next();
    return resumed;
}

// A call the previous agent received and died before answering. Nothing was handed to
// the app yet: the app's socket flags are put back, and the call is served anew, except
// a connect whose socket the previous agent had already connected (a handshake cut in

void EnrolledProcess::wait_next() {
    auto self = shared_from_this();
    watch_->wait(Readiness::For::read, [self] {
        // No task uses the filter any more: the whole process tree is gone.
        pollfd p{self->notifier_.fd(), POLLIN, 0};
        const bool ready = ::poll(&p, 1, 0) == 1;
        spdlog::debug("enrolled process {}: listener {} woken, revents {:#x}", self->pid_, self->notifier_.fd(),
                      ready ? p.revents : 0);
        if (ready && (p.revents & POLLHUP) && !(p.revents & POLLIN)) {
            spdlog::info("enrolled process {} ({}) and its children have exited", self->pid_, self->command_);
            self->service_.forget(self.get());
            return;
        }
        // SECCOMP_IOCTL_NOTIF_RECV ignores O_NONBLOCK: with no notification pending it
        // sleeps until one comes, and the whole event loop with it (admin requests, every
        // other enrolled process). A wake-up that finds nothing to receive waits again.
        if (!ready || !(p.revents & POLLIN)) return self->wait_next();
        auto call = self->notifier_.receive();
        if (!call) {
            spdlog::error("enrolled process {}: {}", self->pid_, call.message());
            self->service_.forget(self.get());
            return;
        }
        if (*call) {
            spdlog::debug("enrolled process {}: call {} (syscall {}) of thread {}", self->pid_, (*call)->id, (*call)->nr,
                          (*call)->tid);
            self->handle(**call);
        }
        self->wait_next();
    });
}

// ---- EnrollmentService -------------------------------------------------------------

EnrollmentService::EnrollmentService(EnrollContext context)
    : context_(std::move(context)),
      limits_(std::make_shared<core::PeerLimits>(kPendingPerUid, core::kRefusalReportInterval)) {
    context_.tickets = &tickets_;
    context_.contexts = &contexts_;
}

EnrollmentService::~EnrollmentService() = default;

// A connection waiting for its hello (then for its listener's claim): the slot it takes
// of its uid's pending connections is held until it is answered or timed out.
struct EnrollmentService::Peer {
    core::UniqueFd socket;
    ucred cred{};
    std::shared_ptr<core::PeerLimits::Slot> slot;
    std::unique_ptr<Readiness> readable;
    std::unique_ptr<Timer> timer;
    // A container runtime (the seccomp-agent socket): it reads no answer; what refuses it
    // goes here instead, then the connection closes.
    std::function<void(const std::string& error)> refused;
    std::string text;  // its state, as it arrives
    std::vector<core::UniqueFd> fds;  // the descriptors that came with it
    std::shared_ptr<void> counted;    // its place among the pending runtime connections

    // One line, sent without waiting: it fits a fresh socket's buffer, so nothing waits on
    // a peer that does not read. The connection is done after it.
    void reply(const json& j) {
        if (refused) {
            if (!core::json_bool(j, "ok", false)) refused(core::json_string(j, "error", "refused"));
        } else {
            std::string line = core::json_text(j) + "\n";
            if (socket.valid()) (void)::send(socket.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        close();
    }
    void close() {
        readable.reset();
        timer.reset();
        socket.reset();
        slot.reset();
        fds.clear();
        counted.reset();
    }
};

void EnrollmentService::on_connection(core::UniqueFd socket) {
    auto peer = std::make_shared<Peer>();
    peer->socket = std::move(socket);
    socklen_t cl = sizeof(peer->cred);
    if (::getsockopt(peer->socket.get(), SOL_SOCKET, SO_PEERCRED, &peer->cred, &cl) != 0) return;
    peer->slot = limits_->admit(peer->cred.uid);
    if (!peer->slot) {
        peer->reply({{"ok", false},
                     {"error", "too many connections from uid " + std::to_string(peer->cred.uid) +
                                   " waiting to enrol (limit " + std::to_string(kPendingPerUid) + "): refused"}});
        return refused(peer->cred.uid, "peer_limit");
    }
    on_hello(peer);
}

void EnrollmentService::refused(uid_t uid, const std::string& reason) {
    auto r = limits_->refuse(uid, reason, core::PeerLimits::Clock::now());
    if (r.count == 0) return;
    spdlog::warn("enrolment socket: refused uid {}: {} (this uid's first in {} s; the rest are summed up)", uid,
                 reason == "idle" ? "no hello within " + std::to_string(kHelloTimeout.count()) + " s"
                                  : "more than " + std::to_string(kPendingPerUid) + " connections waiting",
                 core::kRefusalReportInterval.count());
    context_.emit(refused_event("enroll", r));
}

void EnrollmentService::report_refusals(core::PeerLimits::Clock::time_point now) {
    for (const auto& r : limits_->flush(now)) context_.emit(refused_event("enroll", r));
}

json EnrollmentService::socket_status() const {
    return {{"refused_peer_limit", limits_->refused("peer_limit")},
            {"idle_timeouts", limits_->refused("idle")},
            {"pending_per_uid_limit", kPendingPerUid}};
}

void EnrollmentService::forget(EnrolledProcess* process) {
    processes_.erase(process);
    if (auto it = container_of_.find(process); it != container_of_.end()) {
        if (context_.containers) context_.containers->released(it->second);
        container_of_.erase(it);
    }
}

Result<size_t> EnrollmentService::adopt() {
    if (context_.holder_socket.empty()) return size_t{0};
    auto attached = enroll::HolderClient::attach_or_spawn(context_.holder_socket, ::getpid());
    if (!attached) return attached.error();
    holder_.emplace(std::move(attached->client));
    watch_holder();
    size_t adopted = 0;
    for (auto& held : attached->held) {
        std::optional<enroll::Journal> journal;
        if (held.journal.valid()) {
            auto j = enroll::Journal::adopt(std::move(held.journal));
            if (j)
                journal.emplace(std::move(*j));
            else
                spdlog::warn("adopted process {}: its journal is unusable ({}): calls the previous agent held are lost",
                             held.pid, j.message());
        }
        json event = {{"type", "enroll"}, {"time", now_rfc3339()}, {"pid", held.pid},  {"uid", held.uid},
                      {"command", held.command}, {"adopted", true}};
        // Refused on adoption as on enrolment; the holder drops it too, so that the
        // process's trapped calls fail (ENOSYS) rather than wait for ever.
        auto refuse = [&](const std::string& why) {
            spdlog::error("not adopting process {} ({}) from the listener holder: {}", held.pid, held.command, why);
            if (auto r = holder_->drop(held.key); !r) spdlog::error("listener holder: {}", r.message());
            event["error"] = why;
            context_.emit(event);
        };
        // A listener a previous agent accepted under other rules.
        if (auto why = unservable_listener(held.listener.get(), "the held listener")) {
            refuse(*why);
            continue;
        }
        auto facts = container_from_json(held.container);
        if (!facts && !held.container.is_null()) {
            refuse("the holder's facts of its container are unreadable: it would be neither selected nor governed");
            continue;
        }
        auto process = std::make_shared<EnrolledProcess>(*this, std::move(held.listener), std::move(journal), held.pid,
                                                         held.uid, held.command);
        // A container's facts came back with its listener: its cgroup is found again (the
        // kernel's word, now), and its entries written before its held calls are served.
        if (facts) {
            process->set_container(*facts);
            std::optional<ContainerHost::Cgroup> cgroup;
            if (context_.containers) {
                auto located = context_.containers->locate(held.pid, *facts);
                if (!located) {
                    refuse(located.message());
                    continue;
                }
                cgroup = *located;
            }
            auto container = register_container(*process, cgroup);
            if (!container) {
                refuse(container.message());
                continue;
            }
            event["container"] = std::move(*container);
        }
        processes_[process.get()] = process;
        size_t resumed = process->start();
        ++adopted;
        spdlog::info("adopted enrolled process {} (uid {}, {}) from the listener holder, {} held call(s) resumed",
                     held.pid, held.uid, held.command, resumed);
        event["resumed_calls"] = resumed;
        context_.emit(event);
    }
    return adopted;
}

// The holder's end of our connection closes only when it died: a new one is started and
// given every listener again, before this agent could die too and take them along.
void EnrollmentService::watch_holder() {
    if (!holder_) return;
    if (!holder_watch_) holder_watch_ = loop().watch(holder_->fd());
    holder_watch_->wait(Readiness::For::read, [this] {
        if (!holder_) return;
        char byte;
        ssize_t n = ::recv(holder_->fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n != 0 && !(n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return watch_holder();
        spdlog::error("the listener holder went away: starting a new one and depositing {} listener(s) again",
                      processes_.size());
        if (auto r = reattach(); !r) spdlog::error("{}", r.message());
    });
}

Result<void> EnrollmentService::reattach() {
    holder_watch_.reset();
    holder_.reset();
    auto attached = enroll::HolderClient::attach_or_spawn(context_.holder_socket, ::getpid());
    if (!attached)
        return make_error("no listener holder (" + attached.message() +
                          "): enrolled processes would not survive an agent restart");
    holder_.emplace(std::move(attached->client));
    watch_holder();
    for (auto& [raw, process] : processes_) {
        const auto& n = process->notifier();
        // The same holder, met again (our connection failed, not the holder): what it
        // still keeps is not deposited twice.
        bool kept = std::any_of(attached->held.begin(), attached->held.end(), [&](const enroll::HeldListener& h) {
            return same_open_file(h.listener.get(), n.fd());
        });
        if (kept) continue;
        auto key = holder_->deposit(process->pid(), process->uid(), process->command(), n.fd(),
                                    n.journal() ? n.journal()->fd() : -1, process->container_record());
        if (!key) return make_error("depositing the listener of process " + std::to_string(process->pid()) + ": " +
                                    key.message());
    }
    return {};
}

Result<void> EnrollmentService::deposit(EnrolledProcess& process) {
    if (context_.holder_socket.empty()) return {};
    const auto& n = process.notifier();
    if (holder_) {
        auto key = holder_->deposit(process.pid(), process.uid(), process.command(), n.fd(),
                                    n.journal() ? n.journal()->fd() : -1, process.container_record());
        if (key) return {};
        spdlog::warn("listener holder: {}: attaching again", key.message());
    }
    // Re-attaching deposits every listener we serve, this one included.
    return reattach();
}

struct EnrollmentService::Hello {
    core::UniqueFd listener;
    core::UniqueFd pidfd;
    std::string command;
    pid_t pid = 0;  // the process under the listener's filter
    std::optional<core::ContainerFacts> container;
    std::optional<ContainerHost::Cgroup> cgroup;  // the container's, once located
};

void EnrollmentService::on_hello(const std::shared_ptr<Peer>& peer) {
    peer->timer = loop().timer();
    peer->timer->after(kHelloTimeout, [this, weak = std::weak_ptr<Peer>(peer)] {
        auto p = weak.lock();
        if (!p || !p->socket.valid()) return;
        refused(p->cred.uid, "idle");
        p->close();
    });
    peer->readable = loop().watch(peer->socket.get());
    when_readable(peer, [this, peer] {
        peer->timer.reset();
        auto msg = enroll::receive_message(peer->socket.get(), 4095, MSG_DONTWAIT);
        if (!msg) return peer->close();
        auto request = json::parse(msg->text, nullptr, false);
        auto checked = check_hello(request, peer->cred.pid, msg->fds.size());
        if (auto* error = std::get_if<std::string>(&checked)) return peer->reply({{"ok", false}, {"error", *error}});
        core::UniqueFd pidfd(pidfd_open(peer->cred.pid));
        if (!pidfd.valid()) return peer->reply({{"ok", false}, {"error", "the caller is gone"}});
        if (auto why = unservable_listener(msg->fds[0].get(), "the descriptor"))
            return peer->reply({{"ok", false}, {"error", *why}});
        auto hello = std::make_shared<Hello>(Hello{std::move(msg->fds[0]), std::move(pidfd),
                                                   std::get<runtime::Hello>(checked).command, peer->cred.pid, {}, {}});
        claim_then_enrol(peer, std::move(hello), std::chrono::steady_clock::now() + kClaimWait);
    });
}

// Before the reply lets the launcher exec: an exec under a listener the kernel does not
// know as the agent's alone gets no identity. The launcher closes its copy right after
// sending it; until that close lands the claim is retried on a timer, so that a slow
// launcher (or many at once) never stalls the loop.
void EnrollmentService::claim_then_enrol(std::shared_ptr<Peer> peer, std::shared_ptr<Hello> hello,
                                         std::chrono::steady_clock::time_point deadline) {
    if (!peer->socket.valid()) return;
    auto claimed = context_.claim_listener ? context_.claim_listener(hello->listener.get())
                                           : enroll::try_claim_listener(hello->listener.get());
    if (!claimed) return peer->reply({{"ok", false}, {"error", claimed.message()}});
    if (!*claimed) {
        if (std::chrono::steady_clock::now() >= deadline)
            return peer->reply({{"ok", false},
                                {"error", "another copy of the seccomp listener is still open (the enrolling "
                                          "process kept or passed one on): whoever holds it could answer the "
                                          "process's calls"}});
        // The retry holds the connection: nothing else does while it waits (the hello's
        // wait is over). close() drops the timer, and with it this hold.
        if (!peer->timer) peer->timer = loop().timer();
        peer->timer->after(kClaimRetry, [this, peer, hello, deadline] { claim_then_enrol(peer, hello, deadline); });
        return;
    }
    enrol(*peer, *hello);
}

void EnrollmentService::enrol(Peer& peer, Hello& hello) {
    const pid_t pid = hello.pid;
    const uid_t uid = peer.cred.uid;
    const std::string& command = hello.command;
    std::optional<enroll::Journal> journal;
    if (!context_.holder_socket.empty()) {
        auto j = enroll::Journal::create();
        if (!j) return peer.reply({{"ok", false}, {"error", "the agent cannot journal held calls: " + j.message()}});
        journal.emplace(std::move(*j));
    }
    auto process =
        std::make_shared<EnrolledProcess>(*this, std::move(hello.listener), std::move(journal), pid, uid, command);
    json event = {{"type", "enroll"}, {"time", now_rfc3339()}, {"pid", pid}, {"uid", uid}, {"command", command}};
    // A container's facts and kernel entries before its first held call is served: a call
    // trapped before they were known (the exec raced the runtime's hand-over) is decided
    // with them. A container whose entries cannot be written is refused: served, it would
    // be neither selected nor governed (its raw sockets).
    if (hello.container) {
        process->set_container(*hello.container);
        auto container = register_container(*process, hello.cgroup);
        if (!container) {
            spdlog::error("refusing to enrol process {} ({}): {}", pid, command, container.message());
            return peer.reply({{"ok", false}, {"error", container.message()}});
        }
        event["container"] = std::move(*container);
    }
    // Fail closed on availability too: a listener the holder does not keep would make
    // every trapped call of the process fail with ENOSYS after an agent restart.
    processes_[process.get()] = process;
    if (auto r = deposit(*process); !r) {
        forget(process.get());
        spdlog::error("refusing to enrol process {} ({}): {}", pid, command, r.message());
        return peer.reply(
            {{"ok", false}, {"error", "the agent cannot keep the listener across restarts: " + r.message()}});
    }
    KernelPort& kernel = context_.kernel ? *context_.kernel : no_kernel();
    if (auto r = kernel.mark_enrolled(hello.pidfd.get()); !r) spdlog::warn("enrolled process {}: {}", pid, r.message());
    process->start();
    spdlog::info("enrolled process {} (uid {}, {})", pid, uid, command);
    context_.emit(event);
    peer.reply({{"ok", true}});
}

Result<json> EnrollmentService::register_container(EnrolledProcess& process,
                                                   const std::optional<ContainerHost::Cgroup>& cgroup) {
    const core::ContainerFacts& facts = *process.container();
    json c = container_json(facts);
    if (!context_.containers) return c;  // no container is selected or governed (tests)
    if (!cgroup) return make_error("container " + facts.id + ": its cgroup is not known");
    c["cgroup"] = cgroup->path;
    auto view = context_.policy ? context_.policy() : nullptr;
    if (!view) return make_error("container " + facts.id + ": no policy in force");
    auto started = context_.containers->started(*cgroup, facts, view->policy, view->compiled);
    if (!started) return make_error("container " + facts.id + ": " + started.message());
    container_of_[&process] = cgroup->id;
    c["workloads"] = started->workloads;
    if (started->late.attested)
        c["attested_late"] = {{"processes", started->late.attested}, {"window_ms", started->late.window.count()}};
    return c;
}

// ---- the OCI runtime's seccomp-agent socket -------------------------------------------

Result<pid_t> served_process(const std::vector<kw_filter_task>& tasks, pid_t said) {
    if (tasks.empty()) return make_error("no process runs under the listener's filter (it has exited)");
    if (said != 0) {
        for (const auto& t : tasks)
            if (static_cast<pid_t>(t.tgid) == said) return said;
        return make_error("the runtime named process " + std::to_string(said) +
                          ", which does not run under the listener's filter");
    }
    const kw_filter_task* eldest = nullptr;
    for (const auto& t : tasks) {
        bool parent_under = std::any_of(tasks.begin(), tasks.end(), [&](const kw_filter_task& p) { return p.tgid == t.parent; });
        if (!parent_under && (!eldest || t.start_ns < eldest->start_ns)) eldest = &t;
    }
    if (!eldest) return make_error("the processes under the listener's filter have no eldest");
    return static_cast<pid_t>(eldest->tgid);
}

void EnrollmentService::on_runtime_connection(core::UniqueFd socket) {
    auto peer = std::make_shared<Peer>();
    peer->socket = std::move(socket);
    socklen_t cl = sizeof(peer->cred);
    if (::getsockopt(peer->socket.get(), SOL_SOCKET, SO_PEERCRED, &peer->cred, &cl) != 0) return;
    peer->refused = [this, weak = std::weak_ptr<Peer>(peer)](const std::string& error) {
        if (auto p = weak.lock()) refuse_runtime(*p, error);
    };
    // The socket is root's alone (mode 0600); a peer that is not root got in some other way.
    if (peer->cred.uid != 0)
        return peer->reply({{"ok", false},
                            {"error", "the seccomp-agent socket serves container runtimes running as root (peer uid " +
                                          std::to_string(peer->cred.uid) + ")"}});
    if (*pending_runtime_ >= kPendingRuntime)
        return peer->reply({{"ok", false},
                            {"error", "more than " + std::to_string(kPendingRuntime) +
                                          " container runtime connections waiting to send their state"}});
    ++*pending_runtime_;
    peer->counted = std::shared_ptr<void>(nullptr, [pending = pending_runtime_](void*) { --*pending; });
    peer->timer = loop().timer();
    peer->timer->after(kRuntimeStateWait, [this, weak = std::weak_ptr<Peer>(peer)] {
        if (auto p = weak.lock())
            p->reply({{"ok", false},
                      {"error", "no container process state within " + std::to_string(kRuntimeStateWait.count()) + " s"}});
    });
    peer->readable = loop().watch(peer->socket.get());
    read_runtime_state(peer);
}

// The state may come in several reads (the descriptors with the first): it is read until
// it is whole JSON, the runtime closes, or it grows past what any state is.
// Runs READ once PEER's socket has something to read (or is closed): a wake with nothing
// to read (readiness is a hint) waits again rather than reading EAGAIN as an end.
void EnrollmentService::when_readable(const std::shared_ptr<Peer>& peer, std::function<void()> read) {
    peer->readable->wait(Readiness::For::read, [this, peer, read = std::move(read)]() mutable {
        pollfd p{peer->socket.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) != 1) return when_readable(peer, std::move(read));
        read();
    });
}

void EnrollmentService::read_runtime_state(const std::shared_ptr<Peer>& peer) {
    when_readable(peer, [this, peer] {
        auto chunk = enroll::receive_message(peer->socket.get(), core::kOciStateMax, MSG_DONTWAIT);
        if (!chunk) {
            if (chunk.message() == "closed")
                return peer->reply({{"ok", false}, {"error", "the runtime closed before its state was whole"}});
            return peer->reply({{"ok", false}, {"error", "reading the container process state: " + chunk.message()}});
        }
        if (!chunk->fds.empty() && !peer->fds.empty())
            return peer->reply({{"ok", false}, {"error", "descriptors after the first part of the state"}});
        for (auto& fd : chunk->fds) peer->fds.push_back(std::move(fd));
        peer->text += chunk->text;
        if (peer->text.size() > core::kOciStateMax)
            return peer->reply({{"ok", false}, {"error", "container process state larger than " +
                                                             std::to_string(core::kOciStateMax >> 10) + " KiB"}});
        if (!json::accept(peer->text)) return read_runtime_state(peer);  // more to come
        auto state = core::parse_oci_process_state(peer->text, peer->fds.size());
        if (!state) return peer->reply({{"ok", false}, {"error", state.message()}});
        core::UniqueFd listener = std::move(peer->fds[state->seccomp_fd]);
        peer->fds.clear();
        if (auto why = unservable_listener(listener.get(), "the seccompFd descriptor"))
            return peer->reply({{"ok", false}, {"error", *why}});
        pid_t pid = state->pid;
        if (context_.listener_tasks) {
            auto tasks = context_.listener_tasks(listener.get());
            if (!tasks) return peer->reply({{"ok", false}, {"error", "the listener's processes: " + tasks.message()}});
            auto served = served_process(*tasks, state->pid);
            if (!served) return peer->reply({{"ok", false}, {"error", served.message()}});
            pid = *served;
        } else if (pid == 0) {
            return peer->reply({{"ok", false}, {"error", "the runtime did not say which process the listener serves"}});
        }
        core::UniqueFd pidfd(pidfd_open(pid));
        if (!pidfd.valid())
            return peer->reply({{"ok", false}, {"error", "the container process " + std::to_string(pid) + " is gone"}});
        auto facts = core::container_facts(*state);
        if (container_json(facts).dump().size() > kContainerFactsMax)
            return peer->reply({{"ok", false}, {"error", "the container's name, image and pod take more than " +
                                                             std::to_string(kContainerFactsMax >> 10) + " KiB"}});
        std::optional<ContainerHost::Cgroup> cgroup;
        if (context_.containers) {
            auto located = context_.containers->locate(pid, facts);
            if (!located) return peer->reply({{"ok", false}, {"error", located.message()}});
            cgroup = *located;
        }
        // A process the runtime started beside the container's init: an exec into it
        // (crun 1.8's exec names neither).
        const bool exec = state->pid == 0 || (state->init_pid != 0 && pid != state->init_pid);
        std::string command = "container " + facts.name.value_or(state->id) + (exec ? " (exec)" : "");
        auto hello = std::make_shared<Hello>(Hello{std::move(listener), std::move(pidfd), std::move(command),
                                                   pid, std::move(facts), std::move(cgroup)});
        peer->timer.reset();  // the claim's retries have their own deadline
        claim_then_enrol(peer, std::move(hello), std::chrono::steady_clock::now() + kClaimWait);
    });
}

void EnrollmentService::refuse_runtime(Peer& peer, const std::string& why) {
    ++refused_runtimes_;
    spdlog::error("seccomp-agent socket: refused a container process from runtime pid {}: {}", peer.cred.pid, why);
    context_.emit({{"type", "enroll"},
                   {"time", now_rfc3339()},
                   {"pid", peer.cred.pid},
                   {"uid", peer.cred.uid},
                   {"command", "?"},
                   {"error", why}});
}

}  // namespace kw::runtime
