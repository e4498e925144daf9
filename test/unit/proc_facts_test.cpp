// The /proc parsers of attestation from /proc: loader variables in an environment, an
// exe with no name on disk, the tracer; they must read /proc as the kernel reads an exec.
#include <catch2/catch_test_macros.hpp>

#include <string>

#include "abi.h"
#include "core/proc_facts.h"

using namespace kw::core;
using namespace std::string_literals;

TEST_CASE("loader variables are found as NAME= at the start of an environment entry, empty values included") {
    CHECK(loader_env_bits(""s) == 0);
    CHECK(loader_env_bits("PATH=/bin\0HOME=/root\0"s) == 0);
    CHECK(loader_env_bits("PATH=/bin\0LD_PRELOAD=/tmp/x.so\0"s) == KW_EXEC_LD_PRELOAD);
    CHECK(loader_env_bits("LD_AUDIT=\0"s) == KW_EXEC_LD_AUDIT);
    CHECK(loader_env_bits("A=1\0LD_LIBRARY_PATH=/opt/lib"s) == KW_EXEC_LD_LIBRARY_PATH);  // no final NUL
    CHECK(loader_env_bits("LD_LIBRARY_PATH=/a\0LD_AUDIT=/b\0LD_PRELOAD=/c\0"s) ==
          (KW_EXEC_LD_PRELOAD | KW_EXEC_LD_AUDIT | KW_EXEC_LD_LIBRARY_PATH));
}

TEST_CASE("look-alike environment entries are not loader variables") {
    CHECK(loader_env_bits("LD_PRELOAD\0"s) == 0);            // no '='
    CHECK(loader_env_bits("LD_PRELOADX=/x.so\0"s) == 0);     // a longer name
    CHECK(loader_env_bits("XLD_PRELOAD=/x.so\0"s) == 0);     // not at the start
    CHECK(loader_env_bits("FOO=LD_PRELOAD=/x.so\0"s) == 0);  // inside a value
    CHECK(loader_env_bits("ld_preload=/x.so\0"s) == 0);      // names are case-sensitive
    CHECK(loader_env_bits("LD_LIBRARY=/x\0LD_AUDIT_X=1\0"s) == 0);
}

TEST_CASE("an exe link of a memfd, an O_TMPFILE or a deleted file is anonymous") {
    CHECK(is_anonymous_exe("/memfd:payload (deleted)"));
    CHECK(is_anonymous_exe("/memfd:"));
    CHECK(is_anonymous_exe("/tmp/#1835 (deleted)"));
    CHECK(is_anonymous_exe("/usr/bin/app (deleted)"));
    CHECK_FALSE(is_anonymous_exe("/usr/bin/app"));
    CHECK_FALSE(is_anonymous_exe("/opt/memfd:tool"));
    CHECK_FALSE(is_anonymous_exe("/opt/app (deleted) v2"));
}

TEST_CASE("TracerPid is read from status text; a missing or malformed line is no answer") {
    const std::string status = "Name:\tapp\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\nTracerPid:\t";
    CHECK(tracer_pid(status + "0\nUid:\t0\t0\t0\t0\n") == 0u);
    CHECK(tracer_pid(status + "1234\nUid:\t0\t0\t0\t0\n") == 1234u);
    CHECK(tracer_pid(status + "77") == 77u);  // last line without a newline
    CHECK_FALSE(tracer_pid(status + "\nUid:\t0\n"));
    CHECK_FALSE(tracer_pid(status + "12x\n"));
    CHECK_FALSE(tracer_pid("Name:\tapp\nPid:\t42\n"));
}
