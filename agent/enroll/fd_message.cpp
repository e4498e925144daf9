// Messages with descriptors over Unix sockets (see fd_message.h).
#include "enroll/fd_message.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kw::enroll {

constexpr size_t kMaxFds = 4;

Result<void> send_message(int sock, const std::string& text, const std::vector<int>& fds) {
    if (fds.size() > kMaxFds) return make_error("at most 4 descriptors per message");
    iovec iov{const_cast<char*>(text.data()), text.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return make_error(std::string("sendmsg: ") + std::strerror(errno));
    if (static_cast<size_t>(n) != text.size()) return make_error("short sendmsg");
    return {};
}

Result<FdMessage> receive_message(int sock, size_t max_text, int flags) {
    FdMessage out;
    std::string buf(max_text + 1, '\0');
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags);
    while (n < 0 && errno == EINTR);
    if (n < 0) return make_error(std::string("recvmsg: ") + std::strerror(errno));
    // Whatever else is wrong, the descriptors that came are owned (and closed) here.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            out.fds.emplace_back(fd);
        }
    }
    if (n == 0 && out.fds.empty()) return make_error("closed");
    if (msg.msg_flags & MSG_CTRUNC) return make_error("too many descriptors in one message (at most 4)");
    if (static_cast<size_t>(n) > max_text || (msg.msg_flags & MSG_TRUNC))
        return make_error("message longer than " + std::to_string(max_text) + " bytes");
    out.text.assign(buf.data(), static_cast<size_t>(n));
    return out;
}

}  // namespace kw::enroll
