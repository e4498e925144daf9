// The policy model: what an operator writes (policy/policy.schema.json), parsed and
// validated. Parsing never throws: it returns every problem it finds, each naming the
// JSON path and the rule broken.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace kw::core {

inline constexpr int kPolicySchemaVersion = 1;

// X.509-SVID lifetime: SPIRE's default, rotated at half-life; a workload
// may set its own with "svid_ttl".
inline constexpr std::chrono::seconds kDefaultSvidTtl{3600};
inline constexpr std::chrono::seconds kMinSvidTtl{2};
inline constexpr std::chrono::seconds kMaxSvidTtl{30 * 86400};

enum class Mode { Enforce, Audit };
enum class Protocol { Tcp, Udp };

struct Cidr {
    std::array<uint8_t, 16> addr{};  // IPv4 stored v4-mapped (::ffff:a.b.c.d)
    uint8_t prefix_len = 0;          // in the 128-bit space (v4 /n is 96 + n)
    bool v4 = false;
    std::string text;                // as written in the policy
};

struct ArgvSelector {
    std::vector<std::string> args;
    bool prefix = false;  // "argv_prefix": whole arguments, leading
};

// A container as its runtime started it, from what the runtime's annotations say
// (containerd's CRI plugin: io.kubernetes.cri.*). Each field given must equal the
// container's; a container whose runtime did not say is not selected.
struct ContainerSelector {
    // The image: a name ("registry.example/shop:1.4"), matched as the runtime says it, or
    // pinned by its manifest digest ("registry.example/shop@sha256:HEX"), matched only
    // when the runtime's name carries that digest (see image_selected).
    std::optional<std::string> image;
    std::optional<std::string> name;   // the container's name in its pod
    std::optional<std::string> pod_namespace;
    std::optional<std::string> pod_name;
};

struct Selectors {
    std::optional<std::string> exe;            // absolute path
    std::optional<std::string> sha256;         // pinned hash of exe (lowercase hex)
    std::optional<std::string> script;         // absolute path of a #! script
    std::optional<std::string> script_sha256;  // pinned hash of script
    std::optional<ArgvSelector> argv;
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    std::optional<std::string> cgroup;  // cgroup v2 path below the mount, starts with '/'
    // The process runs in a container the agent enrolled through the runtime's
    // seccomp-agent socket, and that container is this one.
    std::optional<ContainerSelector> container;
};

enum class Tls { None, Mutual };

// A port an enrolled server of this workload accepts on; with Tls::Mutual the agent
// handshakes every accepted connection before the app sees it.
struct Listen {
    uint16_t port = 0;
    Tls tls = Tls::None;
};

// Code-loading configuration in the environment: variables (a name ending in '*': every
// variable with that prefix) that make the loader, a shell or a language runtime run code
// the pinned files do not contain. An exec that sets one gets no identity unless its
// workload entry lists it in "allow_env" (bits of Workload::allow_env; the same values as
// the kernel's enum kw_env_var, asserted in compile.cpp; which strings set which is
// code_env_var() in proc_facts.h).
enum CodeEnvVar : uint32_t {
    kLdPreload = 1u << 0,
    kLdAudit = 1u << 1,
    kLdLibraryPath = 1u << 2,
    kLdOther = 1u << 3,
    kGlibcTunables = 1u << 4,
    kGconvPath = 1u << 5,
    kOpenssl = 1u << 6,
    kBashEnv = 1u << 7,
    kShEnv = 1u << 8,
    kBashFunc = 1u << 9,
    kShellopts = 1u << 10,
    kBashopts = 1u << 11,
    kPs4 = 1u << 12,
    kPython = 1u << 13,
    kPerl = 1u << 14,
    kNode = 1u << 15,
    kRubyopt = 1u << 16,
    kRubylib = 1u << 17,
    kJavaToolOptions = 1u << 18,
    kJavaOptions = 1u << 19,
    kJdkJavaOptions = 1u << 20,
    kClasspath = 1u << 21,
};
struct CodeEnvVarName {
    CodeEnvVar var;
    std::string_view name;  // as allow_env and events spell it
};
inline constexpr std::array<CodeEnvVarName, 22> kCodeEnvVars = {{
    {kLdPreload, "LD_PRELOAD"},
    {kLdAudit, "LD_AUDIT"},
    {kLdLibraryPath, "LD_LIBRARY_PATH"},
    {kLdOther, "LD_*"},
    {kGlibcTunables, "GLIBC_TUNABLES"},
    {kGconvPath, "GCONV_PATH"},
    {kOpenssl, "OPENSSL_*"},
    {kBashEnv, "BASH_ENV"},
    {kShEnv, "ENV"},
    {kBashFunc, "BASH_FUNC_*"},
    {kShellopts, "SHELLOPTS"},
    {kBashopts, "BASHOPTS"},
    {kPs4, "PS4"},
    {kPython, "PYTHON*"},
    {kPerl, "PERL*"},
    {kNode, "NODE_*"},
    {kRubyopt, "RUBYOPT"},
    {kRubylib, "RUBYLIB"},
    {kJavaToolOptions, "JAVA_TOOL_OPTIONS"},
    {kJavaOptions, "_JAVA_OPTIONS"},
    {kJdkJavaOptions, "JDK_JAVA_OPTIONS"},
    {kClasspath, "CLASSPATH"},
}};

struct Workload {
    std::string id;  // SPIFFE ID
    Selectors selectors;
    std::optional<std::chrono::seconds> svid_ttl;  // nullopt: kDefaultSvidTtl
    std::vector<Listen> listen;
    uint32_t allow_env = 0;  // CodeEnvVar bits; 0: no code-loading variable tolerated
    // "allow_raw_sockets": the workload's processes may open raw and packet sockets,
    // with which they reach any destination without connect().
    bool allow_raw_sockets = false;
    // "allow_core_dumps": a crash may write the workload's memory to a core file or a
    // core_pattern helper, and other processes may raise its core limit.
    bool allow_core_dumps = false;
    // "allow_code": files, or directories (each regular file directly inside), that the
    // workload's processes may map executable besides the exe, loader and libraries pinned
    // with it (plugins: NSS modules, interpreters' C extensions). Absolute, normalised.
    std::vector<std::string> allow_code;
};

// Another trust domain whose X.509-SVIDs we verify, with its own bundle file. Bundles of
// different trust domains are never merged.
struct Federation {
    std::string trust_domain;
    std::string bundle;  // absolute path of a SPIFFE bundle JSON file
};

struct Destination {
    std::string name;
    std::vector<Cidr> cidrs;
    std::vector<uint16_t> ports;  // empty: every port
    Protocol protocol = Protocol::Tcp;
    // Tls::Mutual: only the agent connects here, on behalf of enrolled processes, and the
    // server must present `identity` (a SPIFFE ID of our or a federated trust domain).
    Tls tls = Tls::None;
    std::string identity;
    uint16_t tls_cipher = 0;  // "tls_cipher": the one suite the server must pick (IANA number); 0 any
    // "lifecycle_events": an event when each allowed connection here is established and
    // when it closes (the policy's own field turns them on for every destination).
    bool lifecycle_events = false;
};

struct Rule {
    std::string from;  // SPIFFE ID, or "*" for every process, attested or not
    std::string to;    // destination name
};

struct Policy {
    int version = kPolicySchemaVersion;
    std::string trust_domain;
    Mode mode = Mode::Enforce;
    bool log_allowed = false;
    bool lifecycle_events = false;  // for every destination
    std::vector<Workload> workloads;
    std::vector<Destination> destinations;
    std::vector<Rule> rules;
    std::vector<Federation> federation;
    // "allow_debuggers": who may ptrace or read the memory of attested and enrolled
    // processes. Each entry is a SPIFFE ID of a workload ("spiffe://...") or the absolute
    // path of an executable, in policy order (events report the index). Empty: nobody.
    std::vector<std::string> allow_debuggers;
    std::string revision;  // sha256 (hex) of the policy text as loaded
};

struct PolicyProblem {
    std::string path;     // JSON pointer, e.g. "/workloads/0/selectors/exe"
    std::string message;  // the rule broken, e.g. "must be an absolute path"
    std::string to_string() const { return (path.empty() ? "/" : path) + ": " + message; }
};

struct ParseOutcome {
    std::optional<Policy> policy;          // set when there are no errors
    std::vector<PolicyProblem> errors;     // any error rejects the policy
    std::vector<PolicyProblem> warnings;   // accepted, but worth an operator's look
};

// The SVID lifetime of ID: the svid_ttl its workload entries give, or the default.
std::chrono::seconds svid_ttl_of(const Policy& policy, const std::string& id);

// Parses and validates policy JSON text. Never throws.
ParseOutcome parse_policy(const std::string& text);

// Reads FILE and parses it; a read failure is one error with an empty path.
ParseOutcome load_policy_file(const std::string& path);

// The policy built into the agent: what `make demo` and `kwarden agent` without
// --policy use.
const std::string& default_policy_text();

}  // namespace kw::core
