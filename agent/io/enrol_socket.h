// The enrolment socket that `kwarden exec` connects to: any user may connect, so no error
// ends it (io/accept_loop.h); each connection goes to the enrolment service
// (runtime/enrolment_service.h), which decides what it gets.
#pragma once

#include <utility>  // before Asio (Boost 1.74 with GCC 12 and C++20)

#include <boost/asio.hpp>
#include <string>

#include "core/result.h"
#include "io/accept_loop.h"
#include "runtime/enrolment_service.h"

namespace kw::io {

class EnrolSocket {
public:
    EnrolSocket(boost::asio::io_context& io, runtime::EnrollmentService& service);
    // Listens on PATH, mode 0666: any user may enrol their own processes.
    Result<void> listen(const std::string& path);
    // Accept errors and the service's refusals, for `kwarden status`.
    nlohmann::json status() const;

private:
    runtime::EnrollmentService& service_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    AcceptLoop accept_;
};

}  // namespace kw::io
