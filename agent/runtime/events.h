// Turns ring buffer records (bpf/abi.h) into audit events: one JSON object per line,
// described by policy/events.schema.json. Names (SPIFFE IDs, destinations, rules, exe
// paths and hashes) come from the policy in force; what the kernel alone knows (pid,
// addresses, bytes) comes from the record.
#pragma once

#include <cstdint>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "core/compile.h"
#include "core/gate.h"
#include "core/peer_limits.h"
#include "core/policy.h"
#include "core/wall_clock.h"
#include "runtime/containers.h"
#include "runtime/policy_view.h"

namespace kw::runtime {

using core::now_rfc3339;

class EventFormatter {
public:
    explicit EventFormatter(std::string cgroup_root = "/sys/fs/cgroup");
    // The policy now in force. The views of the last kKeptViews revisions stay: a connect
    // record names the revision it was decided under, and is formatted with that one.
    void set_policy(std::shared_ptr<const PolicyView> view);
    // The enrolled containers: a process in one of their cgroups is named with it.
    void set_containers(const Containers* containers) { containers_ = containers; }
    // The enrolled container whose cgroup is CGROUP_ID (an event's "container"), if any.
    std::optional<nlohmann::json> container(uint64_t cgroup_id) const;
    static constexpr size_t kKeptViews = 8;
    // Executables no pin names are hashed for their events on the event path, so the work
    // is bounded: no file larger than kMaxHashedExe, at most kHashBytesPerSecond a second,
    // and the hashes of at most kHashCacheMax files kept. Beyond that an event's sha256 is
    // null (its path, device and inode still name the file). Unbounded, a large binary
    // (the agent's own debug build) or files made to be named in deny events stall every
    // handshake the agent is holding.
    static constexpr uint64_t kMaxHashedExe = 8ull << 20;
    static constexpr uint64_t kHashBytesPerSecond = 32ull << 20;
    static constexpr size_t kHashCacheMax = 4096;

    // nullopt for a record that is truncated or of an unknown type/version.
    std::optional<nlohmann::json> format(const void* data, size_t size);

    std::string wall_time(uint64_t ktime_ns) const;
    // The view of REVISION (kw_config.revision), if it is one of the kept ones.
    const PolicyView* view_of(uint64_t revision) const;
    // The clock the hashing budget is counted on (tests).
    void set_clock(std::function<std::chrono::steady_clock::time_point()> clock) { clock_ = std::move(clock); }

private:
    std::string spiffe_id(uint32_t ident) const;
    std::optional<std::string> cgroup_path(uint64_t id);
    struct ExeFacts {
        std::string path;
        std::optional<std::string> sha256;
    };
    ExeFacts exe_facts(const kw_proc_info& p);
    // The acting process's fields, shared by connect and guard events.
    nlohmann::json process_fields(const kw_proc_info& p);
    nlohmann::json format_guard(const kw_ev_hdr& hdr, const kw_ev_guard& e);

    std::shared_ptr<const PolicyView> view_;               // in force
    std::deque<std::shared_ptr<const PolicyView>> kept_;  // newest first, view_ included
    int64_t mono_to_real_ns_ = 0;
    // Hashes of unattested executables, by (dev, ino, ctime): computed once each.
    std::map<std::tuple<uint64_t, uint64_t, int64_t, uint32_t>, std::string> hash_cache_;
    std::function<std::chrono::steady_clock::time_point()> clock_ = [] { return std::chrono::steady_clock::now(); };
    std::chrono::steady_clock::time_point hash_second_{};
    uint64_t hashed_this_second_ = 0;
    std::string cgroup_root_;
    std::map<uint64_t, std::string> cgroup_paths_;
    const Containers* containers_ = nullptr;
};

std::string format_address(const uint8_t addr[16]);
// The declared destinations destination set DSET of VIEW's policy stands for (several when
// they overlap); none when VIEW has no such set.
std::vector<std::string> destination_names(const PolicyView& view, uint32_t dset);

// A "refused" event: connections to the agent's SOCKET ("admin", "enroll") refused,
// summed up per uid and reason (core/peer_limits.h).
nlohmann::json refused_event(const std::string& socket, const core::PeerLimits::Refusal& refusal);
// The guard went on or off, and who switched it.
nlohmann::json protection_event(bool on, const std::string& by);

}  // namespace kw::runtime
