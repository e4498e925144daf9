// The admin socket protocol: JSON lines over a unix stream socket (mode 0600, root peers
// only, checked with SO_PEERCRED). One request per line; each gets one response line,
// except "events" with "follow": true, which streams event lines until the client
// closes. Documented in README ("Admin socket").
//
//   {"op":"status"}                         -> {"ok":true,"status":{...}}
//   {"op":"policy.apply","policy":"<text>"} -> {"ok":true,"revision":"...","warnings":[...]}
//                                           or {"ok":false,"error":"...","problems":[...]}
//   {"op":"events","follow":false}          -> recent event lines, then {"ok":true,"end":true}
//   {"op":"identity","pid":N}               -> {"ok":true,"spiffe_id":"...",...}
//   {"op":"svid.list"}                      -> {"ok":true,"trust_domain":"...","ca":"...","svids":[
//                                                {"spiffe_id","serial","not_before","not_after","rotate_at",
//                                                 "issued_at","ttl_seconds","sha256","certificate_pem",
//                                                 "intermediates_pem"}]}   (never a key)
//   {"op":"bundle.show"[,"trust_domain":"td"]} -> {"ok":true,"bundle":"<SPIFFE bundle JSON>"}
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/result.h"

namespace kw::io {

// Sends REQUEST to the agent at SOCKET_PATH and returns the first response line; for
// streaming requests, ON_LINE gets every line until the agent sends {"end":true} or
// closes.
Result<nlohmann::json> admin_request(const std::string& socket_path, const nlohmann::json& request,
                                     const std::function<void(const std::string&)>& on_line = nullptr);

}  // namespace kw::io
