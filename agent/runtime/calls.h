// The calls one enrolled process holds, as the runtime answers them: check that a call
// is still held, read and write the caller's memory, answer it, and reach the caller's
// process and its descriptors. enrolment_service.cpp implements it on the process's
// seccomp listener (enroll/notifier.h) and pidfds; unit tests with a fake.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"
#include "enroll/call.h"

namespace kw::runtime {

// The process of a calling thread.
struct Caller {
    pid_t tgid = 0;
    core::UniqueFd pidfd;  // readable once the process has exited
};

class CallPort {
public:
    virtual ~CallPort() = default;
    // Whether call ID still waits for an answer (its thread is alive and held).
    virtual bool held(uint64_t id) = 0;
    // LEN bytes at ADDR in the caller's memory, read while the call is held.
    virtual Result<std::vector<uint8_t>> read_memory(const enroll::Call& call, uint64_t addr, size_t len) = 0;
    virtual Result<void> write_memory(const enroll::Call& call, uint64_t addr, const void* bytes, size_t len) = 0;
    // Answers: run the call as made; fail it with ERROR; return VALUE without running it;
    // install FD in the caller as the call's result (accept).
    virtual Result<void> allow(uint64_t id) = 0;
    virtual Result<void> fail(uint64_t id, int error) = 0;
    virtual Result<void> succeed(uint64_t id, int64_t value) = 0;
    virtual Result<int> send_fd(uint64_t id, int fd, unsigned int newfd_flags) = 0;
    // The socket flags found before the agent changed them, for a next agent should this
    // one die before it answers (enroll/journal.h); a no-op without a journal.
    virtual void note_saved_flags(uint64_t id, int flags) = 0;
    // The process of CALL's thread, race-free: its pidfd is taken, then the call is
    // checked to be still held (so the thread, hence its process, was alive). nullopt:
    // the caller is gone.
    virtual std::optional<Caller> caller(const enroll::Call& call) = 0;
    // A copy of the caller's descriptor FD (pidfd_getfd): the same open file.
    virtual Result<core::UniqueFd> take_fd(const Caller& caller, int fd) = 0;
};

}  // namespace kw::runtime
