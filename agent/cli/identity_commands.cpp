// CA, SVID and bundle commands (see identity_commands.h).
#include "cli/identity_commands.h"

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "core/duration.h"
#include "core/json_field.h"
#include "core/policy.h"
#include "identity/authority.h"
#include "identity/bundle.h"
#include "io/admin_protocol.h"

namespace kw::cli {
namespace {

using nlohmann::json;

constexpr const char* kCaInitUsage =
    "kwarden ca init --trust-domain TD --out DIR [--root-ttl D] [--intermediate-ttl D] [--force]";
constexpr const char* kCaSignUsage = "kwarden ca sign-intermediate --root DIR --out DIR [--ttl D] [--force]";
constexpr const char* kSvidListUsage = "kwarden svid list [--json] [--admin-socket PATH]";
constexpr const char* kSvidMintUsage = "kwarden svid mint --ca DIR --id SPIFFE_ID --out DIR [--ttl D] [--force]";
constexpr const char* kBundleShowUsage = "kwarden bundle show [--ca DIR | --trust-domain TD] [--admin-socket PATH]";

// Reads --NAME as a duration, or FALLBACK when absent. Prints the problem on failure.
bool duration_opt(const Args& a, const std::string& name, identity::Seconds fallback, identity::Seconds& out) {
    if (!a.has(name)) {
        out = fallback;
        return true;
    }
    auto d = core::parse_duration(a.opt(name, ""));
    if (!d) {
        fail("--" + name + ": " + d.message(), 2);
        return false;
    }
    out = *d;
    return true;
}

bool require(const Args& a, std::initializer_list<const char*> names, const char* usage) {
    for (const char* n : names) {
        if (!a.has(n)) {
            fail(std::string("missing --") + n + "\nusage: " + usage, 2);
            return false;
        }
    }
    if (!a.positional.empty()) {
        fail("unexpected argument '" + a.positional[0] + "'\nusage: " + usage, 2);
        return false;
    }
    return true;
}

int report_written(const Result<std::vector<std::string>>& written) {
    if (!written) return fail(written.message());
    for (const auto& f : *written) std::cout << "wrote " << f << "\n";
    return 0;
}

int cmd_ca_init(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"trust-domain", "out", "root-ttl", "intermediate-ttl"}, {"force"}, kCaInitUsage);
    if (!a || !require(*a, {"trust-domain", "out"}, kCaInitUsage)) return 2;
    identity::CaInitOptions o;
    o.trust_domain = a->opt("trust-domain", "");
    o.out_dir = a->opt("out", "");
    o.force = a->flag("force");
    if (!duration_opt(*a, "root-ttl", identity::kDefaultRootTtl, o.root_ttl) ||
        !duration_opt(*a, "intermediate-ttl", identity::kDefaultIntermediateTtl, o.intermediate_ttl))
        return 2;
    int rc = report_written(identity::ca_init(o, identity::now_seconds()));
    if (rc == 0)
        std::cout << "keep " << o.out_dir << "/" << identity::kRootKeyFile
                  << " offline; give each node its own intermediate (kwarden ca sign-intermediate)\n";
    return rc;
}

int cmd_ca_sign(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"root", "out", "ttl"}, {"force"}, kCaSignUsage);
    if (!a || !require(*a, {"root", "out"}, kCaSignUsage)) return 2;
    identity::SignIntermediateOptions o;
    o.root_dir = a->opt("root", "");
    o.out_dir = a->opt("out", "");
    o.force = a->flag("force");
    if (!duration_opt(*a, "ttl", identity::kDefaultIntermediateTtl, o.ttl)) return 2;
    return report_written(identity::ca_sign_intermediate(o, identity::now_seconds()));
}

int cmd_svid_mint(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"ca", "id", "out", "ttl"}, {"force"}, kSvidMintUsage);
    if (!a || !require(*a, {"ca", "id", "out"}, kSvidMintUsage)) return 2;
    identity::MintOptions o;
    o.ca_dir = a->opt("ca", "");
    o.spiffe_id = a->opt("id", "");
    o.out_dir = a->opt("out", "");
    o.force = a->flag("force");
    if (!duration_opt(*a, "ttl", core::kDefaultSvidTtl, o.ttl)) return 2;
    int rc = report_written(identity::svid_mint(o, identity::now_seconds()));
    if (rc == 0)
        std::cout << "this SVID's private key is on disk by nature: it is for a peer kwarden does not manage\n";
    return rc;
}

int cmd_svid_list(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"admin-socket"}, {"json"}, kSvidListUsage);
    if (!a) return 2;
    if (!a->positional.empty()) return fail("unexpected argument '" + a->positional[0] + "'\nusage: " + kSvidListUsage, 2);
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), {{"op", "svid.list"}});
    if (!r) return fail(r.message());
    if (!(*r)["ok"].get<bool>()) return fail((*r)["error"].get<std::string>());
    if (a->flag("json")) {
        std::cout << core::json_text(*r, 2) << "\n";
        return 0;
    }
    std::cout << "trust domain " << (*r)["trust_domain"].get<std::string>() << " (CA: " << (*r)["ca"].get<std::string>()
              << ")\n";
    for (const auto& s : (*r)["svids"]) {
        std::cout << s["spiffe_id"].get<std::string>() << "\n"
                  << "  serial      " << s["serial"].get<std::string>() << "\n"
                  << "  not after   " << s["not_after"].get<std::string>() << " (rotates at "
                  << s["rotate_at"].get<std::string>() << ")\n"
                  << "  sha256      " << s["sha256"].get<std::string>() << "\n";
    }
    return 0;
}

int cmd_bundle_show(const std::vector<std::string>& argv) {
    auto a = parse(argv, {"ca", "trust-domain", "admin-socket"}, {}, kBundleShowUsage);
    if (!a) return 2;
    if (!a->positional.empty())
        return fail("unexpected argument '" + a->positional[0] + "'\nusage: " + kBundleShowUsage, 2);
    if (a->has("ca")) {
        if (a->has("trust-domain")) return fail("--ca and --trust-domain exclude each other\nusage: " + std::string(kBundleShowUsage), 2);
        auto bundle = identity::bundle_of_ca_dir(a->opt("ca", ""));
        if (!bundle) return fail(bundle.message());
        std::cout << identity::bundle_to_json(*bundle);
        return 0;
    }
    json request = {{"op", "bundle.show"}};
    if (a->has("trust-domain")) request["trust_domain"] = a->opt("trust-domain", "");
    auto r = io::admin_request(a->opt("admin-socket", kDefaultAdminSocket), request);
    if (!r) return fail(r.message());
    if (!(*r)["ok"].get<bool>()) return fail((*r)["error"].get<std::string>());
    std::cout << (*r)["bundle"].get<std::string>();
    return 0;
}

}  // namespace

int cmd_ca(const std::vector<std::string>& argv) {
    std::vector<std::string> rest(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
    if (!argv.empty() && argv[0] == "init") return cmd_ca_init(rest);
    if (!argv.empty() && argv[0] == "sign-intermediate") return cmd_ca_sign(rest);
    return fail("ca needs a subcommand: init or sign-intermediate\nusage: " + std::string(kCaInitUsage) + "\n       " +
                    kCaSignUsage,
                2);
}

int cmd_svid(const std::vector<std::string>& argv) {
    std::vector<std::string> rest(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
    if (!argv.empty() && argv[0] == "list") return cmd_svid_list(rest);
    if (!argv.empty() && argv[0] == "mint") return cmd_svid_mint(rest);
    return fail("svid needs a subcommand: list or mint\nusage: " + std::string(kSvidListUsage) + "\n       " +
                    kSvidMintUsage,
                2);
}

int cmd_bundle(const std::vector<std::string>& argv) {
    std::vector<std::string> rest(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
    if (!argv.empty() && argv[0] == "show") return cmd_bundle_show(rest);
    return fail("bundle needs a subcommand: show\nusage: " + std::string(kBundleShowUsage), 2);
}

}  // namespace kw::cli
