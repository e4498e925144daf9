// SPIFFE ID parsing (see spiffe_id.h). The characters that would make an ID a general URI
// (query, fragment, port, userinfo, percent-encoding) get their own messages, since an
// operator who writes them usually meant a URL.
#include "core/spiffe_id.h"

#include <algorithm>

namespace kw::core {
namespace {

bool is_trust_domain_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool is_path_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

bool iequals(std::string_view a, std::string_view b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](char x, char y) { return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == y; });
}

// URI syntax that SPIFFE IDs forbid, checked over the whole ID after the scheme so the
// message names the URI feature rather than "a character outside ...".
Result<void> reject_uri_features(std::string_view rest, size_t path_start) {
    if (rest.find('?') != std::string_view::npos) return make_error("contains a query ('?'): SPIFFE IDs have none");
    if (rest.find('#') != std::string_view::npos) return make_error("contains a fragment ('#'): SPIFFE IDs have none");
    if (rest.find('%') != std::string_view::npos)
        return make_error("contains percent-encoding ('%'): SPIFFE IDs allow none");
    std::string_view authority = rest.substr(0, path_start);
    if (authority.find('@') != std::string_view::npos)
        return make_error("trust domain contains userinfo ('@'): SPIFFE IDs have none");
    if (authority.find(':') != std::string_view::npos)
        return make_error("trust domain contains a port (':'): SPIFFE IDs have none");
    return {};
}

Result<void> validate_path(std::string_view path) {
    if (path.empty()) return {};
    if (path.back() == '/') return make_error("path ends with '/': no trailing slash is allowed");
    size_t pos = 1;  // path[0] is the '/' that ended the trust domain
    while (pos <= path.size()) {
        size_t end = std::min(path.find('/', pos), path.size());
        std::string_view segment = path.substr(pos, end - pos);
        if (segment.empty()) return make_error("path contains an empty segment ('//')");
        if (segment == "." || segment == "..") return make_error("path contains a '.' or '..' segment");
        if (!std::all_of(segment.begin(), segment.end(), is_path_char))
            return make_error("path segment '" + std::string(segment) +
                              "' contains a character outside [a-zA-Z0-9._-]");
        pos = end + 1;
    }
    return {};
}

}  // namespace

Result<void> validate_trust_domain(std::string_view name) {
    if (name.empty()) return make_error("trust domain is empty");
    if (!std::all_of(name.begin(), name.end(), is_trust_domain_char))
        return make_error("trust domain contains a character outside [a-z0-9._-]");
    return {};
}

Result<SpiffeId> parse_spiffe_id(std::string_view text) {
    if (text.size() > kSpiffeIdMaxBytes)
        return make_error("is " + std::to_string(text.size()) + " bytes long; the limit is " +
                          std::to_string(kSpiffeIdMaxBytes));
    if (!text.starts_with(kSpiffeScheme)) {
        if (text.size() >= kSpiffeScheme.size() && iequals(text.substr(0, kSpiffeScheme.size()), kSpiffeScheme))
            return make_error("scheme must be lowercase 'spiffe://'");
        return make_error("scheme must be 'spiffe://'");
    }
    std::string_view rest = text.substr(kSpiffeScheme.size());
    size_t path_start = std::min(rest.find('/'), rest.size());
    if (auto uri = reject_uri_features(rest, path_start); !uri) return uri.error();

    std::string_view trust_domain = rest.substr(0, path_start);
    if (auto td = validate_trust_domain(trust_domain); !td) return td.error();
    std::string_view path = rest.substr(path_start);
    if (auto p = validate_path(path); !p) return p.error();
    return SpiffeId{std::string(trust_domain), std::string(path)};
}

}  // namespace kw::core
