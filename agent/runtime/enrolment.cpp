#include "runtime/enrolment.h"

#include "core/json_field.h"

namespace kw::runtime {

std::variant<Hello, std::string> check_hello(const nlohmann::json& request, pid_t peer_pid, size_t fds) {
    if (!request.is_object() || core::json_string(request, "op", "") != "enroll" || !request.contains("pid") ||
        !request["pid"].is_number_integer())
        return std::string("expected {\"op\":\"enroll\",\"pid\":N} with one listener fd");
    if (fds != 1) return std::string("expected exactly one file descriptor, the seccomp listener");
    // A process enrols itself: the pid it names is the one on the other end.
    if (request["pid"].get<int64_t>() != peer_pid) return std::string("the pid in the request is not the caller's");
    return Hello{core::json_string(request, "command", "?")};
}

}  // namespace kw::runtime
