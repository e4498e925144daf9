// The policy in force, and every change to it: parsed and compiled against this host off
// the loop, then the SVIDs staged, the identities and the tables published to the kernel,
// and only then made the policy in force. Changes run one at a time, in the order asked
// (admin apply, SIGHUP, a cgroup re-created). A change that fails anywhere changes
// nothing: the kernel, the identities and the SVIDs stay those of the last good policy.
#pragma once

#include <chrono>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/compile.h"
#include "core/policy.h"
#include "identity/node_identity.h"
#include "runtime/containers.h"
#include "runtime/policy_view.h"

namespace kw::runtime {

// The kernel's side of a policy: the identity table and the compiled tables.
class PolicyKernel {
public:
    virtual ~PolicyKernel() = default;
    virtual Result<void> store_identities(const core::IdentityTable& ids) = 0;
    virtual Result<void> publish(const core::CompiledPolicy& compiled) = 0;
    virtual uint32_t active_generation() const = 0;
};

struct PolicyPorts {
    PolicyKernel* kernel = nullptr;
    identity::NodeIdentity* identity = nullptr;
    // The host the policy is compiled against (files to pin, cgroups), made where the
    // compilation runs.
    std::function<std::unique_ptr<core::HostView>()> host;
    // Runs a job off the loop (the compiler thread), and a job back on the loop.
    std::function<void(std::function<void()>)> off_loop;
    std::function<void(std::function<void()>)> on_loop;
    // Where the pins of earlier loads are kept (path -> sha256); "" none.
    std::string pins_file;
    // Called on the loop once a policy is in force (events, rotation, status...).
    std::function<void(const std::shared_ptr<const PolicyView>&)> installed;
    // The containers enrolled so far: their kw_ctrs entries go with every publish. Optional.
    Containers* containers = nullptr;
    // Called once a new policy's SVIDs are committed.
    std::function<void()> svids_issued;
};

class PolicyService {
public:
    struct Applied {
        std::string revision;
        std::vector<core::PolicyProblem> warnings;
    };
    // The outcome, and the parser's problems when it refused the policy.
    using Done = std::function<void(Result<Applied>, const std::vector<core::PolicyProblem>&)>;

    explicit PolicyService(PolicyPorts ports);

    // Start-up, on the loop: the pins of earlier loads, the identities a previous agent
    // left in the kernel, then the first policy, synchronously.
    void load_pins();
    core::IdentityTable& identities() { return ids_; }
    Result<void> start(core::Policy policy, std::vector<core::PolicyProblem>* warnings);

    // A new policy, as text: parsed and compiled off the loop, every SVID re-issued.
    void apply(std::string text, Done done);
    // The policy in force compiled again (a selected cgroup came back with a new id):
    // pins kept, SVIDs kept.
    void recompile(Done done);
    // A cgroup a workload selects was created, removed or re-created (systemd restarts a
    // unit: a new id) since the policy in force was compiled: recompiles it, once no other
    // change is under way (a change under way resolves them anew). Whether it did.
    bool recheck_cgroups(Done done);
    // Whether a change is queued or running.
    bool changing() const { return !changes_.empty(); }

    std::shared_ptr<const PolicyView> view() const { return view_; }
    const core::IdentityTable& ids() const { return ids_; }
    // When the policy in force was put in force, and what its change took from the start
    // of its compilation (parse, compile, SVIDs, kernel tables).
    std::chrono::system_clock::time_point loaded_at() const { return loaded_at_; }
    std::chrono::steady_clock::duration last_load() const { return last_load_; }

private:
    struct Change {
        std::string text;                    // the policy to parse, or
        std::optional<core::Policy> policy;  // the policy to compile again
        bool repin = true;
        bool new_policy = true;
        Done done;
        // The compiler's: the tables it starts from (the loop's, when it starts), its result.
        core::IdentityTable ids;
        core::PreviousPins pins;
        std::vector<core::PolicyProblem> problems, warnings;
        std::optional<Result<core::CompiledPolicy>> compiled;
    };
    void enqueue(std::shared_ptr<Change> change);
    void compile_next();
    void finish(Change& change);
    Result<core::CompiledPolicy> compile(const core::Policy& policy, core::IdentityTable& ids,
                                         const core::PreviousPins& pins, bool repin) const;
    Result<void> install(core::Policy policy, core::CompiledPolicy compiled, const core::IdentityTable& ids,
                         bool new_policy, std::vector<core::PolicyProblem>* warnings);
    void save_pins(const core::CompiledPolicy& compiled);

    PolicyPorts ports_;
    std::shared_ptr<const PolicyView> view_;
    core::IdentityTable ids_;
    core::PreviousPins pins_;
    std::deque<std::shared_ptr<Change>> changes_;  // the first one is being compiled
    std::chrono::steady_clock::time_point load_started_{};
    std::chrono::system_clock::time_point loaded_at_{};
    std::chrono::steady_clock::duration last_load_{};
};

}  // namespace kw::runtime
