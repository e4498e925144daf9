// Bounds for a socket any local user may connect to (the enrolment socket, mode 0666; the
// admin socket, which answers root only): how many connections each peer uid has open at
// once, and a summary of what was refused. One user holding thousands of connections
// would otherwise use up the agent's descriptors, and with them the service of everyone.
// Pure bookkeeping: the caller accepts, reads SO_PEERCRED, and closes what is refused.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kw::core {

// How often refusals of one kind from one uid are reported, after the first.
inline constexpr std::chrono::seconds kRefusalReportInterval{10};

class PeerLimits : public std::enable_shared_from_this<PeerLimits> {
public:
    using Clock = std::chrono::steady_clock;

    // A refusal of one kind from one uid, reported once per interval with how many there
    // were: a flood of refusals is a few events, not one each.
    struct Refusal {
        uid_t uid;
        std::string reason;
        uint64_t count;
    };

    // Releases its uid's place when the connection it was taken for ends (the last copy
    // of the shared_ptr, held by that connection's handlers, goes).
    class Slot {
    public:
        Slot(std::shared_ptr<PeerLimits> limits, uid_t uid) : limits_(std::move(limits)), uid_(uid) {}
        ~Slot() { limits_->release(uid_); }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;

    private:
        std::shared_ptr<PeerLimits> limits_;
        uid_t uid_;
    };

    PeerLimits(size_t per_uid, std::chrono::milliseconds report_interval)
        : per_uid_(per_uid), interval_(report_interval) {}

    size_t per_uid() const { return per_uid_; }

    // A place for one more connection of UID, or null when UID already has per_uid open.
    std::shared_ptr<Slot> admit(uid_t uid) {
        size_t& n = open_[uid];
        if (n >= per_uid_) return nullptr;
        ++n;
        return std::make_shared<Slot>(shared_from_this(), uid);
    }

    size_t open(uid_t uid) const {
        auto it = open_.find(uid);
        return it == open_.end() ? 0 : it->second;
    }

    // Counts a refusal of UID for REASON. Returns the refusal to report now (the first of
    // its kind and uid in an interval), or count 0: it is kept for flush().
    Refusal refuse(uid_t uid, const std::string& reason, Clock::time_point now) {
        ++refused_[reason];
        Pending& p = pending_[{uid, reason}];
        ++p.unreported;
        if (p.reported && now - p.last < interval_) return {uid, reason, 0};
        Refusal r{uid, reason, p.unreported};
        p = Pending{0, now, true};
        return r;
    }

    // The refusals kept back whose interval is over, and forgets uids quiet for longer.
    std::vector<Refusal> flush(Clock::time_point now) {
        std::vector<Refusal> out;
        for (auto it = pending_.begin(); it != pending_.end();) {
            Pending& p = it->second;
            if (now - p.last < interval_) {
                ++it;
            } else if (p.unreported > 0) {
                out.push_back({it->first.first, it->first.second, p.unreported});
                p = Pending{0, now, true};
                ++it;
            } else {
                it = pending_.erase(it);
            }
        }
        return out;
    }

    // Refusals since start, by reason.
    const std::map<std::string, uint64_t>& refused() const { return refused_; }
    uint64_t refused(const std::string& reason) const {
        auto it = refused_.find(reason);
        return it == refused_.end() ? 0 : it->second;
    }

private:
    struct Pending {
        uint64_t unreported = 0;
        Clock::time_point last{};
        bool reported = false;
    };

    void release(uid_t uid) {
        auto it = open_.find(uid);
        if (it == open_.end()) return;
        if (--it->second == 0) open_.erase(it);
    }

    size_t per_uid_;
    std::chrono::milliseconds interval_;
    std::map<uid_t, size_t> open_;
    std::map<std::pair<uid_t, std::string>, Pending> pending_;
    std::map<std::string, uint64_t> refused_;
};

}  // namespace kw::core
