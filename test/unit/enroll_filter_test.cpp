// The seccomp filter of enrolled processes, run through a classic-BPF interpreter over
// synthetic seccomp_data: which syscalls wait for the agent, which fail, which pass.
#include <catch2/catch_test_macros.hpp>

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstring>

#include "enroll/filter.h"

namespace {

// Runs FILTER on DATA the way the kernel does for the instructions seccomp allows here.
uint32_t run_filter(const std::vector<sock_filter>& filter, const seccomp_data& data) {
    uint32_t a = 0;
    for (size_t pc = 0; pc < filter.size(); ++pc) {
        const sock_filter& in = filter[pc];
        switch (in.code) {
            case BPF_LD | BPF_W | BPF_ABS:
                REQUIRE(in.k + 4 <= sizeof(data));
                std::memcpy(&a, reinterpret_cast<const uint8_t*>(&data) + in.k, 4);
                break;
            case BPF_JMP | BPF_JEQ | BPF_K:
                pc += a == in.k ? in.jt : in.jf;
                break;
            case BPF_JMP | BPF_JGE | BPF_K:
                pc += a >= in.k ? in.jt : in.jf;
                break;
            case BPF_JMP | BPF_JSET | BPF_K:
                pc += (a & in.k) ? in.jt : in.jf;
                break;
            case BPF_JMP | BPF_JA:
                pc += in.k;
                break;
            case BPF_RET | BPF_K:
                return in.k;
            default:
                FAIL("unexpected instruction code " << in.code << " at " << pc);
        }
    }
    FAIL("the filter fell off its end");
    return 0;
}

seccomp_data call(int nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0) {
    seccomp_data d{};
    d.nr = nr;
    d.arch = AUDIT_ARCH_X86_64;
    d.args[0] = a0;
    d.args[1] = a1;
    d.args[2] = a2;
    d.args[3] = a3;
    return d;
}

}  // namespace

TEST_CASE("connect and accept wait for the agent; other calls pass") {
    auto f = kw::enroll::build_filter();
    CHECK(run_filter(f, call(__NR_connect)) == SECCOMP_RET_USER_NOTIF);
    CHECK(run_filter(f, call(__NR_accept)) == SECCOMP_RET_USER_NOTIF);
    CHECK(run_filter(f, call(__NR_accept4)) == SECCOMP_RET_USER_NOTIF);
    for (int nr : {__NR_read, __NR_write, __NR_socket, __NR_bind, __NR_listen, __NR_recvmsg, __NR_execve, __NR_openat})
        CHECK(run_filter(f, call(nr)) == SECCOMP_RET_ALLOW);
}

TEST_CASE("sendto and sendmsg wait only with MSG_FASTOPEN") {
    auto f = kw::enroll::build_filter();
    CHECK(run_filter(f, call(__NR_sendto, 3, 0, 10, MSG_FASTOPEN)) == SECCOMP_RET_USER_NOTIF);
    CHECK(run_filter(f, call(__NR_sendto, 3, 0, 10, MSG_FASTOPEN | MSG_NOSIGNAL)) == SECCOMP_RET_USER_NOTIF);
    CHECK(run_filter(f, call(__NR_sendto, 3, 0, 10, MSG_NOSIGNAL)) == SECCOMP_RET_ALLOW);
    CHECK(run_filter(f, call(__NR_sendmsg, 3, 0, MSG_FASTOPEN)) == SECCOMP_RET_USER_NOTIF);
    CHECK(run_filter(f, call(__NR_sendmsg, 3, 0, 0)) == SECCOMP_RET_ALLOW);
    // The flags argument of sendmsg is argument 2, not 3.
    CHECK(run_filter(f, call(__NR_sendmsg, 3, 0, 0, MSG_FASTOPEN)) == SECCOMP_RET_ALLOW);
}

TEST_CASE("io_uring_setup fails with ENOSYS; another ABI kills the process") {
    auto f = kw::enroll::build_filter();
    CHECK(run_filter(f, call(__NR_io_uring_setup)) == (SECCOMP_RET_ERRNO | ENOSYS));
    seccomp_data i386 = call(__NR_connect);
    i386.arch = AUDIT_ARCH_I386;
    CHECK(run_filter(f, i386) == SECCOMP_RET_KILL_PROCESS);
    CHECK(run_filter(f, call(0x40000000 | __NR_connect)) == SECCOMP_RET_KILL_PROCESS);
}
