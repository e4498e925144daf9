// Seccomp user notifications, agent side (see notifier.h).
#include "enroll/notifier.h"

#include <sys/ioctl.h>
#include <sys/uio.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace kw::enroll {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

Result<std::optional<Call>> Notifier::receive() {
    seccomp_notif notif;
    std::memset(&notif, 0, sizeof(notif));  // the kernel refuses a non-zeroed buffer
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &notif) != 0) {
        if (errno == ENOENT || errno == EAGAIN || errno == EINTR) return std::optional<Call>();
        return make_error("SECCOMP_IOCTL_NOTIF_RECV: " + errno_text(errno));
    }
    Call call;
    call.id = notif.id;
    call.tid = static_cast<pid_t>(notif.pid);
    call.nr = notif.data.nr;
    for (int i = 0; i < 6; ++i) call.args[i] = notif.data.args[i];
    // Written before anything else is done about the call: an agent killed from here on
    // leaves it to the next one (journal.h).
    if (journal_ && !journal_->record(call))
        spdlog::warn("the journal of held calls is full ({} slots): call {} of thread {} would not survive an agent "
                     "restart",
                     Journal::kSlots, call.id, call.tid);
    outstanding_.insert(call.id);
    return std::optional<Call>(call);
}

size_t Notifier::held() const {
    for (auto it = outstanding_.begin(); it != outstanding_.end();)
        it = valid(*it) ? std::next(it) : outstanding_.erase(it);
    return outstanding_.size();
}

bool Notifier::valid(uint64_t id) const {
    uint64_t copy = id;
    return ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &copy) == 0;
}

Result<std::vector<uint8_t>> Notifier::read_memory(const Call& call, uint64_t addr, size_t len) const {
    std::vector<uint8_t> out(len);
    if (len == 0) return out;
    iovec local{out.data(), len};
    iovec remote{reinterpret_cast<void*>(addr), len};
    ssize_t n = ::process_vm_readv(call.tid, &local, 1, &remote, 1, 0);
    if (n < 0) return make_error("reading " + std::to_string(len) + " bytes of thread " + std::to_string(call.tid) +
                                 ": " + errno_text(errno));
    if (static_cast<size_t>(n) != len)
        return make_error("short read of thread " + std::to_string(call.tid) + "'s memory");
    if (!valid(call.id)) return make_error("the call of thread " + std::to_string(call.tid) + " is gone");
    return out;
}

Result<void> Notifier::write_memory(const Call& call, uint64_t addr, const void* bytes, size_t len) const {
    if (len == 0) return {};
    if (!valid(call.id)) return make_error("the call of thread " + std::to_string(call.tid) + " is gone");
    iovec local{const_cast<void*>(bytes), len};
    iovec remote{reinterpret_cast<void*>(addr), len};
    ssize_t n = ::process_vm_writev(call.tid, &local, 1, &remote, 1, 0);
    if (n < 0 || static_cast<size_t>(n) != len)
        return make_error("writing " + std::to_string(len) + " bytes to thread " + std::to_string(call.tid) + ": " +
                          (n < 0 ? errno_text(errno) : std::string("short write")));
    return {};
}

Result<void> Notifier::respond(uint64_t id, int64_t value, int error, uint32_t flags) const {
    seccomp_notif_resp resp;
    std::memset(&resp, 0, sizeof(resp));
    resp.id = id;
    resp.val = value;
    resp.error = error ? -error : 0;
    resp.flags = flags;
    // A call still held after a failed answer stays in the journal for the next agent.
    if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0 && errno != ENOENT)
        return make_error("SECCOMP_IOCTL_NOTIF_SEND: " + errno_text(errno));
    note_answered(id);
    return {};
}

Result<void> Notifier::allow(uint64_t id) const { return respond(id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE); }
Result<void> Notifier::fail(uint64_t id, int error) const { return respond(id, 0, error, 0); }
Result<void> Notifier::succeed(uint64_t id, int64_t value) const { return respond(id, value, 0, 0); }

Result<int> Notifier::send_fd(uint64_t id, int fd, unsigned int newfd_flags) const {
    seccomp_notif_addfd addfd;
    std::memset(&addfd, 0, sizeof(addfd));
    addfd.id = id;
    addfd.flags = SECCOMP_ADDFD_FLAG_SEND;
    addfd.srcfd = static_cast<uint32_t>(fd);
    addfd.newfd_flags = newfd_flags;
    int rc = ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &addfd);
    if (rc < 0) {
        int err = errno;
        if (err == ENOENT) note_answered(id);  // the caller is gone: nothing left to answer
        return make_error("SECCOMP_IOCTL_NOTIF_ADDFD: " + errno_text(err));
    }
    note_answered(id);
    return rc;
}

Result<bool> try_claim_listener(int fd) {
    for (;;) {
        uint64_t id = 0;
        // ENOENT is the answer for an id no call has: the registration went through (or
        // no guard runs, and then nothing is checked at exec either).
        if (::ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 || errno == ENOENT) return true;
        if (errno == EINTR) continue;
        if (errno == EBUSY) return false;
        return make_error("registering the seccomp listener with the kernel: " + errno_text(errno));
    }
}

Result<pid_t> tgid_of(pid_t tid) {
    std::ifstream in("/proc/" + std::to_string(tid) + "/status");
    if (!in) return make_error("thread " + std::to_string(tid) + " is gone");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
    }
    return make_error("no Tgid in /proc/" + std::to_string(tid) + "/status");
}

}  // namespace kw::enroll
