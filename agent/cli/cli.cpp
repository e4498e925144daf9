// The `kwarden` commands. See `kwarden help`.
#include "cli/cli.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bpf/enforcer.h"
#include "cli/args.h"
#include "cli/identity_commands.h"
#include "core/duration.h"
#include "core/json_field.h"
#include "enroll/holder.h"
#include "enroll/launcher.h"
#include "tls/ktls.h"
#include "core/policy.h"
#include "core/compile.h"
#include "core/gate.h"
#include "host/linux_host_view.h"
#include "identity/trust_store.h"
#include "core/metrics.h"
#include "io/admin_protocol.h"
#include "io/agent.h"

namespace kw::cli {
namespace {

using nlohmann::json;

constexpr const char* kUsage =
    R"(kwarden: workload identity enforced by the kernel

usage:
  kwarden agent [--policy FILE] [--state-dir DIR] [--ca-dir DIR] [--events FILE|-]
                [--admin-socket PATH] [--enroll-socket PATH] [--holder-socket PATH]
                [--handshake-timeout D] [--handshake-workers N|auto] [--tls-cipher NAME] [--pin-dir DIR]
                [--log-level LEVEL] [--metrics-address IP:PORT|none] [--unprotect]
  kwarden stop [--admin-socket PATH]
  kwarden exec [--enroll-socket PATH] [--] CMD [ARGS...]
  kwarden holder [--socket PATH] [--exit-when-idle]
  kwarden holder status [--socket PATH]
  kwarden policy check FILE
  kwarden policy apply FILE [--admin-socket PATH]
  kwarden policy decide FILE --from SPIFFE_ID|unattested [--udp] ADDR:PORT...
  kwarden status [--json] [--admin-socket PATH]
  kwarden events [--follow] [--admin-socket PATH]
  kwarden identity PID [--admin-socket PATH]
  kwarden teardown [--pin-dir DIR]
  kwarden ca init --trust-domain TD --out DIR [--root-ttl D] [--intermediate-ttl D] [--force]
  kwarden ca sign-intermediate --root DIR --out DIR [--ttl D] [--force]
  kwarden svid list [--json] [--admin-socket PATH]
  kwarden svid mint --ca DIR --id SPIFFE_ID --out DIR [--ttl D] [--force]
  kwarden bundle show [--ca DIR | --trust-domain TD] [--admin-socket PATH]
  kwarden help

durations: 90s, 15m, 1h30m, 7d
)";

void print_problems(const char* kind, const std::vector<core::PolicyProblem>& problems) {
    for (const auto& p : problems) std::cerr << kind << ": " << p.to_string() << "\n";
}

int cmd_agent(const std::vector<std::string>& argv, const AgentExtension* extension) {
    std::string usage =
        "kwarden agent [--policy FILE] [--state-dir DIR] [--ca-dir DIR] [--events FILE|-] [--admin-socket PATH] "
        "[--enroll-socket PATH] [--oci-socket PATH] [--holder-socket PATH] [--handshake-timeout D] [--handshake-workers N|auto] [--tls-cipher NAME] [--pin-dir DIR] "
        "[--log-level LEVEL] [--metrics-address IP:PORT|none] [--unprotect]";
    std::vector<std::string> options = {"policy",        "state-dir",     "ca-dir",            "events",
                                        "admin-socket",  "enroll-socket", "oci-socket", "holder-socket",     "handshake-timeout", "handshake-workers",
                                        "tls-cipher",    "pin-dir",       "log-level", "metrics-address"};
    if (extension) {
        usage += extension->usage;
        options.insert(options.end(), extension->options.begin(), extension->options.end());
    }
    auto a = parse(argv, options, {"unprotect"}, usage);
    if (!a) return 2;
    if (!a->positional.empty()) return fail("agent takes no arguments, got '" + a->positional[0] + "'\nusage: " + usage, 2);
    io::AgentOptions o;
    if (a->has("policy")) o.policy_path = a->opt("policy", "");
    o.state_dir = a->opt("state-dir", o.state_dir);
    o.ca_dir = a->opt("ca-dir", o.state_dir + "/ca");
    o.events_path = a->opt("events", o.events_path);
    o.admin_socket = a->opt("admin-socket", o.admin_socket);
    o.pin_dir = a->opt("pin-dir", o.pin_dir);
    o.enroll_socket = a->opt("enroll-socket", o.enroll_socket);
    o.oci_socket = a->opt("oci-socket", o.oci_socket);
    o.holder_socket = a->opt("holder-socket", o.holder_socket);
    if (o.holder_socket.empty()) return fail("--holder-socket: empty path", 2);
    o.unprotect = a->flag("unprotect");
    o.tls_cipher = a->opt("tls-cipher", o.tls_cipher);
    if (auto c = tls::parse_cipher(o.tls_cipher); !c) return fail("--tls-cipher: " + c.message(), 2);
    if (a->has("metrics-address")) {
        auto m = core::metrics::parse_listen_address(a->opt("metrics-address", ""));
        if (!m) return fail("--metrics-address: " + m.message(), 2);
        o.metrics_address = *m;
    }
    if (a->has("handshake-timeout")) {
        auto d = core::parse_duration(a->opt("handshake-timeout", ""));
        if (!d) return fail("--handshake-timeout: " + d.message(), 2);
        o.handshake_timeout = *d;
    }
    if (a->has("handshake-workers")) {
        const std::string n = a->opt("handshake-workers", "");
        unsigned long v = 0;
        auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
        if (n == "auto")
            v = io::default_handshake_workers();
        else if (ec != std::errc() || end != n.data() + n.size() || v > io::kMaxHandshakeWorkers)
            return fail("--handshake-workers: '" + n + "' is not 'auto' (one per online CPU) or a number from 0 "
                            "(handshakes on the event loop) to " + std::to_string(io::kMaxHandshakeWorkers),
                        2);
        o.handshake_workers = v;
    }
    auto level = spdlog::level::from_str(a->opt("log-level", "info"));
    if (level == spdlog::level::off && a->opt("log-level", "info") != "off")
        return fail("unknown --log-level '" + a->opt("log-level", "") + "' (trace, debug, info, warn, error)", 2);
    spdlog::set_level(level);
    // Every line as it is logged: stdout is a file or the journal's pipe, where libc would
    // otherwise hold lines back until a buffer fills (or lose them to a SIGKILL).
    spdlog::flush_on(spdlog::level::trace);
    if (extension)
        if (auto r = extension->apply(*a, o); !r) return fail(r.message(), 2);
    return io::run_agent(o);
}

// ADDR:PORT, [IPV6]:PORT -> the gate's 128-bit address (IPv4 v4-mapped) and port.
std::optional<std::pair<core::Addr16, uint16_t>> parse_target(const std::string& text) {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string host = text.substr(0, colon);
    unsigned long port = 0;
    try {
        size_t used = 0;
        port = std::stoul(text.substr(colon + 1), &used);
        if (used != text.size() - colon - 1 || port == 0 || port > 65535) return std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
    core::Addr16 addr{};
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), addr.data()) != 1) return std::nullopt;
    } else {
        addr[10] = addr[11] = 0xff;
        if (inet_pton(AF_INET, host.c_str(), addr.data() + 12) != 1) return std::nullopt;
    }
    return std::pair{addr, static_cast<uint16_t>(port)};
}

// What the gate, and for mutual-TLS destinations the agent, would answer a process of
// identity --from (enrolled with `kwarden exec`) connecting to each target: one JSON line
// per target. Compiled as the agent compiles, so it is the agent's own answer.
int cmd_policy_decide(const std::vector<std::string>& argv) {
    const std::string usage = "kwarden policy decide FILE --from SPIFFE_ID|unattested [--udp] ADDR:PORT...";
    auto a = parse(argv, {"from"}, {"udp"}, usage);
    if (!a) return 2;
    if (a->positional.size() < 2 || !a->has("from")) return fail("usage: " + usage, 2);
    auto out = core::load_policy_file(a->positional[0]);
    print_problems("error", out.errors);
    if (!out.errors.empty()) return fail(a->positional[0] + ": invalid (" + std::to_string(out.errors.size()) + " error(s))");
    host::LinuxHostView host;
    core::IdentityTable ids;
    auto compiled = core::compile_policy(*out.policy, host, ids, {}, {});
    if (!compiled) return fail(a->positional[0] + ": " + compiled.message());
    print_problems("warning", compiled->warnings);
    const core::Policy& policy = *out.policy;
    core::GateTables gate(*compiled);
    std::string from = a->opt("from", "");
    uint32_t ident = core::kernel_identity(ids, from);
    bool udp = a->flag("udp");
    for (size_t i = 1; i < a->positional.size(); ++i) {
        auto target = parse_target(a->positional[i]);
        if (!target) return fail("'" + a->positional[i] + "' is not ADDR:PORT (IPv6 as [ADDR]:PORT)", 2);
        auto v = gate.decide(ident, udp ? KW_PROTO_UDP : KW_PROTO_TCP, target->first, target->second);
        json line = {{"target", a->positional[i]}, {"from", from}, {"destinations", json::array()}};
        for (uint32_t d : v.governing) line["destinations"].push_back(policy.destinations[d].name);
        bool allowed = v.allowed;
        std::string reason;
        if (!v.declared) {
            line["path"] = "undeclared";
        } else if (v.mtls) {
            // Only the agent connects there, and only for an enrolled process with an SVID.
            line["path"] = "agent";
            auto m = core::mtls_connect(policy, v, from);
            allowed = m.allowed && ident != KW_IDENT_NONE;
            reason = ident == KW_IDENT_NONE ? "unattested: no SVID for mutual TLS" : m.refusal;
            if (!m.server_identity.empty()) line["server_identity"] = m.server_identity;
        } else {
            line["path"] = "kernel";
            if (!allowed) reason = core::refusal(policy, v, from);
        }
        if (allowed && v.rule) line["rule"] = *v.rule;
        line["decision"] = allowed ? "allow" : "deny";
        if (!allowed) line["reason"] = reason;
        std::cout << core::json_text(line) << "\n";
    }
    return 0;
}

int cmd_policy(const std::vector<std::string>& argv) {
    if (argv.empty()) return fail("policy needs a subcommand: check or apply\n" + std::string(kUsage), 2);
    std::vector<std::string> rest(argv.begin() + 1, argv.end());
    if (argv[0] == "check") {
        auto a = parse(rest, {}, {}, "kwarden policy check FILE");
        if (!a) return 2;
        if (a->positional.size() != 1) return fail("usage: kwarden policy check FILE", 2);
        auto out = core::load_policy_file(a->positional[0]);
        print_problems("error", out.errors);
        print_problems("warning", out.warnings);
        if (!out.errors.empty()) {
            std::cerr << a->positional[0] << ": invalid (" << out.errors.size() << " error(s))\n";
            return 1;
        }
        // Federation bundle files are part of what the agent would load: check them too.
        if (auto fed = identity::load_federation(*out.policy); !fed) {
            std::cerr << "error: " << fed.message() << "\n" << a->positional[0] << ": invalid (1 error(s))\n";
            return 1;
        }
        std::cout << a->positional[0] << ": valid, revision " << out.policy->revision << "\n";
        return 0;
    }
    if (argv[0] == "apply") {
        auto a = parse(rest, {"admin-socket"}, {}, "kwarden policy apply FILE [--admin-socket PATH]");
        if (!a) return 2;
        if (a->positional.size() != 1) return fail("usage: kwarden policy apply FILE [--admin-socket PATH]", 2);
        FILE* f = fopen(a->positional[0].c_str(), "rb");
        if (!f) return fail("cannot read " + a->positional[0] + ": " + std::strerror(errno));
        std::string text;
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
        fclose(f);
        auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), {{"op", "policy.apply"}, {"policy", text}});
        if (!r) return fail(r.message());
        if (!(*r)["ok"].get<bool>()) {
            std::cerr << "kwarden: " << (*r)["error"].get<std::string>() << "\n";
            return 1;
        }
        for (const auto& w : (*r)["warnings"]) std::cerr << "warning: " << w.get<std::string>() << "\n";
        std::cout << "applied revision " << (*r)["revision"].get<std::string>() << "\n";
        return 0;
    }
    if (argv[0] == "decide") return cmd_policy_decide(rest);
    return fail("unknown policy subcommand '" + argv[0] + "' (check, apply, decide)", 2);
}

int cmd_status(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"admin-socket"}, {"json"}, "kwarden status [--json] [--admin-socket PATH]");
    if (!a) return 2;
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), {{"op", "status"}});
    if (!r) return fail(r.message());
    if (!(*r)["ok"].get<bool>()) return fail((*r)["error"].get<std::string>());
    const json& s = (*r)["status"];
    if (a->flag("json")) {
        std::cout << core::json_text(s, 2) << "\n";
        return 0;
    }
    std::cout << "kernel:     " << s.value("kernel", "?") << "\n"
              << "policy:     " << s.value("revision", "?") << " (" << s.value("policy_source", "?") << ")\n"
              << "mode:       " << s.value("mode", "?") << ", generation " << s.value("generation", 0) << "\n"
              << "workloads:  " << s.value("workloads", 0) << ", destinations " << s.value("destinations", 0)
              << ", rules " << s.value("rules", 0) << "\n"
              << "programs:\n";
    for (const auto& p : s["programs"])
        std::cout << "  " << p["name"].get<std::string>() << " (id " << p["id"] << ", " << p["attach"].get<std::string>() << ")\n";
    std::cout << "pinned binaries:\n";
    for (const auto& p : s["pinned_binaries"])
        std::cout << "  " << p["path"].get<std::string>() << " " << p["sha256"].get<std::string>() << " ("
                  << p["pinned_from"].get<std::string>() << ", " << (p["active"].get<bool>() ? "active" : "INACTIVE: " + p["problem"].get<std::string>())
                  << ")\n";
    std::cout << "counters:\n";
    for (const auto& [k, v] : s["counters"].items()) std::cout << "  " << k << " " << v << "\n";
    if (s.contains("sockets") && s["sockets"].is_object()) {
        std::cout << "refused on the agent's sockets:\n";
        for (const auto& [sock, c] : s["sockets"].items())
            for (const auto& [k, v] : c.items()) std::cout << "  " << sock << " " << k << " " << v << "\n";
        std::cout << "loop exceptions: " << s.value("loop_exceptions", 0) << "\n";
    }
    return 0;
}

int cmd_events(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"admin-socket"}, {"follow"}, "kwarden events [--follow] [--admin-socket PATH]");
    if (!a) return 2;
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket),
                               {{"op", "events"}, {"follow", a->flag("follow")}},
                               [](const std::string& line) { std::cout << line << std::endl; });
    if (!r) return fail(r.message());
    if (!(*r)["ok"].get<bool>()) return fail((*r)["error"].get<std::string>());
    return 0;
}

int cmd_identity(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"admin-socket"}, {}, "kwarden identity PID [--admin-socket PATH]");
    if (!a) return 2;
    if (a->positional.size() != 1) return fail("usage: kwarden identity PID", 2);
    char* end = nullptr;
    long pid = std::strtol(a->positional[0].c_str(), &end, 10);
    if (*end || pid <= 0) return fail("'" + a->positional[0] + "' is not a process id", 2);
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), {{"op", "identity"}, {"pid", pid}});
    if (!r) return fail(r.message());
    if (!(*r)["ok"].get<bool>()) return fail((*r)["error"].get<std::string>());
    std::cout << (*r)["spiffe_id"].get<std::string>() << "\n";
    return 0;
}

// Options end at "--" or at the first argument that is not one: the rest is the command.
int cmd_exec(const std::vector<std::string>& argv) {
    std::string socket = enroll::kDefaultEnrollSocket;
    size_t i = 0;
    for (; i < argv.size(); ++i) {
        if (argv[i] == "--") {
            ++i;
            break;
        }
        if (argv[i] == "--enroll-socket" && i + 1 < argv.size()) {
            socket = argv[++i];
        } else if (argv[i].rfind("--enroll-socket=", 0) == 0) {
            socket = argv[i].substr(16);
        } else if (argv[i].rfind("--", 0) == 0) {
            return fail("unknown option " + argv[i] + "\nusage: kwarden exec [--enroll-socket PATH] [--] CMD [ARGS...]", 2);
        } else {
            break;
        }
    }
    return enroll::exec_enrolled(socket, std::vector<std::string>(argv.begin() + static_cast<long>(i), argv.end()));
}

// `kwarden holder`: the listener holder (enroll/holder.h). The agent starts one itself
// when none runs; under systemd it is a unit of its own, so that restarting the agent's
// unit does not take the listeners along.
int cmd_holder(const std::vector<std::string>& argv) {
    const char* usage = "kwarden holder [--socket PATH] [--exit-when-idle] | kwarden holder status [--socket PATH]";
    bool status = !argv.empty() && argv[0] == "status";
    std::vector<std::string> rest(argv.begin() + (status ? 1 : 0), argv.end());
    auto a = parse(rest, {"socket"}, status ? std::vector<std::string>{} : std::vector<std::string>{"exit-when-idle"},
                   usage);
    if (!a) return 2;
    if (!a->positional.empty()) return fail("holder: unexpected argument '" + a->positional[0] + "'\nusage: " + usage, 2);
    std::string socket = a->opt("socket", enroll::kDefaultHolderSocket);
    if (status) {
        auto r = enroll::HolderClient::status(socket);
        if (!r) return fail(r.message());
        std::cout << r->dump(2) << "\n";
        return 0;
    }
    enroll::HolderOptions o;
    o.socket_path = socket;
    o.exit_when_idle = a->flag("exit-when-idle");
    return enroll::run_holder(o);
}

// The operator's way to stop kwarden for an upgrade or removal: the agent turns the guard
// off (an event), answers, and exits; the pinned programs keep enforcing, unguarded.
int cmd_stop(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"admin-socket"}, {}, "kwarden stop [--admin-socket PATH]");
    if (!a) return 2;
    if (!a->positional.empty()) return fail("stop takes no arguments, got '" + a->positional[0] + "'", 2);
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), {{"op", "stop"}});
    if (!r) return fail(r.message());
    if (!core::json_bool(*r, "ok", false)) return fail(core::json_string(*r, "error", "the agent refused"));
    std::cout << "the agent turned its guard off and is stopping: the pinned programs keep enforcing; "
                 "'kwarden teardown' removes them\n";
    return 0;
}

int cmd_teardown(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"pin-dir"}, {}, "kwarden teardown [--pin-dir DIR]");
    if (!a) return 2;
    auto r = bpf::Enforcer::teardown(a->opt("pin-dir", bpf::kDefaultPinDir));
    if (!r) return fail(r.message());
    std::cout << "removed " << a->opt("pin-dir", bpf::kDefaultPinDir)
              << ": enforcement stops when no agent holds the programs\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv, const AgentExtension* extension) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("kwarden"));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    if (argc < 2) {
        std::cerr << kUsage;
        return 2;
    }
    std::string cmd = argv[1];
    std::vector<std::string> rest(argv + 2, argv + argc);
    try {
        if (cmd == "agent") return cmd_agent(rest, extension);
        if (cmd == "policy") return cmd_policy(rest);
        if (cmd == "status") return cmd_status(rest);
        if (cmd == "events") return cmd_events(rest);
        if (cmd == "identity") return cmd_identity(rest);
        if (cmd == "teardown") return cmd_teardown(rest);
        if (cmd == "stop") return cmd_stop(rest);
        if (cmd == "ca") return cmd_ca(rest);
        if (cmd == "exec") return cmd_exec(rest);
        if (cmd == "holder") return cmd_holder(rest);
        if (cmd == "svid") return cmd_svid(rest);
        if (cmd == "bundle") return cmd_bundle(rest);
        if (cmd == "help" || cmd == "--help" || cmd == "-h") {
            std::cout << kUsage;
            return 0;
        }
    } catch (const std::exception& e) {
        return fail(std::string("unexpected error: ") + e.what());
    }
    std::cerr << "kwarden: unknown command '" << cmd << "'\n" << kUsage;
    return 2;
}

}  // namespace kw::cli
