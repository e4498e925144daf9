// The sockets processes enrol through: the enrolment socket that `kwarden exec` connects
// to (any user: mode 0666), and the seccomp-agent socket an OCI runtime hands a
// container's listener to (`linux.seccomp.listenerPath`; root: mode 0600). No error ends
// them (io/accept_loop.h); each connection goes to the enrolment service
// (runtime/enrolment_service.h), which decides what it gets.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <sys/types.h>

#include <boost/asio.hpp>
#include <functional>
#include <string>

#include "core/result.h"
#include "core/unique_fd.h"
#include "io/accept_loop.h"

namespace kw::io {

class EnrolSocket {
public:
    // NAME for logs ("enrolment socket"); each accepted connection goes to ON_CONNECTION.
    EnrolSocket(boost::asio::io_context& io, std::string name, std::function<void(core::UniqueFd)> on_connection);
    // Listens on PATH with MODE.
    Result<void> listen(const std::string& path, mode_t mode);
    uint64_t accept_errors() const { return accept_.errors(); }

private:
    std::string name_;
    std::function<void(core::UniqueFd)> on_connection_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    AcceptLoop accept_;
};

}  // namespace kw::io
