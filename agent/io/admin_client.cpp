// Client side of the admin protocol (admin_protocol.h), used by the CLI.
#include "io/admin_protocol.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace kw::io {

Result<nlohmann::json> admin_request(const std::string& socket_path, const nlohmann::json& request,
                                     const std::function<void(const std::string&)>& on_line) {
    core::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return make_error(std::string("cannot create a unix socket: ") + std::strerror(errno));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof(addr.sun_path)) return make_error("admin socket path too long: " + socket_path);
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
        return make_error("cannot reach the agent at " + socket_path + ": " + std::strerror(errno) +
                          " (is 'kwarden agent' running? the admin socket answers root only)");
    // Strict here: the request is the user's own (a policy file), and text that is not
    // UTF-8 is refused by name rather than sent with replacement characters.
    std::string out;
    try {
        out = request.dump() + "\n";
    } catch (const nlohmann::json::type_error& e) {
        return make_error(std::string("the request holds text that is not UTF-8 (policy files must be UTF-8): ") +
                          e.what());
    }
    // The agent answers a peer it refuses (not root) and closes at once, maybe before the
    // request is written: then the write fails with EPIPE (never SIGPIPE, which would kill
    // the CLI with no word) and the answer is read below.
    for (size_t off = 0; off < out.size();) {
        ssize_t n = send(fd.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
        if (n <= 0) return make_error(std::string("cannot send to the agent: ") + std::strerror(errno));
        off += n;
    }
    std::string buf;
    char chunk[65536];
    for (;;) {
        size_t nl;
        while ((nl = buf.find('\n')) != std::string::npos) {
            std::string line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            nlohmann::json j;
            try {
                j = nlohmann::json::parse(line);
            } catch (const std::exception& e) {
                return make_error("the agent sent a line that is not JSON: " + line.substr(0, 200));
            }
            // A streamed event line has no "ok"; a response has.
            if (j.is_object() && j.contains("ok")) return j;
            if (on_line) on_line(line);
        }
        ssize_t n = read(fd.get(), chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        // ECONNRESET: it closed with our request unread, having said nothing we kept.
        if (n < 0 && errno != ECONNRESET)
            return make_error(std::string("cannot read from the agent: ") + std::strerror(errno));
        if (n <= 0) {
            if (on_line) return nlohmann::json{{"ok", true}, {"end", true}};
            return make_error("the agent closed the connection without answering");
        }
        buf.append(chunk, n);
    }
}

}  // namespace kw::io
