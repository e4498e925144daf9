// Policy parsing and validation (see policy.h). The schema is strict: an unknown field, a
// wrong type or a value outside its rule is an error, because a policy that silently means
// less than its author wrote is a hole. Every problem is collected, not just the first.
#include "core/policy.h"

#include <arpa/inet.h>
#include <fcntl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <system_error>

#include <nlohmann/json.hpp>

#include "abi.h"
#include "core/container_match.h"
#include "core/lint.h"
#include "core/json_field.h"
#include "core/duration.h"
#include "core/prefix.h"
#include "core/sha256.h"
#include "core/spiffe_id.h"
#include "core/tls_suite.h"
#include "core/proc_facts.h"
#include "core/unique_fd.h"

namespace kw::core {
namespace {

using json = nlohmann::json;

// A policy is a few kilobytes; this only stops a mistaken path (/dev/zero) from hanging.
constexpr size_t kPolicyFileMaxBytes = 16 << 20;
constexpr uint64_t kMaxId = 4294967294;  // uid/gid: 4294967295 is (uid_t)-1, "no id"

constexpr std::array<std::string_view, 10> kPolicyFields = {
    "version", "trust_domain", "mode",       "log_allowed",    "lifecycle_events",
    "workloads", "destinations", "rules", "federation", "allow_debuggers"};
constexpr std::array<std::string_view, 8> kWorkloadFields = {
    "id", "selectors", "svid_ttl", "listen", "allow_env", "allow_code", "allow_raw_sockets", "allow_core_dumps"};
constexpr std::array<std::string_view, 2> kListenFields = {"port", "tls"};
constexpr std::array<std::string_view, 2> kFederationFields = {"trust_domain", "bundle"};
constexpr std::array<std::string_view, 10> kSelectorFields = {
    "exe", "sha256", "script", "script_sha256", "argv", "argv_prefix", "uid", "gid", "cgroup", "container"};
constexpr std::array<std::string_view, 4> kContainerFields = {"image", "name", "pod_namespace", "pod_name"};
constexpr std::array<std::string_view, 8> kDestinationFields = {
    "name", "cidrs", "ports", "protocol", "tls", "identity", "tls_cipher", "lifecycle_events"};
constexpr std::array<std::string_view, 2> kRuleFields = {"from", "to"};

std::string pointer_token(std::string_view key) {
    std::string out;
    for (char c : key) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

std::string at(const std::string& path, std::string_view key) { return path + "/" + pointer_token(key); }
std::string at(const std::string& path, size_t index) { return path + "/" + std::to_string(index); }

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

// The family ("PYTHON*") a variable NAME belongs to, as the kernel would count it.
const CodeEnvVarName* family_of(std::string_view name) {
    if (name.find('=') != std::string_view::npos) return nullptr;
    uint32_t bit = code_env_var(std::string(name) + "=");
    for (const CodeEnvVarName& v : kCodeEnvVars)
        if (v.var == bit && v.name.ends_with('*')) return &v;
    return nullptr;
}

// "LD_PRELOAD", "LD_AUDIT", ... : what allow_env accepts, for its error messages.
std::string code_env_var_list() {
    std::string out;
    for (const CodeEnvVarName& v : kCodeEnvVars) out += (out.empty() ? "\"" : ", \"") + std::string(v.name) + "\"";
    return out;
}

// Deeper than any policy field (the deepest, an argv item, is at 5): nothing valid is
// refused, and the path an error names, built for each duplicate key, stays short.
constexpr size_t kMaxNesting = 32;
// Duplicate keys listed one by one; the others are counted, so that the errors of a hostile
// document stay as small as it is.
constexpr size_t kMaxDuplicatesListed = 20;

// Reads the policy's JSON document in one pass: nlohmann's DOM parser builds it, and this
// follows the parser's events for what the document cannot show afterwards. nlohmann
// keeps the last of duplicate keys, other JSON readers the first: a policy whose meaning
// depends on the reader is refused, each duplicate named by its JSON pointer.
class DocumentReader {
public:
    explicit DocumentReader(json& doc) : dom_(doc) {}

    bool null() { return dom_.null() && next_element(); }
    bool boolean(bool v) { return dom_.boolean(v) && next_element(); }
    bool number_integer(json::number_integer_t v) { return dom_.number_integer(v) && next_element(); }
    bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v) && next_element(); }
    bool number_float(json::number_float_t v, const json::string_t& s) {
        return dom_.number_float(v, s) && next_element();
    }
    bool string(json::string_t& v) { return dom_.string(v) && next_element(); }
    bool binary(json::binary_t& v) { return dom_.binary(v) && next_element(); }
    bool start_object(size_t n) { return open(false) && dom_.start_object(n); }
    bool start_array(size_t n) { return open(true) && dom_.start_array(n); }
    bool end_object() { return close() && dom_.end_object(); }
    bool end_array() { return close() && dom_.end_array(); }
    bool key(json::string_t& k) {
        Frame& top = frames_.back();
        top.key = k;
        if (!top.keys.insert(k).second && ++duplicates_ <= kMaxDuplicatesListed)
            found_.push_back({at(container_pointer(), k),
                             "duplicate key " + in_quotes(k) + ": JSON readers disagree on which one counts"});
        return dom_.key(k);
    }
    template <typename Exception>
    bool parse_error(size_t position, const std::string& token, const Exception& e) {
        return dom_.parse_error(position, token, e);  // throws e
    }

    // Problems found, in document order; call once parsing is done.
    std::vector<PolicyProblem> problems() {
        if (duplicates_ > kMaxDuplicatesListed)
            found_.push_back({"", std::to_string(duplicates_ - kMaxDuplicatesListed) +
                                     " more duplicate keys, not listed: JSON readers disagree on which one counts"});
        return std::move(found_);
    }

private:
    struct Frame {
        bool array;
        size_t index = 0;
        std::string key;
        std::set<std::string> keys;
    };

    bool open(bool array) {
        if (frames_.size() == kMaxNesting) {
            found_.push_back({container_pointer(), "nested deeper than " + std::to_string(kMaxNesting) +
                                                      " levels, which no policy field is"});
            return false;  // the parse stops here
        }
        frames_.push_back(Frame{array});
        return true;
    }

    bool close() {
        frames_.pop_back();
        return next_element();
    }

    bool next_element() {
        if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
        return true;
    }

    // Pointer to the innermost open container: each frame's current key or index locates
    // the frame above it.
    std::string container_pointer() const {
        std::string out;
        for (size_t i = 0; i + 1 < frames_.size(); ++i) {
            out += '/';
            out += frames_[i].array ? std::to_string(frames_[i].index) : pointer_token(frames_[i].key);
        }
        return out;
    }

    nlohmann::detail::json_sax_dom_parser<json> dom_;
    std::vector<Frame> frames_;
    std::vector<PolicyProblem> found_;
    size_t duplicates_ = 0;
};

// A path to a file as the kernel will see it at exec: absolute and normalised, so that the
// path the operator reads is the file that gets pinned.
std::optional<std::string> absolute_path_problem(std::string_view path, bool root_allowed) {
    if (path.empty() || path.front() != '/') return "must be an absolute path (start with '/')";
    if (path == "/") {
        if (root_allowed) return std::nullopt;
        return "must name a file, not '/'";
    }
    if (path.back() == '/') return "must not end with '/'";
    size_t pos = 1;
    while (pos <= path.size()) {
        size_t end = std::min(path.find('/', pos), path.size());
        std::string_view component = path.substr(pos, end - pos);
        if (component.empty() || component == "." || component == "..")
            return "must be normalised: no empty, '.' or '..' component";
        pos = end + 1;
    }
    return std::nullopt;
}

bool is_sha256_hex(std::string_view s) {
    return s.size() == 64 &&
           std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool is_destination_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
}

std::string format_prefix(const Addr16& addr, unsigned prefix_len, bool v4) {
    char buf[INET6_ADDRSTRLEN];
    if (v4)
        inet_ntop(AF_INET, addr.data() + 12, buf, sizeof buf);
    else
        inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(v4 ? prefix_len - 96 : prefix_len);
}

Result<Cidr> parse_cidr(const std::string& text) {
    size_t slash = text.find('/');
    std::string addr_text = text.substr(0, slash);
    Cidr cidr;
    cidr.text = text;
    unsigned max_len = 128;
    in_addr v4;
    if (inet_pton(AF_INET, addr_text.c_str(), &v4) == 1) {
        cidr.v4 = true;
        cidr.addr[10] = cidr.addr[11] = 0xff;
        std::copy_n(reinterpret_cast<const uint8_t*>(&v4), 4, cidr.addr.begin() + 12);
        max_len = 32;
    } else if (inet_pton(AF_INET6, addr_text.c_str(), cidr.addr.data()) != 1) {
        return make_error(in_quotes(addr_text) + " is not an IPv4 or IPv6 address");
    }
    unsigned len = max_len;
    if (slash != std::string::npos) {
        std::string_view digits = std::string_view(text).substr(slash + 1);
        bool decimal = !digits.empty() && digits.size() <= 3 &&
                       std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
                       (digits.size() == 1 || digits.front() != '0');
        if (decimal) len = static_cast<unsigned>(std::stoul(std::string(digits)));
        if (!decimal || len > max_len)
            return make_error("prefix length must be a number from 0 to " + std::to_string(max_len));
    }
    cidr.prefix_len = static_cast<uint8_t>((cidr.v4 ? 96 : 0) + len);
    Addr16 network = mask_prefix(cidr.addr, cidr.prefix_len);
    if (network != cidr.addr)
        return make_error("host bits set: did you mean " + format_prefix(network, cidr.prefix_len, cidr.v4) + "?");
    return cidr;
}

class PolicyReader {
public:
    Policy read(const json& doc) {
        Policy policy;
        if (!doc.is_object()) {
            error("", "must be a JSON object");
            return policy;
        }
        check_fields(doc, "", kPolicyFields);
        if (const json* v = required(doc, "", "version")) read_version(*v);
        if (const json* v = required(doc, "", "trust_domain")) {
            if (auto td = string_at(*v, "/trust_domain")) {
                if (auto valid = validate_trust_domain(*td); valid)
                    policy.trust_domain = trust_domain_ = *td;
                else
                    error("/trust_domain", valid.message());
            }
        }
        if (const json* v = field(doc, "mode")) {
            if (auto mode = string_at(*v, "/mode")) {
                if (*mode == "enforce")
                    policy.mode = Mode::Enforce;
                else if (*mode == "audit")
                    policy.mode = Mode::Audit;
                else
                    error("/mode", "must be \"enforce\" or \"audit\"");
            }
        }
        if (const json* v = field(doc, "log_allowed")) {
            if (v->is_boolean())
                policy.log_allowed = v->get<bool>();
            else
                error("/log_allowed", "must be true or false");
        }
        if (const json* v = field(doc, "lifecycle_events")) {
            if (v->is_boolean())
                policy.lifecycle_events = v->get<bool>();
            else
                error("/lifecycle_events", "must be true or false");
        }
        if (const json* v = field(doc, "workloads"))
            for_each_object(*v, "/workloads", [&](const json& w, const std::string& path) {
                policy.workloads.push_back(read_workload(w, path, policy.trust_domain));
            });
        if (const json* v = field(doc, "destinations"))
            for_each_object(*v, "/destinations", [&](const json& d, const std::string& path) {
                policy.destinations.push_back(read_destination(d, path));
            });
        if (const json* v = field(doc, "rules"))
            for_each_object(*v, "/rules", [&](const json& r, const std::string& path) {
                policy.rules.push_back(read_rule(r, path));
            });
        if (const json* v = field(doc, "federation"))
            for_each_object(*v, "/federation", [&](const json& f, const std::string& path) {
                policy.federation.push_back(read_federation(f, path, policy.trust_domain));
            });
        if (const json* v = field(doc, "allow_debuggers")) policy.allow_debuggers = read_allow_debuggers(*v);
        check_server_trust_domains(policy);
        check_peer_rules(policy);
        warn_about_unused_destinations(policy);
        return policy;
    }

    std::vector<PolicyProblem> errors;
    std::vector<PolicyProblem> warnings;

private:
    void error(std::string path, std::string message) { errors.push_back({std::move(path), std::move(message)}); }

    static const json* field(const json& obj, std::string_view key) {
        auto it = obj.find(key);
        return it == obj.end() ? nullptr : &*it;
    }

    const json* required(const json& obj, const std::string& path, std::string_view key) {
        const json* v = field(obj, key);
        if (!v) error(path, "missing required field " + in_quotes(key));
        return v;
    }

    void check_fields(const json& obj, const std::string& path, std::span<const std::string_view> known) {
        for (const auto& [key, value] : obj.items())
            if (std::find(known.begin(), known.end(), key) == known.end())
                error(at(path, key), "unknown field " + in_quotes(key));
    }

    std::optional<std::string> string_at(const json& v, const std::string& path) {
        if (!v.is_string()) {
            error(path, "must be a string");
            return std::nullopt;
        }
        std::string s = v.get<std::string>();
        if (s.find('\0') != std::string::npos) {
            error(path, "must not contain a NUL character");
            return std::nullopt;
        }
        return s;
    }

    std::optional<uint64_t> integer_at(const json& v, const std::string& path, uint64_t lo, uint64_t hi) {
        // nlohmann stores every non-negative integer as unsigned: anything else is negative,
        // fractional or not a number.
        if (v.is_number_unsigned()) {
            uint64_t value = v.get<uint64_t>();
            if (value >= lo && value <= hi) return value;
        }
        error(path, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
        return std::nullopt;
    }

    template <typename Fn>
    void for_each_object(const json& v, const std::string& path, Fn&& fn) {
        if (!v.is_array()) {
            error(path, "must be an array");
            return;
        }
        for (size_t i = 0; i < v.size(); ++i) {
            if (v[i].is_object())
                fn(v[i], at(path, i));
            else
                error(at(path, i), "must be an object");
        }
    }

    void read_version(const json& v) {
        if (!v.is_number_integer()) {
            error("/version", "must be an integer");
            return;
        }
        if (v != json(kPolicySchemaVersion))
            error("/version", "unsupported policy version " + json_text(v) + ": this agent reads version " +
                                  std::to_string(kPolicySchemaVersion));
    }

    Workload read_workload(const json& w, const std::string& path, const std::string& trust_domain) {
        Workload workload;
        check_fields(w, path, kWorkloadFields);
        if (const json* v = required(w, path, "id")) {
            std::string id_path = at(path, "id");
            if (auto text = string_at(*v, id_path)) {
                if (auto id = parse_spiffe_id(*text); !id)
                    error(id_path, id.message());
                else if (!trust_domain.empty() && id->trust_domain != trust_domain)
                    error(id_path, "belongs to trust domain " + in_quotes(id->trust_domain) +
                                       ", not the policy's trust domain " + in_quotes(trust_domain));
                else if (id->path.empty())
                    error(id_path, "names only the trust domain: a workload ID needs a path, e.g. spiffe://" +
                                       id->trust_domain + "/app");
                else
                    workload_ids_.insert(*text);
                workload.id = *text;
            }
        }
        if (const json* v = required(w, path, "selectors")) {
            std::string sel_path = at(path, "selectors");
            if (v->is_object())
                workload.selectors = read_selectors(*v, sel_path);
            else
                error(sel_path, "must be an object");
        }
        if (const json* v = field(w, "svid_ttl")) workload.svid_ttl = read_svid_ttl(*v, at(path, "svid_ttl"), workload.id);
        if (const json* v = field(w, "listen")) {
            std::set<uint16_t> ports;
            for_each_object(*v, at(path, "listen"), [&](const json& l, const std::string& lpath) {
                workload.listen.push_back(read_listen(l, lpath, ports));
            });
        }
        if (const json* v = field(w, "allow_env")) workload.allow_env = read_allow_env(*v, at(path, "allow_env"));
        workload.allow_raw_sockets = read_flag(w, path, "allow_raw_sockets");
        workload.allow_core_dumps = read_flag(w, path, "allow_core_dumps");
        if (const json* v = field(w, "allow_code")) workload.allow_code = read_allow_code(*v, at(path, "allow_code"));
        return workload;
    }

    // An optional boolean field of OBJ: absent is false.
    bool read_flag(const json& obj, const std::string& path, const char* name) {
        const json* v = field(obj, name);
        if (!v) return false;
        if (v->is_boolean()) return v->get<bool>();
        error(at(path, name), "must be true or false");
        return false;
    }


    // Files the loader, dlopen or an interpreter may map executable under the identity,
    // besides the pinned closure; existence is the compiler's concern (a warning).
    std::vector<std::string> read_allow_code(const json& v, const std::string& path) {
        std::vector<std::string> paths;
        if (!v.is_array()) {
            error(path, "must be an array of absolute paths (files or directories)");
            return paths;
        }
        std::map<std::string, std::string> seen;  // entry -> JSON path
        for (size_t i = 0; i < v.size(); ++i) {
            std::string item_path = at(path, i);
            auto text = string_at(v[i], item_path);
            if (!text) continue;
            if (auto problem = absolute_path_problem(*text, false)) {
                error(item_path, in_quotes(*text) + " " + *problem);
                continue;
            }
            if (auto [it, inserted] = seen.emplace(*text, item_path); !inserted) {
                error(item_path, "duplicate of " + it->second);
                continue;
            }
            paths.push_back(*text);
        }
        return paths;
    }

    // Each code-loading variable lets code the pinned files do not contain run under the
    // identity: the list names exactly which ones (families by their "PREFIX*" name),
    // nothing else.
    uint32_t read_allow_env(const json& v, const std::string& path) {
        uint32_t vars = 0;
        if (!v.is_array()) {
            error(path, "must be an array of strings");
            return vars;
        }
        for (size_t i = 0; i < v.size(); ++i) {
            std::string item_path = at(path, i);
            auto name = string_at(v[i], item_path);
            if (!name) continue;
            auto known = std::find_if(kCodeEnvVars.begin(), kCodeEnvVars.end(),
                                      [&](const CodeEnvVarName& l) { return l.name == *name; });
            if (known == kCodeEnvVars.end() && family_of(*name))
                error(item_path, in_quotes(*name) + " is one of the family \"" + std::string(family_of(*name)->name) +
                                     "\": allow the family by that name");
            else if (known == kCodeEnvVars.end())
                error(item_path, "unknown code-loading variable " + in_quotes(*name) + ": must be one of " +
                                     code_env_var_list());
            else if (vars & known->var)
                error(item_path, "duplicate code-loading variable " + in_quotes(*name));
            else
                vars |= known->var;
        }
        return vars;
    }

    // A debugger is named by the identity it runs under (a workload's SPIFFE ID: the kernel
    // knows no other) or by its executable. Read after the workloads, whose IDs it checks.
    std::vector<std::string> read_allow_debuggers(const json& v) {
        const std::string path = "/allow_debuggers";
        std::vector<std::string> debuggers;
        if (!v.is_array()) {
            error(path, "must be an array of strings");
            return debuggers;
        }
        std::map<std::string, std::string> seen;  // entry -> JSON path
        for (size_t i = 0; i < v.size(); ++i) {
            std::string item_path = at(path, i);
            auto text = string_at(v[i], item_path);
            if (!text) continue;
            if (text->starts_with('/')) {
                if (auto problem = absolute_path_problem(*text, false)) {
                    error(item_path, *problem);
                    continue;
                }
            } else if (auto id = parse_spiffe_id(*text); !id) {
                error(item_path, id.message() + " (or the absolute path of a debugger's executable)");
                continue;
            } else if (!workload_ids_.contains(*text)) {
                error(item_path, "no workload has this SPIFFE ID: no process can carry it");
                continue;
            }
            if (auto [it, inserted] = seen.emplace(*text, item_path); !inserted) {
                error(item_path, "duplicate of " + it->second);
                continue;
            }
            debuggers.push_back(*text);
        }
        return debuggers;
    }

    // EARLIER: the ports of this workload's earlier listen entries.
    Listen read_listen(const json& l, const std::string& path, std::set<uint16_t>& earlier) {
        Listen listen;
        check_fields(l, path, kListenFields);
        if (const json* v = required(l, path, "port")) {
            if (auto port = integer_at(*v, at(path, "port"), 1, 65535)) {
                listen.port = static_cast<uint16_t>(*port);
                if (!earlier.insert(listen.port).second)
                    error(at(path, "port"), "duplicate listen port " + std::to_string(*port));
            }
        }
        if (const json* v = required(l, path, "tls")) listen.tls = read_tls(*v, at(path, "tls"));
        return listen;
    }

    Tls read_tls(const json& v, const std::string& path) {
        auto text = string_at(v, path);
        if (text && *text == "mutual") return Tls::Mutual;
        if (text) error(path, "must be \"mutual\" (the only TLS mode kwarden runs)");
        return Tls::None;
    }

    // One ID has one SVID: entries that share an ID must not ask for different lifetimes.
    std::optional<std::chrono::seconds> read_svid_ttl(const json& v, const std::string& path, const std::string& id) {
        auto text = string_at(v, path);
        if (!text) return std::nullopt;
        auto ttl = parse_duration(*text);
        if (!ttl) {
            error(path, ttl.message());
            return std::nullopt;
        }
        if (*ttl < kMinSvidTtl || *ttl > kMaxSvidTtl) {
            error(path, "must be from " + format_duration(kMinSvidTtl) + " to " + format_duration(kMaxSvidTtl));
            return std::nullopt;
        }
        auto [it, inserted] = svid_ttls_.emplace(id, std::pair{*ttl, path});
        if (!inserted && it->second.first != *ttl)
            error(path, "differs from " + it->second.second + ", which sets the svid_ttl of the same ID " +
                            in_quotes(id));
        return *ttl;
    }

    Federation read_federation(const json& f, const std::string& path, const std::string& own_trust_domain) {
        Federation fed;
        check_fields(f, path, kFederationFields);
        if (const json* v = required(f, path, "trust_domain")) {
            std::string td_path = at(path, "trust_domain");
            if (auto td = string_at(*v, td_path)) {
                if (auto valid = validate_trust_domain(*td); !valid)
                    error(td_path, valid.message());
                else if (*td == own_trust_domain)
                    error(td_path, "is the policy's own trust domain: its bundle is the agent's CA, not a file");
                else if (auto [it, inserted] = federation_paths_.emplace(*td, path); !inserted)
                    error(td_path, "duplicate trust domain " + in_quotes(*td) + " (also " + it->second +
                                       "): one bundle per trust domain, never merged");
                fed.trust_domain = *td;
            }
        }
        if (const json* v = required(f, path, "bundle")) {
            if (auto file = file_path_at(*v, at(path, "bundle"))) fed.bundle = *file;
        }
        return fed;
    }

    std::optional<std::string> file_path_at(const json& v, const std::string& path) {
        auto text = string_at(v, path);
        if (!text) return std::nullopt;
        if (auto problem = absolute_path_problem(*text, false)) {
            error(path, *problem);
            return std::nullopt;
        }
        return text;
    }

    // A file may be named by several workloads but has one content: two different pinned
    // hashes for one path would leave one of them unsatisfiable.
    std::optional<std::string> hash_at(const json& v, const std::string& path, const std::optional<std::string>& file) {
        auto hash = string_at(v, path);
        if (!hash) return std::nullopt;
        if (!is_sha256_hex(*hash)) {
            error(path, "must be 64 lowercase hex characters (a SHA-256 digest)");
            return std::nullopt;
        }
        if (file) {
            auto [it, inserted] = file_hashes_.emplace(*file, std::pair{*hash, path});
            if (!inserted && it->second.first != *hash)
                error(path, "differs from " + it->second.second + ", which pins the same file " + in_quotes(*file));
        }
        return hash;
    }

    Selectors read_selectors(const json& s, const std::string& path) {
        check_fields(s, path, kSelectorFields);
        if (std::none_of(kSelectorFields.begin(), kSelectorFields.end(),
                         [&](std::string_view k) { return s.contains(k); }))
            error(path, "at least one selector is required: an empty set would match every process");

        Selectors sel;
        if (const json* v = field(s, "exe")) sel.exe = file_path_at(*v, at(path, "exe"));
        if (const json* v = field(s, "sha256")) {
            sel.sha256 = hash_at(*v, at(path, "sha256"), sel.exe);
            if (!s.contains("exe")) error(at(path, "sha256"), "pins the exe's content: it needs an exe selector");
        }
        if (const json* v = field(s, "script")) sel.script = file_path_at(*v, at(path, "script"));
        if (const json* v = field(s, "script_sha256")) {
            sel.script_sha256 = hash_at(*v, at(path, "script_sha256"), sel.script);
            if (!s.contains("script"))
                error(at(path, "script_sha256"), "pins the script's content: it needs a script selector");
        }
        if (s.contains("argv") && s.contains("argv_prefix"))
            error(at(path, "argv_prefix"), "argv and argv_prefix are mutually exclusive: use one");
        if (const json* v = field(s, "argv")) sel.argv = read_argv(*v, at(path, "argv"), false);
        if (const json* v = field(s, "argv_prefix")) sel.argv = read_argv(*v, at(path, "argv_prefix"), true);
        if (const json* v = field(s, "uid")) {
            if (auto id = integer_at(*v, at(path, "uid"), 0, kMaxId)) sel.uid = static_cast<uint32_t>(*id);
        }
        if (const json* v = field(s, "gid")) {
            if (auto id = integer_at(*v, at(path, "gid"), 0, kMaxId)) sel.gid = static_cast<uint32_t>(*id);
        }
        if (const json* v = field(s, "cgroup")) {
            std::string cg_path = at(path, "cgroup");
            if (auto text = string_at(*v, cg_path)) {
                if (auto problem = absolute_path_problem(*text, true))
                    error(cg_path, *problem);
                else
                    sel.cgroup = *text;
            }
        }
        if (const json* v = field(s, "container")) sel.container = read_container(*v, at(path, "container"));
        return sel;
    }

    std::optional<ContainerSelector> read_container(const json& c, const std::string& path) {
        if (!c.is_object()) {
            error(path, "must be an object (image, name, pod_namespace, pod_name)");
            return std::nullopt;
        }
        check_fields(c, path, kContainerFields);
        ContainerSelector sel;
        auto text = [&](std::string_view key, std::optional<std::string>& out) {
            const json* v = field(c, std::string(key));
            if (!v) return;
            std::string p = at(path, std::string(key));
            auto t = string_at(*v, p);
            if (!t) return;
            if (t->empty() || t->size() > 4096 ||
                std::any_of(t->begin(), t->end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20; }))
                error(p, "must be 1 to 4096 characters, none of them a control character");
            else
                out = *t;
        };
        text("image", sel.image);
        if (sel.image) {
            if (auto problem = image_reference_problem(*sel.image)) error(at(path, "image"), *problem);
        }
        text("name", sel.name);
        text("pod_namespace", sel.pod_namespace);
        text("pod_name", sel.pod_name);
        if (std::none_of(kContainerFields.begin(), kContainerFields.end(),
                         [&](std::string_view k) { return c.contains(k); }))
            error(path, "names no container: give at least one of image, name, pod_namespace, pod_name");
        return sel;
    }

    std::optional<ArgvSelector> read_argv(const json& v, const std::string& path, bool prefix) {
        if (!v.is_array()) {
            error(path, "must be an array of strings");
            return std::nullopt;
        }
        if (v.empty()) {
            error(path, "must list at least one argument");
            return std::nullopt;
        }
        ArgvSelector argv{{}, prefix};
        size_t encoded = 0;
        for (size_t i = 0; i < v.size(); ++i) {
            if (auto arg = string_at(v[i], at(path, i))) {
                encoded += arg->size() + 1;
                argv.args.push_back(std::move(*arg));
            }
        }
        if (encoded > KW_ARGV_MAX) {
            error(path, "encodes to " + std::to_string(encoded) +
                            " bytes (each argument plus its NUL); the kernel compares at most " +
                            std::to_string(KW_ARGV_MAX) + " (KW_ARGV_MAX)");
            return std::nullopt;
        }
        return argv;
    }

    Destination read_destination(const json& d, const std::string& path) {
        Destination dest;
        check_fields(d, path, kDestinationFields);
        if (const json* v = required(d, path, "name")) {
            std::string name_path = at(path, "name");
            if (auto name = string_at(*v, name_path)) {
                if (!is_destination_name(*name)) {
                    error(name_path, "must match [A-Za-z0-9._-]+");
                } else if (auto [it, inserted] = destination_paths_.emplace(*name, path); !inserted) {
                    error(name_path, "duplicate destination name " + in_quotes(*name) + " (also " + it->second + ")");
                }
                dest.name = *name;
            }
        }
        if (const json* v = required(d, path, "cidrs")) dest.cidrs = read_cidrs(*v, at(path, "cidrs"));
        if (const json* v = field(d, "ports")) dest.ports = read_ports(*v, at(path, "ports"));
        if (const json* v = field(d, "protocol")) {
            std::string proto_path = at(path, "protocol");
            if (auto proto = string_at(*v, proto_path)) {
                if (*proto == "tcp")
                    dest.protocol = Protocol::Tcp;
                else if (*proto == "udp")
                    dest.protocol = Protocol::Udp;
                else
                    error(proto_path, "must be \"tcp\" or \"udp\"");
            }
        }
        if (const json* v = field(d, "tls")) {
            dest.tls = read_tls(*v, at(path, "tls"));
            if (dest.tls == Tls::Mutual && dest.protocol != Protocol::Tcp)
                error(at(path, "tls"), "mutual TLS needs protocol \"tcp\"");
            if (dest.tls == Tls::Mutual && !d.contains("identity"))
                error(path, "missing required field 'identity': the SPIFFE ID the server must present");
        }
        if (const json* v = field(d, "identity")) {
            std::string id_path = at(path, "identity");
            if (!d.contains("tls")) error(id_path, "names the server's identity for mutual TLS: it needs \"tls\": \"mutual\"");
            if (auto text = string_at(*v, id_path)) {
                if (auto id = parse_spiffe_id(*text); !id)
                    error(id_path, id.message());
                else if (id->path.empty())
                    error(id_path, "names only the trust domain: a server identity needs a path");
                else
                    server_identities_.emplace(id->trust_domain, id_path);
                dest.identity = *text;
            }
        }
        if (const json* v = field(d, "lifecycle_events")) {
            if (v->is_boolean())
                dest.lifecycle_events = v->get<bool>();
            else
                error(at(path, "lifecycle_events"), "must be true or false");
        }
        if (const json* v = field(d, "tls_cipher")) {
            std::string suite_path = at(path, "tls_cipher");
            if (!d.contains("tls")) error(suite_path, "requires a suite of the mutual TLS handshake: it needs \"tls\": \"mutual\"");
            if (auto text = string_at(*v, suite_path)) {
                if (auto suite = parse_tls_suite(*text); !suite)
                    error(suite_path, suite.message());
                else
                    dest.tls_cipher = *suite;
            }
        }
        return dest;
    }

    std::vector<Cidr> read_cidrs(const json& v, const std::string& path) {
        std::vector<Cidr> cidrs;
        if (!v.is_array()) {
            error(path, "must be an array of strings");
            return cidrs;
        }
        if (v.empty()) error(path, "must list at least one CIDR");
        for (size_t i = 0; i < v.size(); ++i) {
            std::string cidr_path = at(path, i);
            auto text = string_at(v[i], cidr_path);
            if (!text) continue;
            if (auto cidr = parse_cidr(*text))
                cidrs.push_back(std::move(*cidr));
            else
                error(cidr_path, cidr.message());
        }
        return cidrs;
    }

    std::vector<uint16_t> read_ports(const json& v, const std::string& path) {
        std::vector<uint16_t> ports;
        if (!v.is_array()) {
            error(path, "must be an array of port numbers");
            return ports;
        }
        std::vector<bool> seen(65536);
        for (size_t i = 0; i < v.size(); ++i) {
            auto port = integer_at(v[i], at(path, i), 1, 65535);
            if (!port) continue;
            if (seen[*port])
                error(at(path, i), "duplicate port " + std::to_string(*port));
            else
                ports.push_back(static_cast<uint16_t>(*port));
            seen[*port] = true;
        }
        return ports;
    }

    Rule read_rule(const json& r, const std::string& path) {
        Rule rule;
        std::string peer_td;
        check_fields(r, path, kRuleFields);
        if (const json* v = required(r, path, "from")) {
            std::string from_path = at(path, "from");
            if (auto from = string_at(*v, from_path)) {
                if (*from != "*") {
                    if (auto id = parse_spiffe_id(*from); !id)
                        error(from_path, id.message() + " (or use \"*\" for every process)");
                    else if (!workload_ids_.contains(*from) && !trust_domain_.empty() &&
                             id->trust_domain != trust_domain_)
                        peer_td = id->trust_domain;  // checked once "federation" is read
                    else if (!workload_ids_.contains(*from))
                        error(from_path, "no workload has this SPIFFE ID");
                }
                rule.from = *from;
            }
        }
        if (const json* v = required(r, path, "to")) {
            std::string to_path = at(path, "to");
            if (auto to = string_at(*v, to_path)) {
                if (!destination_paths_.contains(*to)) error(to_path, "no destination named " + in_quotes(*to));
                rule.to = *to;
            }
        }
        if (!peer_td.empty()) peer_rules_.push_back({peer_td, path, rule.to});
        auto [it, inserted] = rule_paths_.emplace(std::pair{rule.from, rule.to}, path);
        if (!inserted) warnings.push_back({path, "same as " + it->second + ": it has no effect"});
        return rule;
    }

    // A server identity must be of a trust domain whose bundle we hold: ours or federated.
    void check_server_trust_domains(const Policy& policy) {
        for (const auto& [td, path] : server_identities_) {
            if (td == policy.trust_domain || policy.trust_domain.empty()) continue;
            if (!federation_paths_.contains(td))
                error(path, "trust domain " + in_quotes(td) + " is neither the policy's nor in \"federation\": no bundle could verify this server");
        }
    }

    // A rule from a peer of another trust domain: no process here carries that identity,
    // so the rule can only admit the peer to an enrolled server of ours, through a
    // mutual-TLS destination naming that server; and only a federated bundle verifies it.
    void check_peer_rules(const Policy& policy) {
        for (const PeerRule& peer : peer_rules_) {
            const std::string& td = peer.trust_domain;
            std::string from_path = at(peer.path, "from");
            bool federated = std::any_of(policy.federation.begin(), policy.federation.end(),
                                         [&](const Federation& f) { return f.trust_domain == td; });
            if (!federated) {
                error(from_path, "trust domain " + in_quotes(td) +
                                     " is neither the policy's nor in \"federation\": no bundle could verify this peer");
                continue;
            }
            auto dest = std::find_if(policy.destinations.begin(), policy.destinations.end(),
                                     [&](const Destination& d) { return d.name == peer.to; });
            if (dest == policy.destinations.end()) continue;  // reported at "to"
            auto server = parse_spiffe_id(dest->identity);
            if (dest->tls != Tls::Mutual || !server || server->trust_domain != policy.trust_domain)
                error(from_path, "a peer of federated trust domain " + in_quotes(td) +
                                     " is admitted only by an enrolled server of ours: \"to\" must name a \"tls\": "
                                     "\"mutual\" destination whose identity is of trust domain " +
                                     in_quotes(policy.trust_domain));
        }
    }

    void warn_about_unused_destinations(const Policy& policy) {
        std::set<std::string_view> used;
        for (const Rule& r : policy.rules) used.insert(r.to);
        for (size_t i = 0; i < policy.destinations.size(); ++i) {
            const std::string& name = policy.destinations[i].name;
            if (used.contains(name) || name.empty()) continue;
            warnings.push_back({at("/destinations", i),
                                policy.mode == Mode::Audit
                                    ? "no rule allows any process to reach it: every connection to it is "
                                      "recorded as a denial (audit mode)"
                                    : "no rule allows any process to reach it: every connection to it is refused"});
        }
    }

    std::string trust_domain_;                                  // the policy's, once read
    struct PeerRule {
        std::string trust_domain, path, to;
    };
    std::vector<PeerRule> peer_rules_;  // rules from peers of other trust domains
    std::set<std::string> workload_ids_;
    std::map<std::string, std::pair<std::chrono::seconds, std::string>> svid_ttls_;  // id -> (ttl, JSON path)
    std::map<std::string, std::string> federation_paths_;                          // trust domain -> JSON path
    std::multimap<std::string, std::string> server_identities_;                     // trust domain -> JSON path
    std::map<std::string, std::string> destination_paths_;                    // name -> JSON path
    std::map<std::string, std::pair<std::string, std::string>> file_hashes_;  // file -> (sha256, JSON path)
    std::map<std::pair<std::string, std::string>, std::string> rule_paths_;   // (from, to) -> JSON path
};

std::string without_exception_id(const std::string& what) {
    // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ..."
    size_t end = what.starts_with("[json.exception.") ? what.find("] ") : std::string::npos;
    return end == std::string::npos ? what : what.substr(end + 2);
}

Result<std::string> read_policy_text(const std::string& path) {
    auto failure = [&](int err) {
        return make_error("cannot read policy file " + in_quotes(path) + ": " +
                          std::error_code(err, std::generic_category()).message());
    };
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return failure(errno);
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return failure(errno);
        if (n == 0) return text;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kPolicyFileMaxBytes)
            return make_error("cannot read policy file " + in_quotes(path) + ": larger than " +
                              std::to_string(kPolicyFileMaxBytes >> 20) + " MiB, which no policy is");
    }
}

}  // namespace

std::chrono::seconds svid_ttl_of(const Policy& policy, const std::string& id) {
    for (const Workload& w : policy.workloads)
        if (w.id == id && w.svid_ttl) return *w.svid_ttl;
    return kDefaultSvidTtl;
}

ParseOutcome parse_policy(const std::string& text) {
    ParseOutcome out;
    json doc;
    DocumentReader document(doc);
    try {
        if (!json::sax_parse(text, &document)) {
            out.errors = document.problems();  // what stopped the parse is the last
            return out;
        }
    } catch (const json::parse_error& e) {
        out.errors.push_back(
            {"", "not valid JSON at byte " + std::to_string(e.byte) + ": " + without_exception_id(e.what())});
        return out;
    } catch (const json::exception& e) {
        out.errors.push_back({"", "not valid JSON: " + without_exception_id(e.what())});
        return out;
    }

    PolicyReader reader;
    Policy policy = reader.read(doc);
    out.errors = document.problems();
    out.errors.insert(out.errors.end(), reader.errors.begin(), reader.errors.end());
    out.warnings = std::move(reader.warnings);
    if (!out.errors.empty()) return out;

    for (auto& lint : lint_policy(policy)) out.warnings.push_back(std::move(lint));
    policy.revision = sha256_hex(text);
    out.policy = std::move(policy);
    return out;
}

ParseOutcome load_policy_file(const std::string& path) {
    auto text = read_policy_text(path);
    if (!text) {
        ParseOutcome out;
        out.errors.push_back({"", text.message()});
        return out;
    }
    return parse_policy(*text);
}

const std::string& default_policy_text() {
    // Kept byte-identical to policy/default.json (a unit test compares them).
    static const std::string text = R"json({
  "version": 1,
  "trust_domain": "kwarden.local",
  "mode": "enforce",
  "workloads": [
    {
      "id": "spiffe://kwarden.local/demo/client",
      "selectors": {
        "exe": "/usr/bin/curl",
        "argv": ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:7070/index.html"]
      }
    },
    {
      "id": "spiffe://kwarden.local/demo/files",
      "selectors": {
        "exe": "/usr/bin/python3",
        "argv_prefix": ["python3", "-m", "http.server", "7443", "--bind", "127.0.0.1"]
      },
      "listen": [{ "port": 7443, "tls": "mutual" }]
    },
    {
      "id": "spiffe://kwarden.local/demo/reader",
      "selectors": {
        "exe": "/usr/bin/curl",
        "argv": ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:7443/report.txt"]
      }
    }
  ],
  "destinations": [
    {
      "name": "demo-service",
      "cidrs": ["127.0.0.1/32", "::1/128"],
      "ports": [7070],
      "protocol": "tcp"
    },
    {
      "name": "demo-files",
      "cidrs": ["127.0.0.1/32"],
      "ports": [7443],
      "protocol": "tcp",
      "tls": "mutual",
      "identity": "spiffe://kwarden.local/demo/files"
    }
  ],
  "rules": [
    { "from": "spiffe://kwarden.local/demo/client", "to": "demo-service" },
    { "from": "spiffe://kwarden.local/demo/reader", "to": "demo-files" }
  ]
}
)json";
    return text;
}

}  // namespace kw::core
