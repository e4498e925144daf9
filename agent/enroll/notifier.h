// The agent's side of one enrolled process's seccomp listener: receive a held call,
// read its arguments from the process's memory, and answer it (continue, fail with an
// errno, succeed with a value). notif.pid is a thread id; every read of
// the target's memory is followed by SECCOMP_IOCTL_NOTIF_ID_VALID before it is trusted,
// since the thread may have died and its id been reused.
#pragma once

#include <linux/seccomp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"
#include "enroll/call.h"
#include "enroll/journal.h"

namespace kw::enroll {

class Notifier {
public:
    // JOURNAL, when given, records every call received and not yet answered (journal.h).
    explicit Notifier(core::UniqueFd listener, std::optional<Journal> journal = std::nullopt)
        : listener_(std::move(listener)), journal_(std::move(journal)) {}

    int fd() const { return listener_.get(); }
    const std::optional<Journal>& journal() const { return journal_; }
    // The socket flags the agent found before it changed them, for the next agent.
    void note_saved_flags(uint64_t id, int flags) const {
        if (journal_) journal_->set_saved_flags(id, flags);
    }
    // Call ID needs no answer any more (answered, or its caller is gone).
    void note_answered(uint64_t id) const {
        outstanding_.erase(id);
        if (journal_) journal_->clear(id);
    }
    // A call a previous agent received (journal adoption), held from now on by this one.
    void note_held(uint64_t id) const { outstanding_.insert(id); }
    // How many calls wait for an answer now: received (or adopted), not answered, their
    // caller alive (one ioctl each; a caller that died unanswered is forgotten here).
    size_t held() const;

    // The next held call, or nullopt when the caller died before we took it (ENOENT) or
    // nothing is pending (EAGAIN with a non-blocking listener).
    Result<std::optional<Call>> receive();

    // Whether the call is still held: the thread is alive and still waits for us.
    bool valid(uint64_t id) const;

    // Copies LEN bytes at ADDR in thread TID's memory, then checks that call ID is still
    // held (so the bytes came from that thread, not from a process that reused its id).
    Result<std::vector<uint8_t>> read_memory(const Call& call, uint64_t addr, size_t len) const;
    // Writes BYTES at ADDR in the calling thread's memory (accept's peer address), if the
    // call is still held.
    Result<void> write_memory(const Call& call, uint64_t addr, const void* bytes, size_t len) const;

    // Answers: run the call as the process made it; fail it with ERRNO; or return VALUE
    // without running it. ENOENT (the caller is gone) is not an error.
    Result<void> allow(uint64_t id) const;
    Result<void> fail(uint64_t id, int error) const;
    Result<void> succeed(uint64_t id, int64_t value) const;
    // Installs FD in the caller and returns it as the call's result, atomically
    // (SECCOMP_ADDFD_FLAG_SEND): for accept().
    Result<int> send_fd(uint64_t id, int fd, unsigned int newfd_flags) const;

private:
    Result<void> respond(uint64_t id, int64_t value, int error, uint32_t flags) const;
    core::UniqueFd listener_;
    mutable std::optional<Journal> journal_;  // shared memory, not this object's state
    mutable std::set<uint64_t> outstanding_;
};

// Registers the seccomp listener FD with the kernel as the agent's (the guard's
// file_ioctl program records it): true once done, false while another copy of it is
// still open anywhere (EBUSY: the enrolling process has not closed its copy yet, or kept
// one), an error otherwise. One ioctl: the caller retries on its own schedule.
Result<bool> try_claim_listener(int fd);

// The thread group (process) of thread TID, from /proc/TID/status.
Result<pid_t> tgid_of(pid_t tid);

}  // namespace kw::enroll
