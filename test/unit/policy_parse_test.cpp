// parse_policy: every malformed policy is refused with the JSON path and the rule it
// breaks; valid policies get their defaults; warnings point at what an operator should see.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/policy.h"

using json = nlohmann::json;
using kw::core::Mode;
using kw::core::parse_policy;
using kw::core::ParseOutcome;
using kw::core::Protocol;

namespace {

// A valid policy that each malformed case changes in one place.
json base_policy() {
    return json::parse(R"({
      "version": 1,
      "trust_domain": "example.org",
      "workloads": [
        { "id": "spiffe://example.org/billing", "selectors": { "exe": "/usr/bin/billing" } }
      ],
      "destinations": [ { "name": "db", "cidrs": ["10.0.0.0/8"], "ports": [5432] } ],
      "rules": [ { "from": "spiffe://example.org/billing", "to": "db" } ]
    })");
}

const std::string kHash(64, 'a');

struct Malformed {
    std::string name;
    std::function<std::string()> text;
    std::string path;
    std::string message;  // a distinctive part of the one error expected
};

std::function<std::string()> edit(std::function<void(json&)> change) {
    return [change] {
        json doc = base_policy();
        change(doc);
        return doc.dump();
    };
}

std::function<std::string()> raw(std::string text) {
    return [text] { return text; };
}

json& selectors(json& doc) { return doc["workloads"][0]["selectors"]; }

std::string all_problems(const std::vector<kw::core::PolicyProblem>& problems) {
    std::string out;
    for (const auto& p : problems) out += p.to_string() + "\n";
    return out;
}

}  // namespace

TEST_CASE("the base policy of the malformed cases is itself valid") {
    ParseOutcome out = parse_policy(base_policy().dump());
    INFO(all_problems(out.errors));
    CHECK(out.errors.empty());
    CHECK(out.warnings.empty());
    REQUIRE(out.policy);
}

TEST_CASE("each malformed policy is refused with one error at the exact JSON path") {
    const Malformed cases[] = {
        {"text that is not JSON", raw(R"({"version": 1,)"), "",
         "not valid JSON at byte 15: parse error at line 1, column 15"},
        {"a top level that is not an object", raw("[1, 2]"), "", "must be a JSON object"},
        {"a missing version", edit([](json& d) { d.erase("version"); }), "", "missing required field 'version'"},
        {"a version from the future", edit([](json& d) { d["version"] = 2; }), "/version",
         "unsupported policy version 2: this agent reads version 1"},
        {"a version written as a string", edit([](json& d) { d["version"] = "1"; }), "/version", "must be an integer"},
        {"an unknown top-level field", edit([](json& d) { d["foo"] = true; }), "/foo", "unknown field 'foo'"},
        {"an unknown field whose name needs escaping", edit([](json& d) { d["a/b~c"] = 1; }), "/a~1b~0c",
         "unknown field 'a/b~c'"},
        {"a missing trust domain", edit([](json& d) { d.erase("trust_domain"); }), "",
         "missing required field 'trust_domain'"},
        {"an upper-case trust domain", edit([](json& d) { d["trust_domain"] = "Example.org"; }), "/trust_domain",
         "trust domain contains a character outside [a-z0-9._-]"},
        {"an unknown mode", edit([](json& d) { d["mode"] = "strict"; }), "/mode", R"(must be "enforce" or "audit")"},
        {"log_allowed as a string", edit([](json& d) { d["log_allowed"] = "yes"; }), "/log_allowed",
         "must be true or false"},
        {"lifecycle_events as a number", edit([](json& d) { d["lifecycle_events"] = 1; }), "/lifecycle_events",
         "must be true or false"},
        {"a destination's lifecycle_events as a string",
         edit([](json& d) { d["destinations"][0]["lifecycle_events"] = "on"; }), "/destinations/0/lifecycle_events",
         "must be true or false"},
        {"workloads as an object", edit([](json& d) {
             d["workloads"] = json::object();
             d["rules"] = json::array();
         }),
         "/workloads", "must be an array"},
        {"a workload that is not an object", edit([](json& d) {
             d["workloads"] = json::array({"billing"});
             d["rules"] = json::array();
         }),
         "/workloads/0", "must be an object"},
        {"an unknown workload field", edit([](json& d) { d["workloads"][0]["name"] = "billing"; }), "/workloads/0/name",
         "unknown field 'name'"},
        {"a workload ID of another trust domain", edit([](json& d) {
             d["workloads"][0]["id"] = "spiffe://other.org/billing";
             d["rules"] = json::array();
         }),
         "/workloads/0/id", "belongs to trust domain 'other.org', not the policy's trust domain 'example.org'"},
        {"a workload ID without a path", edit([](json& d) {
             d["workloads"][0]["id"] = "spiffe://example.org";
             d["rules"] = json::array();
         }),
         "/workloads/0/id", "a workload ID needs a path"},
        {"a workload ID with a trailing slash", edit([](json& d) {
             d["workloads"][0]["id"] = "spiffe://example.org/billing/";
             d["rules"] = json::array();
         }),
         "/workloads/0/id", "path ends with '/'"},
        {"a workload without selectors", edit([](json& d) { d["workloads"][0].erase("selectors"); }), "/workloads/0",
         "missing required field 'selectors'"},
        {"an empty selector set", edit([](json& d) { selectors(d) = json::object(); }), "/workloads/0/selectors",
         "at least one selector is required"},
        {"an unknown selector", edit([](json& d) { selectors(d)["path"] = "/usr/bin/billing"; }),
         "/workloads/0/selectors/path", "unknown field 'path'"},
        {"a relative exe", edit([](json& d) { selectors(d)["exe"] = "bin/billing"; }), "/workloads/0/selectors/exe",
         "must be an absolute path"},
        {"an exe with a '..' component", edit([](json& d) { selectors(d)["exe"] = "/usr/bin/../sbin/billing"; }),
         "/workloads/0/selectors/exe", "must be normalised"},
        {"an exe with a trailing slash", edit([](json& d) { selectors(d)["exe"] = "/usr/bin/"; }),
         "/workloads/0/selectors/exe", "must not end with '/'"},
        {"an exe that is a number", edit([](json& d) { selectors(d)["exe"] = 42; }), "/workloads/0/selectors/exe",
         "must be a string"},
        {"an upper-case sha256", edit([](json& d) { selectors(d)["sha256"] = std::string(64, 'A'); }),
         "/workloads/0/selectors/sha256", "must be 64 lowercase hex characters"},
        {"a short sha256", edit([](json& d) { selectors(d)["sha256"] = std::string(63, 'a'); }),
         "/workloads/0/selectors/sha256", "must be 64 lowercase hex characters"},
        {"a sha256 without an exe", edit([](json& d) {
             selectors(d) = {{"uid", 0}, {"sha256", kHash}};
         }),
         "/workloads/0/selectors/sha256", "it needs an exe selector"},
        {"a script_sha256 without a script", edit([](json& d) { selectors(d)["script_sha256"] = kHash; }),
         "/workloads/0/selectors/script_sha256", "it needs a script selector"},
        {"a relative script", edit([](json& d) { selectors(d)["script"] = "./run.py"; }),
         "/workloads/0/selectors/script", "must be an absolute path"},
        {"argv and argv_prefix together", edit([](json& d) {
             selectors(d)["argv"] = {"billing"};
             selectors(d)["argv_prefix"] = {"billing"};
         }),
         "/workloads/0/selectors/argv_prefix", "argv and argv_prefix are mutually exclusive"},
        {"an empty argv", edit([](json& d) { selectors(d)["argv"] = json::array(); }), "/workloads/0/selectors/argv",
         "must list at least one argument"},
        {"argv as a string", edit([](json& d) { selectors(d)["argv_prefix"] = "billing --serve"; }),
         "/workloads/0/selectors/argv_prefix", "must be an array of strings"},
        {"an argv argument that is not a string", edit([](json& d) {
             selectors(d)["argv"] = {"billing", 1};
         }),
         "/workloads/0/selectors/argv/1", "must be a string"},
        {"an argv argument with a NUL", edit([](json& d) { selectors(d)["argv"] = {std::string("a\0b", 3)}; }),
         "/workloads/0/selectors/argv/0", "must not contain a NUL character"},
        {"an argv longer than the kernel compares", edit([](json& d) {
             selectors(d)["argv_prefix"] = {std::string(200, 'x'), std::string(55, 'y')};
         }),
         "/workloads/0/selectors/argv_prefix",
         "encodes to 257 bytes (each argument plus its NUL); the kernel "
         "compares at most 256 (KW_ARGV_MAX)"},
        {"a negative uid", edit([](json& d) { selectors(d)["uid"] = -1; }), "/workloads/0/selectors/uid",
         "must be an integer from 0 to 4294967294"},
        {"the uid that means no uid", edit([](json& d) { selectors(d)["uid"] = 4294967295u; }),
         "/workloads/0/selectors/uid", "must be an integer from 0 to 4294967294"},
        {"a fractional gid", edit([](json& d) { selectors(d)["gid"] = 1.5; }), "/workloads/0/selectors/gid",
         "must be an integer from 0 to 4294967294"},
        {"a relative cgroup", edit([](json& d) { selectors(d)["cgroup"] = "system.slice"; }),
         "/workloads/0/selectors/cgroup", "must be an absolute path"},
        {"a cgroup that climbs out", edit([](json& d) { selectors(d)["cgroup"] = "/system.slice/../x"; }),
         "/workloads/0/selectors/cgroup", "must be normalised"},
        {"two different pins for one exe", edit([](json& d) {
             selectors(d)["sha256"] = kHash;
             d["workloads"].push_back({{"id", "spiffe://example.org/other"},
                                       {"selectors", {{"exe", "/usr/bin/billing"}, {"sha256", std::string(64, 'b')}}}});
         }),
         "/workloads/1/selectors/sha256", "differs from /workloads/0/selectors/sha256"},
        {"a destination name with a space", edit([](json& d) {
             d["destinations"][0]["name"] = "my db";
             d["rules"] = json::array();
         }),
         "/destinations/0/name", "must match [A-Za-z0-9._-]+"},
        {"two destinations with one name", edit([](json& d) {
             d["destinations"].push_back({{"name", "db"}, {"cidrs", {"10.1.0.0/16"}}});
         }),
         "/destinations/1/name", "duplicate destination name 'db' (also /destinations/0)"},
        {"a destination without cidrs", edit([](json& d) { d["destinations"][0].erase("cidrs"); }), "/destinations/0",
         "missing required field 'cidrs'"},
        {"an empty cidr list", edit([](json& d) { d["destinations"][0]["cidrs"] = json::array(); }),
         "/destinations/0/cidrs", "must list at least one CIDR"},
        {"an IPv4 CIDR with host bits", edit([](json& d) { d["destinations"][0]["cidrs"] = {"10.0.0.1/8"}; }),
         "/destinations/0/cidrs/0", "host bits set: did you mean 10.0.0.0/8?"},
        {"an IPv6 CIDR with host bits", edit([](json& d) { d["destinations"][0]["cidrs"] = {"2001:db8::1/32"}; }),
         "/destinations/0/cidrs/0", "host bits set: did you mean 2001:db8::/32?"},
        {"an IPv4 prefix longer than 32", edit([](json& d) { d["destinations"][0]["cidrs"] = {"10.0.0.0/33"}; }),
         "/destinations/0/cidrs/0", "prefix length must be a number from 0 to 32"},
        {"an IPv6 prefix that is not a number", edit([](json& d) { d["destinations"][0]["cidrs"] = {"::/x"}; }),
         "/destinations/0/cidrs/0", "prefix length must be a number from 0 to 128"},
        {"a host name instead of an address", edit([](json& d) { d["destinations"][0]["cidrs"] = {"db.example.org"}; }),
         "/destinations/0/cidrs/0", "'db.example.org' is not an IPv4 or IPv6 address"},
        {"port 0", edit([](json& d) { d["destinations"][0]["ports"] = {0}; }), "/destinations/0/ports/0",
         "must be an integer from 1 to 65535"},
        {"a port beyond 65535", edit([](json& d) { d["destinations"][0]["ports"] = {65536}; }),
         "/destinations/0/ports/0", "must be an integer from 1 to 65535"},
        {"a port listed twice", edit([](json& d) {
             d["destinations"][0]["ports"] = {5432, 5432};
         }),
         "/destinations/0/ports/1", "duplicate port 5432"},
        {"an unknown protocol", edit([](json& d) { d["destinations"][0]["protocol"] = "icmp"; }),
         "/destinations/0/protocol", R"(must be "tcp" or "udp")"},
        {"a rule from an ID no workload has", edit([](json& d) { d["rules"][0]["from"] = "spiffe://example.org/web"; }),
         "/rules/0/from", "no workload has this SPIFFE ID"},
        {"a rule from something that is not a SPIFFE ID", edit([](json& d) { d["rules"][0]["from"] = "billing"; }),
         "/rules/0/from", "scheme must be 'spiffe://' (or use \"*\" for every process)"},
        {"a rule to an undeclared destination", edit([](json& d) { d["rules"][0]["to"] = "web"; }), "/rules/0/to",
         "no destination named 'web'"},
        {"a rule without a destination", edit([](json& d) { d["rules"][0].erase("to"); }), "/rules/0",
         "missing required field 'to'"},
        {"a duplicate top-level key",
         raw(R"({"version": 1, "trust_domain": "example.org", "trust_domain": "evil.org"})"), "/trust_domain",
         "duplicate key 'trust_domain'"},
        {"a duplicate key deep inside an array", raw(R"({"version": 1, "trust_domain": "example.org", "workloads": [
               {"id": "spiffe://example.org/a", "selectors": {"exe": "/bin/a"}},
               {"id": "spiffe://example.org/b", "selectors": {"argv": ["b", "-x"], "exe": "/bin/b", "exe": "/bin/c"}}]})"),
         "/workloads/1/selectors/exe", "duplicate key 'exe'"},
        {"svid_ttl not a string", edit([](json& d) { d["workloads"][0]["svid_ttl"] = 60; }), "/workloads/0/svid_ttl",
         "must be a string"},
        {"svid_ttl without a unit", edit([](json& d) { d["workloads"][0]["svid_ttl"] = "60"; }),
         "/workloads/0/svid_ttl", "has no unit"},
        {"svid_ttl below the minimum", edit([](json& d) { d["workloads"][0]["svid_ttl"] = "1s"; }),
         "/workloads/0/svid_ttl", "must be from 2s to 30d"},
        {"svid_ttl above the maximum", edit([](json& d) { d["workloads"][0]["svid_ttl"] = "31d"; }),
         "/workloads/0/svid_ttl", "must be from 2s to 30d"},
        {"two entries of one ID with different svid_ttl", edit([](json& d) {
             d["workloads"][0]["svid_ttl"] = "15m";
             d["workloads"].push_back(
                 {{"id", "spiffe://example.org/billing"}, {"selectors", {{"exe", "/bin/b2"}}}, {"svid_ttl", "1h"}});
         }),
         "/workloads/1/svid_ttl", "differs from /workloads/0/svid_ttl"},
        {"federation not an array", edit([](json& d) { d["federation"] = json::object(); }), "/federation",
         "must be an array"},
        {"federation entry with an unknown field", edit([](json& d) {
             d["federation"] = {{{"trust_domain", "partner.org"}, {"bundle", "/etc/p.json"}, {"url", "x"}}};
         }),
         "/federation/0/url", "unknown field 'url'"},
        {"federation without a bundle",
         edit([](json& d) { d["federation"] = {{{"trust_domain", "partner.org"}}}; }), "/federation/0",
         "missing required field 'bundle'"},
        {"federation with a relative bundle path",
         edit([](json& d) { d["federation"] = {{{"trust_domain", "partner.org"}, {"bundle", "p.json"}}}; }),
         "/federation/0/bundle", "absolute"},
        {"federation with an invalid trust domain",
         edit([](json& d) { d["federation"] = {{{"trust_domain", "Partner.org"}, {"bundle", "/etc/p.json"}}}; }),
         "/federation/0/trust_domain", "outside [a-z0-9._-]"},
        {"federation naming the policy's own trust domain",
         edit([](json& d) { d["federation"] = {{{"trust_domain", "example.org"}, {"bundle", "/etc/p.json"}}}; }),
         "/federation/0/trust_domain", "the policy's own trust domain"},
        {"federation naming one trust domain twice", edit([](json& d) {
             d["federation"] = {{{"trust_domain", "partner.org"}, {"bundle", "/etc/p.json"}},
                                {{"trust_domain", "partner.org"}, {"bundle", "/etc/q.json"}}};
         }),
         "/federation/1/trust_domain", "never merged"},
        {"tls other than mutual", edit([](json& d) {
             d["destinations"][0]["tls"] = "optional";
             d["destinations"][0]["identity"] = "spiffe://example.org/db";
         }),
         "/destinations/0/tls", "must be \"mutual\""},
        {"mutual TLS without identity", edit([](json& d) { d["destinations"][0]["tls"] = "mutual"; }), "/destinations/0",
         "missing required field 'identity'"},
        {"identity without tls", edit([](json& d) { d["destinations"][0]["identity"] = "spiffe://example.org/db"; }),
         "/destinations/0/identity", "it needs \"tls\": \"mutual\""},
        {"tls_cipher without tls", edit([](json& d) { d["destinations"][0]["tls_cipher"] = "aes-256-gcm"; }),
         "/destinations/0/tls_cipher", "it needs \"tls\": \"mutual\""},
        {"tls_cipher kTLS cannot carry", edit([](json& d) {
             d["destinations"][0]["tls"] = "mutual";
             d["destinations"][0]["identity"] = "spiffe://example.org/db";
             d["destinations"][0]["tls_cipher"] = "TLS_AES_128_CCM_SHA256";
         }),
         "/destinations/0/tls_cipher", "unknown cipher 'TLS_AES_128_CCM_SHA256': expected aes-128-gcm, aes-256-gcm"},
        {"mutual TLS over udp", edit([](json& d) {
             d["destinations"][0]["protocol"] = "udp";
             d["destinations"][0]["tls"] = "mutual";
             d["destinations"][0]["identity"] = "spiffe://example.org/db";
         }),
         "/destinations/0/tls", "needs protocol \"tcp\""},
        {"server identity of an unknown trust domain", edit([](json& d) {
             d["destinations"][0]["tls"] = "mutual";
             d["destinations"][0]["identity"] = "spiffe://partner.org/db";
         }),
         "/destinations/0/identity", "neither the policy's nor in \"federation\""},
        {"server identity without a path", edit([](json& d) {
             d["destinations"][0]["tls"] = "mutual";
             d["destinations"][0]["identity"] = "spiffe://example.org";
         }),
         "/destinations/0/identity", "a server identity needs a path"},
        {"listen port twice", edit([](json& d) {
             d["workloads"][0]["listen"] = {{{"port", 8443}, {"tls", "mutual"}}, {{"port", 8443}, {"tls", "mutual"}}};
         }),
         "/workloads/0/listen/1/port", "duplicate listen port 8443"},
        {"listen without tls", edit([](json& d) { d["workloads"][0]["listen"] = {{{"port", 8443}}}; }),
         "/workloads/0/listen/0", "missing required field 'tls'"},
        {"listen port out of range", edit([](json& d) {
             d["workloads"][0]["listen"] = {{{"port", 0}, {"tls", "mutual"}}};
         }),
         "/workloads/0/listen/0/port", "from 1 to 65535"},
        {"allow_env not an array", edit([](json& d) { d["workloads"][0]["allow_env"] = "LD_PRELOAD"; }),
         "/workloads/0/allow_env", "must be an array of strings"},
        {"allow_env with a non-string", edit([](json& d) { d["workloads"][0]["allow_env"] = {"LD_AUDIT", 1}; }),
         "/workloads/0/allow_env/1", "must be a string"},
        {"allow_env with an unknown variable",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"LD_LIBRARY_PATH", "BASH_ENVX"}; }),
         "/workloads/0/allow_env/1",
         "unknown code-loading variable 'BASH_ENVX': must be one of \"LD_PRELOAD\", \"LD_AUDIT\", "
         "\"LD_LIBRARY_PATH\", \"LD_*\", \"GLIBC_TUNABLES\", \"GCONV_PATH\", \"OPENSSL_*\", \"BASH_ENV\", \"ENV\", "
         "\"BASH_FUNC_*\", \"SHELLOPTS\", \"BASHOPTS\", \"PS4\", \"PYTHON*\", \"PERL*\", \"NODE_*\", \"RUBYOPT\", "
         "\"RUBYLIB\", \"JAVA_TOOL_OPTIONS\", \"_JAVA_OPTIONS\", \"JDK_JAVA_OPTIONS\", \"CLASSPATH\""},
        {"allow_env with a variable no interpreter reads",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"BASH_ENV", "HOME"}; }), "/workloads/0/allow_env/1",
         "unknown code-loading variable 'HOME': must be one of"},
        {"allow_env naming one member of a family",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"PYTHONPATH"}; }), "/workloads/0/allow_env/0",
         "'PYTHONPATH' is one of the family \"PYTHON*\": allow the family by that name"},
        {"allow_env naming a family without its star",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"NODE_OPTIONS"}; }), "/workloads/0/allow_env/0",
         "'NODE_OPTIONS' is one of the family \"NODE_*\": allow the family by that name"},
        {"allow_env naming another loader variable",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"LD_LIBRARY_PATH", "LD_DEBUG"}; }),
         "/workloads/0/allow_env/1", "'LD_DEBUG' is one of the family \"LD_*\": allow the family by that name"},
        {"allow_env naming an exempt python variable",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"PYTHONUNBUFFERED"}; }), "/workloads/0/allow_env/0",
         "unknown code-loading variable 'PYTHONUNBUFFERED'"},
        {"allow_env naming a family twice",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"PERL*", "RUBYOPT", "PERL*"}; }),
         "/workloads/0/allow_env/2", "duplicate code-loading variable 'PERL*'"},
        {"allow_env with a variable in lowercase",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"ld_preload"}; }), "/workloads/0/allow_env/0",
         "unknown code-loading variable 'ld_preload'"},
        {"allow_env with a value", edit([](json& d) { d["workloads"][0]["allow_env"] = {"LD_PRELOAD=/x.so"}; }),
         "/workloads/0/allow_env/0", "unknown code-loading variable 'LD_PRELOAD=/x.so'"},
        {"allow_env naming a variable twice",
         edit([](json& d) { d["workloads"][0]["allow_env"] = {"LD_AUDIT", "LD_PRELOAD", "LD_AUDIT"}; }),
         "/workloads/0/allow_env/2", "duplicate code-loading variable 'LD_AUDIT'"},
        {"allow_raw_sockets not a boolean", edit([](json& d) { d["workloads"][0]["allow_raw_sockets"] = "yes"; }),
         "/workloads/0/allow_raw_sockets", "must be true or false"},
        {"allow_core_dumps not a boolean", edit([](json& d) { d["workloads"][0]["allow_core_dumps"] = 1; }),
         "/workloads/0/allow_core_dumps", "must be true or false"},
        {"allow_code not an array", edit([](json& d) { d["workloads"][0]["allow_code"] = "/usr/lib/x.so"; }),
         "/workloads/0/allow_code", "must be an array of absolute paths (files or directories)"},
        {"allow_code with a relative path",
         edit([](json& d) { d["workloads"][0]["allow_code"] = {"/usr/lib/a.so", "lib/b.so"}; }),
         "/workloads/0/allow_code/1", "'lib/b.so' must be an absolute path (start with '/')"},
        {"allow_code with a '..' component",
         edit([](json& d) { d["workloads"][0]["allow_code"] = {"/usr/lib/../tmp"}; }), "/workloads/0/allow_code/0",
         "'/usr/lib/../tmp' must be normalised: no empty, '.' or '..' component"},
        {"allow_code naming a path twice",
         edit([](json& d) { d["workloads"][0]["allow_code"] = {"/opt/p", "/opt/p"}; }), "/workloads/0/allow_code/1",
         "duplicate of /workloads/0/allow_code/0"},
        {"allow_debuggers not an array", edit([](json& d) { d["allow_debuggers"] = "/usr/bin/gdb"; }),
         "/allow_debuggers", "must be an array of strings"},
        {"allow_debuggers with a non-string", edit([](json& d) { d["allow_debuggers"] = {"/usr/bin/gdb", 0}; }),
         "/allow_debuggers/1", "must be a string"},
        {"allow_debuggers with a bare name", edit([](json& d) { d["allow_debuggers"] = {"gdb"}; }),
         "/allow_debuggers/0", "scheme must be 'spiffe://' (or the absolute path of a debugger's executable)"},
        {"allow_debuggers with a path that is not normalised",
         edit([](json& d) { d["allow_debuggers"] = {"/usr/bin/../bin/gdb"}; }), "/allow_debuggers/0",
         "must be normalised"},
        {"allow_debuggers naming '/'", edit([](json& d) { d["allow_debuggers"] = {"/"}; }), "/allow_debuggers/0",
         "must name a file, not '/'"},
        {"allow_debuggers with an invalid SPIFFE ID",
         edit([](json& d) { d["allow_debuggers"] = {"spiffe://example.org/ops//gdb"}; }), "/allow_debuggers/0",
         "path contains an empty segment ('//')"},
        {"allow_debuggers with an ID no workload has",
         edit([](json& d) { d["allow_debuggers"] = {"spiffe://example.org/ops/gdb"}; }), "/allow_debuggers/0",
         "no workload has this SPIFFE ID: no process can carry it"},
        {"allow_debuggers with an ID of another trust domain",
         edit([](json& d) { d["allow_debuggers"] = {"spiffe://partner.org/billing"}; }), "/allow_debuggers/0",
         "no workload has this SPIFFE ID"},
        {"allow_debuggers naming a path twice",
         edit([](json& d) { d["allow_debuggers"] = {"/usr/bin/gdb", "spiffe://example.org/billing", "/usr/bin/gdb"}; }),
         "/allow_debuggers/2", "duplicate of /allow_debuggers/0"},
        {"allow_debuggers naming an ID twice", edit([](json& d) {
             d["allow_debuggers"] = {"spiffe://example.org/billing", "spiffe://example.org/billing"};
         }),
         "/allow_debuggers/1", "duplicate of /allow_debuggers/0"},
        {"allow_debuggers inside a workload",
         edit([](json& d) { d["workloads"][0]["allow_debuggers"] = {"/usr/bin/gdb"}; }),
         "/workloads/0/allow_debuggers", "unknown field 'allow_debuggers'"},
    };
    for (const Malformed& c : cases) {
        DYNAMIC_SECTION(c.name) {
            ParseOutcome out = parse_policy(c.text());
            INFO(all_problems(out.errors));
            CHECK_FALSE(out.policy);
            REQUIRE(out.errors.size() == 1);
            CHECK(out.errors[0].path == c.path);
            CHECK(out.errors[0].message.find(c.message) != std::string::npos);
        }
    }
}

TEST_CASE("a duplicate key after plain array elements is located by its index") {
    ParseOutcome out = parse_policy(R"({"version": 1, "trust_domain": "example.org", "workloads": [
        {"id": "spiffe://example.org/a", "selectors": {"argv": ["a", "b", {"x": 1, "x": 2}]}}]})");
    REQUIRE_FALSE(out.errors.empty());
    CHECK(out.errors[0].path == "/workloads/0/selectors/argv/2/x");
    CHECK(out.errors[0].message == "duplicate key 'x': JSON readers disagree on which one counts");
}

TEST_CASE("every problem of a policy is reported, not just the first") {
    json doc = base_policy();
    doc["mode"] = "strict";
    selectors(doc)["uid"] = -5;
    doc["destinations"][0]["protocol"] = "sctp";
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.errors.size() == 3);
    CHECK(out.errors[0].path == "/mode");
    CHECK(out.errors[1].path == "/workloads/0/selectors/uid");
    CHECK(out.errors[2].path == "/destinations/0/protocol");
}

TEST_CASE("a minimal policy gets enforce mode, no logging, empty lists and the hash of its text") {
    const std::string text = R"({"version": 1, "trust_domain": "example.org"})";
    ParseOutcome out = parse_policy(text);
    REQUIRE(out.policy);
    CHECK(out.errors.empty());
    CHECK(out.policy->version == 1);
    CHECK(out.policy->trust_domain == "example.org");
    CHECK(out.policy->mode == Mode::Enforce);
    CHECK_FALSE(out.policy->log_allowed);
    CHECK(out.policy->workloads.empty());
    CHECK(out.policy->destinations.empty());
    CHECK(out.policy->rules.empty());
    CHECK(out.policy->revision == "6f598dc0d6c2717e686da8bdcb69cbdb69c45640038545e953c5a224ba97d4f4");
}

TEST_CASE("the revision changes when only the whitespace of the text changes") {
    auto a = parse_policy(R"({"version": 1, "trust_domain": "example.org"})");
    auto b = parse_policy(R"({"version":1,"trust_domain":"example.org"})");
    REQUIRE(a.policy);
    REQUIRE(b.policy);
    CHECK(a.policy->revision != b.policy->revision);
}

TEST_CASE("selectors are parsed into the model with their values") {
    ParseOutcome out = parse_policy(R"({
      "version": 1, "trust_domain": "example.org", "mode": "audit", "log_allowed": true,
      "workloads": [
        { "id": "spiffe://example.org/report",
          "selectors": { "exe": "/usr/bin/python3", "sha256": ")" +
                                    kHash + R"(",
                         "script": "/opt/report.py", "script_sha256": ")" +
                                    std::string(64, 'b') + R"(",
                         "argv_prefix": ["python3", "/opt/report.py"],
                         "uid": 4294967294, "gid": 0, "cgroup": "/" } },
        { "id": "spiffe://example.org/cron", "selectors": { "argv": ["cron", "-f"] } }
      ]
    })");
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->mode == Mode::Audit);
    CHECK(out.policy->log_allowed);
    REQUIRE(out.policy->workloads.size() == 2);
    const auto& sel = out.policy->workloads[0].selectors;
    CHECK(sel.exe == "/usr/bin/python3");
    CHECK(sel.sha256 == kHash);
    CHECK(sel.script == "/opt/report.py");
    CHECK(sel.script_sha256 == std::string(64, 'b'));
    REQUIRE(sel.argv);
    CHECK(sel.argv->prefix);
    CHECK(sel.argv->args == std::vector<std::string>{"python3", "/opt/report.py"});
    CHECK(sel.uid == 4294967294u);
    CHECK(sel.gid == 0u);
    CHECK(sel.cgroup == "/");
    const auto& cron = out.policy->workloads[1].selectors;
    REQUIRE(cron.argv);
    CHECK_FALSE(cron.argv->prefix);
    CHECK_FALSE(cron.exe);
    CHECK_FALSE(cron.uid);
}

TEST_CASE("an argv that encodes to exactly KW_ARGV_MAX bytes is accepted") {
    json doc = base_policy();
    selectors(doc)["argv"] = {std::string(200, 'x'), std::string(54, 'y')};  // 201 + 55 = 256
    ParseOutcome out = parse_policy(doc.dump());
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->workloads[0].selectors.argv->args.size() == 2);
}

TEST_CASE("IPv4 CIDRs are stored v4-mapped with the prefix length in the 128-bit space") {
    ParseOutcome out = parse_policy(R"({
      "version": 1, "trust_domain": "example.org",
      "destinations": [ { "name": "d", "cidrs": ["10.1.0.0/16", "192.168.1.7", "::1", "::ffff:10.0.0.0/104"],
                          "ports": [53, 5353], "protocol": "udp" } ],
      "rules": [ { "from": "*", "to": "d" } ]
    })");
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    const auto& d = out.policy->destinations.at(0);
    CHECK(d.protocol == Protocol::Udp);
    CHECK(d.ports == std::vector<uint16_t>{53, 5353});
    REQUIRE(d.cidrs.size() == 4);

    std::array<uint8_t, 16> v4_mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 0};
    CHECK(d.cidrs[0].addr == v4_mapped);
    CHECK(d.cidrs[0].prefix_len == 112);
    CHECK(d.cidrs[0].v4);
    CHECK(d.cidrs[0].text == "10.1.0.0/16");

    CHECK(d.cidrs[1].prefix_len == 128);  // a bare IPv4 address is a /32
    CHECK(d.cidrs[1].addr[15] == 7);

    std::array<uint8_t, 16> loopback{};
    loopback[15] = 1;
    CHECK(d.cidrs[2].addr == loopback);
    CHECK(d.cidrs[2].prefix_len == 128);
    CHECK_FALSE(d.cidrs[2].v4);

    CHECK(d.cidrs[3].prefix_len == 104);  // already v4-mapped, written as IPv6
    CHECK_FALSE(d.cidrs[3].v4);
    CHECK(d.cidrs[3].addr[12] == 10);
}

TEST_CASE("a destination without ports or protocol means every TCP port") {
    ParseOutcome out = parse_policy(R"({
      "version": 1, "trust_domain": "example.org",
      "destinations": [ { "name": "net", "cidrs": ["0.0.0.0/0"] } ],
      "rules": [ { "from": "*", "to": "net" } ]
    })");
    REQUIRE(out.policy);
    CHECK(out.policy->destinations[0].ports.empty());
    CHECK(out.policy->destinations[0].protocol == Protocol::Tcp);
    CHECK(out.policy->destinations[0].cidrs[0].prefix_len == 96);
}

TEST_CASE("several workload entries may share one SPIFFE ID") {
    ParseOutcome out = parse_policy(R"({
      "version": 1, "trust_domain": "example.org",
      "workloads": [
        { "id": "spiffe://example.org/web", "selectors": { "exe": "/usr/sbin/nginx" } },
        { "id": "spiffe://example.org/web", "selectors": { "exe": "/usr/sbin/apache2" } }
      ]
    })");
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->workloads.size() == 2);
}

TEST_CASE("mutual TLS destinations and listen ports are parsed, federated server identities included") {
    json doc = base_policy();
    doc["destinations"][0]["tls"] = "mutual";
    doc["destinations"][0]["identity"] = "spiffe://partner.org/db";
    doc["federation"] = {{{"trust_domain", "partner.org"}, {"bundle", "/etc/kwarden/partner.json"}}};
    doc["workloads"][0]["listen"] = {{{"port", 8443}, {"tls", "mutual"}}};
    ParseOutcome out = parse_policy(doc.dump());
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->destinations[0].tls == kw::core::Tls::Mutual);
    CHECK(out.policy->destinations[0].identity == "spiffe://partner.org/db");
    REQUIRE(out.policy->workloads[0].listen.size() == 1);
    CHECK(out.policy->workloads[0].listen[0].port == 8443);
    CHECK(out.policy->workloads[0].listen[0].tls == kw::core::Tls::Mutual);
}

TEST_CASE("svid_ttl and federation are parsed; an ID without svid_ttl gets the default") {
    json doc = base_policy();
    doc["workloads"][0]["svid_ttl"] = "15m";
    doc["workloads"].push_back({{"id", "spiffe://example.org/web"}, {"selectors", {{"exe", "/usr/sbin/nginx"}}}});
    doc["federation"] = {{{"trust_domain", "partner.org"}, {"bundle", "/etc/kwarden/partner.json"}}};
    ParseOutcome out = parse_policy(doc.dump());
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(kw::core::svid_ttl_of(*out.policy, "spiffe://example.org/billing") == std::chrono::minutes(15));
    CHECK(kw::core::svid_ttl_of(*out.policy, "spiffe://example.org/web") == kw::core::kDefaultSvidTtl);
    REQUIRE(out.policy->federation.size() == 1);
    CHECK(out.policy->federation[0].trust_domain == "partner.org");
    CHECK(out.policy->federation[0].bundle == "/etc/kwarden/partner.json");
}

TEST_CASE("allow_env is parsed into loader variable bits; without it no variable is allowed") {
    json doc = base_policy();
    doc["workloads"][0]["allow_env"] = {"LD_LIBRARY_PATH", "LD_AUDIT"};
    doc["workloads"].push_back({{"id", "spiffe://example.org/web"}, {"selectors", {{"exe", "/usr/sbin/nginx"}}}});
    doc["workloads"].push_back(
        {{"id", "spiffe://example.org/tool"}, {"selectors", {{"uid", 7}}}, {"allow_env", json::array()}});
    ParseOutcome out = parse_policy(doc.dump());
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->workloads[0].allow_env == (kw::core::kLdLibraryPath | kw::core::kLdAudit));
    CHECK(out.policy->workloads[1].allow_env == 0);
    CHECK(out.policy->workloads[2].allow_env == 0);
}

TEST_CASE("allow_debuggers keeps its entries in policy order; without it there is none") {
    json doc = base_policy();
    ParseOutcome plain = parse_policy(doc.dump());
    REQUIRE(plain.policy);
    CHECK(plain.policy->allow_debuggers.empty());

    doc["allow_debuggers"] = {"/usr/bin/strace", "spiffe://example.org/billing", "/usr/bin/gdb"};
    ParseOutcome out = parse_policy(doc.dump());
    INFO(all_problems(out.errors));
    REQUIRE(out.policy);
    CHECK(out.policy->allow_debuggers ==
          std::vector<std::string>{"/usr/bin/strace", "spiffe://example.org/billing", "/usr/bin/gdb"});
    CHECK(out.warnings.empty());
}

TEST_CASE("allowing LD_PRELOAD or LD_AUDIT is accepted with a warning, LD_LIBRARY_PATH alone without") {
    json doc = base_policy();
    doc["workloads"][0]["allow_env"] = {"LD_LIBRARY_PATH"};
    ParseOutcome quiet = parse_policy(doc.dump());
    REQUIRE(quiet.policy);
    CHECK(quiet.warnings.empty());

    doc["workloads"][0]["allow_env"] = {"LD_AUDIT", "LD_LIBRARY_PATH", "LD_PRELOAD"};
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.policy);
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].path == "/workloads/0/allow_env");
    CHECK(out.warnings[0].message ==
          "LD_PRELOAD and LD_AUDIT allowed: any process of this identity may run injected code");
}

TEST_CASE("a destination no rule mentions is accepted with a warning that it is refused") {
    json doc = base_policy();
    doc["destinations"].push_back({{"name", "web"}, {"cidrs", {"192.0.2.0/24"}}});
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.policy);
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].path == "/destinations/1");
    CHECK(out.warnings[0].message == "no rule allows any process to reach it: every connection to it is refused");
}

TEST_CASE("in audit mode the unused-destination warning says connections are recorded") {
    json doc = base_policy();
    doc["mode"] = "audit";
    doc["rules"] = json::array();
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.policy);
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].path == "/destinations/0");
    CHECK(out.warnings[0].message.find("recorded") != std::string::npos);
}

TEST_CASE("an exe selector on an interpreter alone is accepted with a warning") {
    json doc = base_policy();
    selectors(doc)["exe"] = "/usr/bin/python3.11";
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.policy);
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].path == "/workloads/0/selectors/exe");
    CHECK(out.warnings[0].message ==
          "exe selector on interpreter 'python3.11' alone hands the identity to any code it runs: add a script or "
          "argv selector");
}

TEST_CASE("a rule written twice is accepted with a warning that the copy has no effect") {
    json doc = base_policy();
    doc["rules"].push_back(doc["rules"][0]);
    ParseOutcome out = parse_policy(doc.dump());
    REQUIRE(out.policy);
    REQUIRE(out.warnings.size() == 1);
    CHECK(out.warnings[0].path == "/rules/1");
    CHECK(out.warnings[0].message == "same as /rules/0: it has no effect");
}

TEST_CASE("a policy file that cannot be read is one error naming the file and the reason") {
    ParseOutcome out = kw::core::load_policy_file("/nonexistent/kwarden/policy.json");
    CHECK_FALSE(out.policy);
    REQUIRE(out.errors.size() == 1);
    CHECK(out.errors[0].path == "");
    CHECK(out.errors[0].message ==
          "cannot read policy file '/nonexistent/kwarden/policy.json': No such file or directory");
}

TEST_CASE("a directory given as the policy file is refused with the reason") {
    ParseOutcome out = kw::core::load_policy_file("/");
    REQUIRE(out.errors.size() == 1);
    CHECK(out.errors[0].message == "cannot read policy file '/': Is a directory");
}
