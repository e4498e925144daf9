// The /proc parsers of attestation from /proc: code-loading variables in an environment, an
// exe with no name on disk, the tracer; they must read /proc as the kernel reads an exec.
#include <catch2/catch_test_macros.hpp>

#include <string>

#include "abi.h"
#include "core/proc_facts.h"

using namespace kw::core;
using namespace std::string_literals;

TEST_CASE("loader variables are found as NAME= at the start of an environment entry, empty values included") {
    CHECK(code_env_bits(""s) == 0);
    CHECK(code_env_bits("PATH=/bin\0HOME=/root\0"s) == 0);
    CHECK(code_env_bits("PATH=/bin\0LD_PRELOAD=/tmp/x.so\0"s) == KW_ENV_LD_PRELOAD);
    CHECK(code_env_bits("LD_AUDIT=\0"s) == KW_ENV_LD_AUDIT);
    CHECK(code_env_bits("A=1\0LD_LIBRARY_PATH=/opt/lib"s) == KW_ENV_LD_LIBRARY_PATH);  // no final NUL
    CHECK(code_env_bits("LD_LIBRARY_PATH=/a\0LD_AUDIT=/b\0LD_PRELOAD=/c\0"s) ==
          (KW_ENV_LD_PRELOAD | KW_ENV_LD_AUDIT | KW_ENV_LD_LIBRARY_PATH));
    // Every other LD_ variable is the loader's configuration too: one family.
    CHECK(code_env_bits("LD_ORIGIN_PATH=/tmp\0"s) == KW_ENV_LD_OTHER);
    CHECK(code_env_bits("LD_PRELOADX=/x.so\0LD_BIND_NOW=1\0"s) == KW_ENV_LD_OTHER);
}

TEST_CASE("look-alike environment entries are not code-loading variables") {
    CHECK(code_env_bits("LD_PRELOAD\0"s) == KW_ENV_LD_OTHER);      // no '=': still an LD_ name
    CHECK(code_env_bits("XLD_PRELOAD=/x.so\0"s) == 0);             // not at the start
    CHECK(code_env_bits("FOO=LD_PRELOAD=/x.so\0"s) == 0);          // inside a value
    CHECK(code_env_bits("ld_preload=/x.so\0"s) == 0);              // names are case-sensitive
    CHECK(code_env_bits("X=BASH_ENV=/tmp/x.sh\0"s) == 0);          // inside a value
    CHECK(code_env_bits("BASH_ENVX=1\0BASH=/bin/bash\0"s) == 0);  // another name
    CHECK(code_env_bits("ENVIRONMENT=prod\0SHELL=/bin/bash\0PS1=$ \0"s) == 0);
    CHECK(code_env_bits("JAVA_HOME=/usr/lib/jvm\0RUBY_VERSION=3\0NODE_ENV=production\0"s) == 0);
    CHECK(code_env_bits("PYTHONUNBUFFERED=1\0PYTHONDONTWRITEBYTECODE=1\0PYTHONIOENCODING=utf-8\0"s) == 0);
    CHECK(code_env_bits("OPENSSH=1\0GLIBC=2\0CLASS=x\0"s) == 0);
}

TEST_CASE("each interpreter's and runtime's code-loading variables are found, families by prefix") {
    struct Case {
        const char* entry;
        uint32_t bit;
    };
    const Case cases[] = {
        {"GLIBC_TUNABLES=glibc.rtld.nns=1", KW_ENV_GLIBC_TUNABLES},
        {"GCONV_PATH=/tmp", KW_ENV_GCONV_PATH},
        {"OPENSSL_CONF=/tmp/o.cnf", KW_ENV_OPENSSL},
        {"OPENSSL_MODULES=/tmp", KW_ENV_OPENSSL},
        {"BASH_ENV=/tmp/x.sh", KW_ENV_BASH_ENV},
        {"ENV=/tmp/x.sh", KW_ENV_ENV},
        {"BASH_FUNC_curl%%=() { :; }", KW_ENV_BASH_FUNC},
        {"SHELLOPTS=xtrace", KW_ENV_SHELLOPTS},
        {"BASHOPTS=extdebug", KW_ENV_BASHOPTS},
        {"PS4=$(id)", KW_ENV_PS4},
        {"PYTHONPATH=/tmp", KW_ENV_PYTHON},
        {"PYTHONHOME=/tmp", KW_ENV_PYTHON},
        {"PYTHONSTARTUP=/tmp/x.py", KW_ENV_PYTHON},
        {"PYTHONWARNINGS=ignore::x.Y", KW_ENV_PYTHON},
        {"PYTHONBREAKPOINT=x.y", KW_ENV_PYTHON},
        {"PYTHONUSERBASE=/tmp", KW_ENV_PYTHON},
        {"PYTHON_PRESITE=x", KW_ENV_PYTHON},
        {"PERL5LIB=/tmp", KW_ENV_PERL},
        {"PERLLIB=/tmp", KW_ENV_PERL},
        {"PERL5OPT=-Mx", KW_ENV_PERL},
        {"PERL5DB=BEGIN{}", KW_ENV_PERL},
        {"NODE_OPTIONS=--require /tmp/x.js", KW_ENV_NODE},
        {"NODE_PATH=/tmp", KW_ENV_NODE},
        {"RUBYOPT=-r/tmp/x", KW_ENV_RUBYOPT},
        {"RUBYLIB=/tmp", KW_ENV_RUBYLIB},
        {"JAVA_TOOL_OPTIONS=-javaagent:/tmp/a.jar", KW_ENV_JAVA_TOOL_OPTIONS},
        {"_JAVA_OPTIONS=-javaagent:/tmp/a.jar", KW_ENV_JAVA_OPTIONS},
        {"JDK_JAVA_OPTIONS=-javaagent:/tmp/a.jar", KW_ENV_JDK_JAVA_OPTIONS},
        {"CLASSPATH=/tmp", KW_ENV_CLASSPATH},
    };
    for (const Case& c : cases) {
        INFO(c.entry);
        CHECK(code_env_var(c.entry) == c.bit);
        CHECK(code_env_bits("PATH=/bin\0"s + c.entry + "\0HOME=/root"s) == c.bit);
    }
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
