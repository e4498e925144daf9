#include "io/enrol_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace kw::io {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;

EnrolSocket::EnrolSocket(asio::io_context& io, std::string name, std::function<void(core::UniqueFd)> on_connection)
    : name_(std::move(name)),
      on_connection_(std::move(on_connection)),
      acceptor_(io),
      accept_(io, acceptor_, name_, [this](local::socket s) { on_connection_(core::UniqueFd(s.release())); }) {}

Result<void> EnrolSocket::listen(const std::string& path, mode_t mode) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    ::unlink(path.c_str());
    boost::system::error_code bec;
    // Born with no permissions for anyone but root: no window where others can connect.
    mode_t old = ::umask(0177);
    acceptor_.open(local(), bec);
    if (!bec) acceptor_.bind(local::endpoint(path), bec);
    ::umask(old);
    if (!bec) acceptor_.listen(asio::socket_base::max_listen_connections, bec);
    if (bec) return make_error("cannot listen on " + name_ + " " + path + ": " + bec.message());
    ::chmod(path.c_str(), mode);
    accept_.start();
    return {};
}

}  // namespace kw::io
