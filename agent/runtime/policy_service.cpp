// The policy in force and its changes (see policy_service.h).
#include "runtime/policy_service.h"

#include <sys/stat.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/admin_request.h"
#include "core/json_field.h"

namespace kw::runtime {
using json = nlohmann::json;

PolicyService::PolicyService(PolicyPorts ports) : ports_(std::move(ports)) {}

void PolicyService::load_pins() {
    pins_.clear();
    if (ports_.pins_file.empty()) return;
    std::ifstream in(ports_.pins_file);
    if (!in) return;
    try {
        json j = json::parse(in);
        for (auto& [path, hash] : j.items()) pins_[path] = hash.get<std::string>();
    } catch (const std::exception& e) {
        pins_.clear();
        spdlog::warn("ignoring unreadable pin file {}: {}", ports_.pins_file, e.what());
    }
}

void PolicyService::save_pins(const core::CompiledPolicy& compiled) {
    for (const auto& p : compiled.pins) pins_[p.path] = p.pinned_sha256;
    if (ports_.pins_file.empty()) return;
    std::string tmp = ports_.pins_file + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << core::json_text(json(pins_), 2) << "\n";
    }
    ::chmod(tmp.c_str(), 0600);
    if (std::rename(tmp.c_str(), ports_.pins_file.c_str()) != 0)
        spdlog::warn("cannot save pins to {}: {}", ports_.pins_file, std::strerror(errno));
}

Result<core::CompiledPolicy> PolicyService::compile(const core::Policy& policy, core::IdentityTable& ids,
                                                    const core::PreviousPins& pins, bool repin) const {
    auto host = ports_.host();
    return core::compile_policy(policy, *host, ids, pins, core::CompileOptions{.repin = repin});
}

Result<void> PolicyService::start(core::Policy policy, std::vector<core::PolicyProblem>* warnings) {
    core::IdentityTable ids = ids_;  // committed only if the kernel takes the policy
    load_started_ = std::chrono::steady_clock::now();
    auto compiled = compile(policy, ids, pins_, /*repin=*/false);
    if (!compiled) return compiled.error();
    return install(std::move(policy), std::move(*compiled), ids, /*new_policy=*/true, warnings);
}

Result<void> PolicyService::install(core::Policy policy, core::CompiledPolicy compiled, const core::IdentityTable& ids,
                                    bool new_policy, std::vector<core::PolicyProblem>* warnings) {
    // Identity first: a policy whose SVIDs cannot be issued (CA of another trust domain,
    // unreadable federation bundle) changes nothing in the kernel.
    std::optional<identity::NodeIdentity::Staged> staged;
    if (new_policy) {
        auto s = ports_.identity->prepare(policy);
        if (!s) return s.error();
        staged = std::move(*s);
    }
    if (auto r = ports_.kernel->store_identities(ids); !r) return r;
    if (ports_.containers) compiled.containers = ports_.containers->entries(policy);
    if (auto r = ports_.kernel->publish(compiled); !r) return r;
    if (ports_.containers) ports_.containers->published(policy);
    ids_ = ids;
    if (staged) {
        ports_.identity->commit(std::move(*staged));
        spdlog::info("issued {} X.509-SVIDs for trust domain {} (CA: {})", ports_.identity->svids().all().size(),
                     policy.trust_domain, ports_.identity->svids().authority()->source());
        if (ports_.svids_issued) ports_.svids_issued();
    }
    save_pins(compiled);
    for (const auto& w : compiled.warnings) spdlog::warn("policy: {}", w.to_string());
    if (warnings) warnings->insert(warnings->end(), compiled.warnings.begin(), compiled.warnings.end());
    auto view = std::make_shared<PolicyView>();
    view->policy = std::move(policy);
    view->compiled = std::move(compiled);
    view->ids = ids_;
    view->gate = core::GateTables(view->compiled);
    view_ = view;
    spdlog::info("enforcing policy revision {} ({} workloads, {} destinations, mode {}) in generation {}",
                 view_->policy.revision.substr(0, 16), view_->policy.workloads.size(),
                 view_->policy.destinations.size(), view_->policy.mode == core::Mode::Audit ? "audit" : "enforce",
                 ports_.kernel->active_generation());
    loaded_at_ = std::chrono::system_clock::now();
    last_load_ = std::chrono::steady_clock::now() - load_started_;
    if (ports_.installed) ports_.installed(view_);
    return {};
}

void PolicyService::apply(std::string text, Done done) {
    auto change = std::make_shared<Change>();
    change->text = std::move(text);
    change->done = std::move(done);
    enqueue(std::move(change));
}

void PolicyService::recompile(Done done) {
    if (!view_) return done(make_error("no policy in force"), {});
    auto change = std::make_shared<Change>();
    change->policy = view_->policy;
    change->repin = change->new_policy = false;
    change->done = std::move(done);
    enqueue(std::move(change));
}

bool PolicyService::recheck_cgroups(Done done) {
    if (!view_ || changing()) return false;
    auto host = ports_.host();
    bool changed = false;
    for (size_t i = 0; i < view_->policy.workloads.size() && !changed; i++) {
        const auto& sel = view_->policy.workloads[i].selectors;
        if (!sel.cgroup) continue;
        auto now = host->resolve_cgroup(*sel.cgroup);
        const auto& was = view_->compiled.cgroups[i];
        changed = now.has_value() != was.has_value() || (now && now->id != was->id);
    }
    if (!changed) return false;
    spdlog::info("a policy cgroup was created or re-created: recompiling");
    recompile(std::move(done));
    return true;
}

void PolicyService::enqueue(std::shared_ptr<Change> change) {
    changes_.push_back(std::move(change));
    if (changes_.size() == 1) compile_next();
}

void PolicyService::compile_next() {
    if (changes_.empty()) return;
    std::shared_ptr<Change> change = changes_.front();
    change->ids = ids_;
    change->pins = pins_;
    load_started_ = std::chrono::steady_clock::now();
    ports_.off_loop([this, change] {
        Change& c = *change;
        try {
            if (!c.policy) {
                auto parsed = core::parse_policy(c.text);
                c.problems = std::move(parsed.errors);
                c.warnings = std::move(parsed.warnings);
                c.policy = std::move(parsed.policy);
            }
            if (c.policy && c.problems.empty()) c.compiled = compile(*c.policy, c.ids, c.pins, c.repin);
        } catch (const std::exception& e) {
            c.compiled = make_error(std::string("cannot compile the policy: ") + e.what());
        }
        ports_.on_loop([this, change] {
            changes_.pop_front();
            finish(*change);
            compile_next();
        });
    });
}

void PolicyService::finish(Change& c) {
    if (!c.compiled) {  // the parser refused it
        return c.done(make_error(core::policy_rejected(c.problems)), c.problems);
    }
    Applied out{c.policy ? c.policy->revision : "", std::move(c.warnings)};
    Result<void> r = c.compiled->ok()
                         ? install(std::move(*c.policy), std::move(**c.compiled), c.ids, c.new_policy, &out.warnings)
                         : Result<void>(c.compiled->error());
    if (!r) return c.done(make_error(core::policy_not_applied(r.message())), {});
    c.done(std::move(out), {});
}

}  // namespace kw::runtime
