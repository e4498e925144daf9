// The journal of held calls: which calls of one enrolled process the agent has taken
// off its seccomp listener and not yet answered.
//
// The kernel hands each notification out once (SECCOMP_IOCTL_NOTIF_RECV moves it from
// INIT to SENT) and never again, even to a new reader of the same listener. An agent that
// dies between receiving a call and answering it would leave that thread held until
// SIGKILL. So every received call is written to a shared memory page (a memfd that the
// listener holder keeps with the listener) and cleared when it is answered; the next
// agent reads what is left and answers it. Along with the call: the file status flags
// the agent found on the process's socket before it set O_NONBLOCK on their shared open
// file, so that the app's flags can be put back.
//
// The window that remains: an agent killed between NOTIF_RECV returning and the slot
// being written (a few instructions) leaves that one call held until the process is
// killed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/result.h"
#include "core/unique_fd.h"
#include "enroll/call.h"

namespace kw::enroll {

struct JournalEntry {
    Call call;
    int saved_flags = -1;  // the socket's flags before the agent changed them; -1 none
};

class Journal {
public:
    static constexpr uint32_t kSlots = 512;

    // A fresh journal (a sealed-size memfd), for a newly enrolled process.
    static Result<Journal> create();
    // The journal of an adopted listener, as the holder kept it. A memfd of another
    // layout (another kwarden version) is an error: the caller runs without replay.
    static Result<Journal> adopt(core::UniqueFd fd);

    Journal(Journal&& other) noexcept;
    Journal& operator=(Journal&& other) noexcept;
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;
    ~Journal();

    int fd() const { return fd_.get(); }

    // Records CALL as held. False when all slots are taken (the call is served, but
    // would not survive an agent restart).
    bool record(const Call& call);
    void set_saved_flags(uint64_t id, int flags);
    void clear(uint64_t id);
    // The calls recorded and not cleared, oldest slot first.
    std::vector<JournalEntry> held() const;
    size_t size() const;

private:
    struct Slot;
    struct Header;
    Journal(core::UniqueFd fd, void* map);
    Slot* slot(uint32_t i) const;
    Slot* find(uint64_t id) const;

    core::UniqueFd fd_;
    void* map_ = nullptr;
};

}  // namespace kw::enroll
