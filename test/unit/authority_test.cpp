// CA files (`ca init`, `ca sign-intermediate`, `svid mint`): modes, no silent overwrite,
// what a node loads, and OpenSSL as an independent verifier of what we mint. Plus the
// node's identity state: CA/policy trust domain agreement, federation bundles, and admin
// views that never carry a key.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "identity/authority.h"
#include "identity/bundle.h"
#include "identity/node_identity.h"

using Catch::Matchers::ContainsSubstring;
using namespace kw::identity;
namespace fs = std::filesystem;

namespace {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/kw-authority-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path_ = tmpl;
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }
    const std::string& str() const { return path_; }

private:
    std::string path_;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

unsigned mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

int run(const std::string& command) {
    int status = std::system((command + " >/dev/null 2>&1").c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A node without a CA directory, after POLICY is prepared and committed.
void apply_policy(NodeIdentity& node, const kw::core::Policy& policy) {
    REQUIRE(node.load_ca());
    auto staged = node.prepare(policy);
    INFO((staged ? "" : staged.message()));
    REQUIRE(staged);
    node.commit(std::move(*staged));
}

CaInitOptions init_options(const std::string& out) {
    CaInitOptions o;
    o.trust_domain = "example.org";
    o.out_dir = out;
    return o;
}

}  // namespace

TEST_CASE("ca init writes root and intermediate 0600 in a 0700 directory and refuses to overwrite") {
    TempDir tmp;
    std::string dir = tmp / "ca";
    auto written = ca_init(init_options(dir), now_seconds());
    INFO((written ? "" : written.message()));
    REQUIRE(written);
    CHECK(written->size() == 4);
    CHECK(mode_of(dir) == 0700);
    for (auto name : {kRootCertFile, kRootKeyFile, kIntermediateCertFile, kIntermediateKeyFile})
        CHECK(mode_of(dir + "/" + std::string(name)) == 0600);
    CHECK_THAT(slurp(dir + "/root.key"), ContainsSubstring("PRIVATE KEY"));

    std::string before = slurp(dir + "/intermediate.key");
    auto again = ca_init(init_options(dir), now_seconds());
    REQUIRE_FALSE(again);
    CHECK_THAT(again.message(), ContainsSubstring("refusing to overwrite (use --force)"));
    CHECK_THAT(again.message(), ContainsSubstring(dir + "/root.key"));
    CHECK(slurp(dir + "/intermediate.key") == before);

    auto forced = init_options(dir);
    forced.force = true;
    REQUIRE(ca_init(forced, now_seconds()));
    CHECK(slurp(dir + "/intermediate.key") != before);
    CHECK(mode_of(dir + "/intermediate.key") == 0600);

    auto ca = SigningAuthority::load_dir(dir, now_seconds());
    INFO((ca ? "" : ca.message()));
    REQUIRE(ca);
    CHECK((*ca)->trust_domain() == "example.org");
    CHECK((*ca)->source() == dir);
}

TEST_CASE("a directory that others can read is refused for keys") {
    TempDir tmp;
    std::string dir = tmp / "open";
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    REQUIRE(::chmod(dir.c_str(), 0755) == 0);
    auto r = ca_init(init_options(dir), now_seconds());
    REQUIRE_FALSE(r);
    CHECK_THAT(r.message(), ContainsSubstring("is mode 0755"));
    CHECK_FALSE(fs::exists(dir + "/root.key"));
}

TEST_CASE("an intermediate may not outlive its root") {
    TempDir tmp;
    auto o = init_options(tmp / "ca");
    o.root_ttl = Seconds(3600);
    o.intermediate_ttl = Seconds(7200);
    auto r = ca_init(o, now_seconds());
    REQUIRE_FALSE(r);
    CHECK_THAT(r.message(), ContainsSubstring("cannot outlive its issuer"));

    REQUIRE(ca_init(init_options(tmp / "root"), now_seconds()));
    SignIntermediateOptions s{tmp / "root", tmp / "node", Seconds(3650 * 86400 + 86400), false};
    auto sign = ca_sign_intermediate(s, now_seconds());
    REQUIRE_FALSE(sign);
    CHECK_THAT(sign.message(), ContainsSubstring("would outlive the root"));
}

TEST_CASE("a node intermediate signed offline loads in the agent and its SVIDs pass OpenSSL") {
    TempDir tmp;
    REQUIRE(ca_init(init_options(tmp / "root"), now_seconds()));
    auto node = ca_sign_intermediate({tmp / "root", tmp / "node", Seconds(86400), false}, now_seconds());
    INFO((node ? "" : node.message()));
    REQUIRE(node);
    CHECK_FALSE(fs::exists(tmp / "node/root.key"));  // the root key stays where it was
    CHECK(slurp(tmp / "node/root.pem") == slurp(tmp / "root/root.pem"));
    auto ca = SigningAuthority::load_dir(tmp / "node", now_seconds());
    INFO((ca ? "" : ca.message()));
    REQUIRE(ca);

    MintOptions m{tmp / "node", "spiffe://example.org/partner/api", tmp / "svid", Seconds(600), false};
    auto minted = svid_mint(m, now_seconds());
    INFO((minted ? "" : minted.message()));
    REQUIRE(minted);
    CHECK(mode_of(tmp / "svid/svid_key.pem") == 0600);
    for (const char* purpose : {"sslclient", "sslserver"}) {
        std::string cmd = std::string("openssl verify -x509_strict -purpose ") + purpose + " -CAfile " +
                          (tmp / "svid/svid_bundle.pem") + " -untrusted " + (tmp / "svid/svid.pem") + " " +
                          (tmp / "svid/svid.pem");
        INFO(cmd);
        CHECK(run(cmd) == 0);
    }
    // And the leaf does not verify against another trust domain's root.
    REQUIRE(ca_init(init_options(tmp / "other"), now_seconds()));
    CHECK(run("openssl verify -CAfile " + (tmp / "other/root.pem") + " -untrusted " + (tmp / "svid/svid.pem") + " " +
              (tmp / "svid/svid.pem")) != 0);

    auto bad_id = svid_mint({tmp / "node", "spiffe://example.org/a/../b", tmp / "bad", Seconds(600), false},
                            now_seconds());
    REQUIRE_FALSE(bad_id);
    CHECK_THAT(bad_id.message(), ContainsSubstring("'.' or '..' segment"));
    auto td_only = svid_mint({tmp / "node", "spiffe://example.org", tmp / "bad", Seconds(600), false}, now_seconds());
    REQUIRE_FALSE(td_only);
    CHECK_THAT(td_only.message(), ContainsSubstring("needs a path"));
}

TEST_CASE("a CA directory with the wrong key or a foreign root is refused when loaded") {
    TempDir tmp;
    REQUIRE(ca_init(init_options(tmp / "ca"), now_seconds()));
    REQUIRE(ca_init(init_options(tmp / "other"), now_seconds()));

    fs::copy_file(tmp / "ca/root.key", tmp / "ca/intermediate.key", fs::copy_options::overwrite_existing);
    auto wrong_key = SigningAuthority::load_dir(tmp / "ca", now_seconds());
    REQUIRE_FALSE(wrong_key);
    CHECK_THAT(wrong_key.message(), ContainsSubstring("key does not belong"));

    REQUIRE(ca_init(init_options(tmp / "ca2"), now_seconds()));
    fs::copy_file(tmp / "other/root.pem", tmp / "ca2/root.pem", fs::copy_options::overwrite_existing);
    auto foreign = SigningAuthority::load_dir(tmp / "ca2", now_seconds());
    REQUIRE_FALSE(foreign);
    CHECK_THAT(foreign.message(), ContainsSubstring("does not verify against its own root"));

    auto missing = SigningAuthority::load_dir(tmp / "nothing", now_seconds());
    REQUIRE_FALSE(missing);
    CHECK_THAT(missing.message(), ContainsSubstring("cannot read " + (tmp / "nothing/intermediate.pem")));
}

TEST_CASE("the node identity follows the policy: CA trust domain, federation bundles, key-free views") {
    TempDir tmp;
    kw::core::Policy policy;
    policy.trust_domain = "example.org";
    policy.workloads.push_back({"spiffe://example.org/api", {}, std::nullopt});

    SECTION("no CA directory: an ephemeral CA for the policy's trust domain") {
        NodeIdentity node(tmp / "none");
        apply_policy(node, policy);
        auto list = node.svid_list();
        CHECK(list["ca"] == "ephemeral");
        REQUIRE(list["svids"].size() == 1);
        CHECK(list["svids"][0]["spiffe_id"] == "spiffe://example.org/api");
        CHECK(list["svids"][0]["sha256"].get<std::string>().size() == 64);
        std::string dump = list.dump();
        CHECK(dump.find("PRIVATE") == std::string::npos);
        CHECK(dump.find("\"key\"") == std::string::npos);

        auto bundle = node.bundle_json(std::nullopt);
        REQUIRE(bundle);
        auto parsed = parse_bundle_json(*bundle, "example.org");
        REQUIRE(parsed);
        CHECK(parsed->x509_authorities.size() == 1);
        auto other = node.bundle_json("partner.org");
        REQUIRE_FALSE(other);
        CHECK_THAT(other.message(), ContainsSubstring("no trust bundle for trust domain 'partner.org'"));
    }
    SECTION("a configured CA of another trust domain rejects the policy") {
        auto o = init_options(tmp / "ca");
        o.trust_domain = "corp.example";
        REQUIRE(ca_init(o, now_seconds()));
        NodeIdentity node(tmp / "ca");
        REQUIRE(node.load_ca());
        auto staged = node.prepare(policy);
        REQUIRE_FALSE(staged);
        CHECK_THAT(staged.message(), ContainsSubstring("/trust_domain: 'example.org' is not the trust domain"));
    }
    SECTION("federation bundles are loaded per trust domain; a missing file names its entry") {
        REQUIRE(ca_init([&] {
            auto o = init_options(tmp / "partner");
            o.trust_domain = "partner.org";
            return o;
        }(), now_seconds()));
        auto partner = bundle_of_ca_dir(tmp / "partner");
        REQUIRE(partner);
        std::ofstream(tmp / "partner.json") << bundle_to_json(*partner);
        policy.federation.push_back({"partner.org", tmp / "partner.json"});
        NodeIdentity node(tmp / "none");
        apply_policy(node, policy);
        CHECK(node.trust().bundles().size() == 2);
        CHECK(node.trust().find("partner.org")->x509_authorities.size() == 1);
        CHECK(node.bundle_json("partner.org"));

        policy.federation.push_back({"third.org", tmp / "missing.json"});
        auto bad = node.prepare(policy);
        REQUIRE_FALSE(bad);
        CHECK_THAT(bad.message(), ContainsSubstring("/federation/1/bundle: "));
        CHECK_THAT(bad.message(), ContainsSubstring("missing.json"));
        CHECK(node.trust().bundles().size() == 2);  // the last good state stays
    }
}
