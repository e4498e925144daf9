#include "io/enrol_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace kw::io {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;

EnrolSocket::EnrolSocket(asio::io_context& io, runtime::EnrollmentService& service)
    : service_(service), acceptor_(io), accept_(io, acceptor_, "enrolment socket", [this](local::socket s) {
          service_.on_connection(core::UniqueFd(s.release()));
      }) {}

Result<void> EnrolSocket::listen(const std::string& path) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    ::unlink(path.c_str());
    boost::system::error_code bec;
    acceptor_.open(local(), bec);
    if (!bec) acceptor_.bind(local::endpoint(path), bec);
    if (!bec) acceptor_.listen(asio::socket_base::max_listen_connections, bec);
    if (bec) return make_error("cannot listen on enrolment socket " + path + ": " + bec.message());
    ::chmod(path.c_str(), 0666);  // any user enrols their own processes; the agent checks who
    accept_.start();
    return {};
}

nlohmann::json EnrolSocket::status() const {
    auto s = service_.socket_status();
    s["accept_errors"] = accept_.errors();
    return s;
}

}  // namespace kw::io
