// Seccomp filter of enrolled processes (see filter.h).
#include "enroll/filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

namespace kw::enroll {
namespace {

constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
constexpr uint32_t kX32Bit = 0x40000000;  // __X32_SYSCALL_BIT

sock_filter stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return BPF_JUMP(code, k, jt, jf); }

constexpr uint32_t arg_low(int n) { return offsetof(seccomp_data, args) + 8 * n; }  // little endian

}  // namespace

std::vector<sock_filter> build_filter() {
    std::vector<sock_filter> f;
    // Another ABI (x32, i386) would name other syscalls by these numbers: refuse it.
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    f.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1));
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));

    // nr is in A. Layout (index: instruction), jumps count from the next instruction:
    //  0-5: syscall tests   6-8: load the flags argument   9: MSG_FASTOPEN test
    //  10: allow   11: notify the agent   12: ENOSYS
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 10, 0));         // 0 -> 11
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_accept, 9, 0));           // 1 -> 11
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_accept4, 8, 0));          // 2 -> 11
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 8, 0));   // 3 -> 12
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendto, 1, 0));           // 4 -> 6
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendmsg, 2, 4));          // 5 -> 8, else 10
    // sendto(fd, buf, len, flags, ...): flags is argument 3; sendmsg(fd, msg, flags): 2.
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(3)));                   // 6
    f.push_back(stmt(BPF_JMP | BPF_JA, 1));                                     // 7 -> 9
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(2)));                   // 8
    f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, MSG_FASTOPEN, 1, 0));         // 9 -> 11, else 10
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));                      // 10
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF));                 // 11
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));  // 12
    return f;
}

Result<core::UniqueFd> install_filter() {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return make_error(std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno));
    std::vector<sock_filter> filter = build_filter();
    sock_fprog prog{static_cast<unsigned short>(filter.size()), filter.data()};
    long fd = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                        SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &prog);
    if (fd < 0) {
        int err = errno;
        return make_error(std::string("installing the seccomp filter: ") + std::strerror(err) +
                          (err == EINVAL ? " (this kernel lacks SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: Linux 5.19+)" : ""));
    }
    return core::UniqueFd(static_cast<int>(fd));
}

}  // namespace kw::enroll
