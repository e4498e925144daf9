// lint_policy (declared in compile.h): advice that needs no host access. At exec the kernel
// sees the interpreter, not the script it runs, so an exe selector on an interpreter
// alone attests whatever code that interpreter is asked to run, and one on a general-purpose
// tool (curl, env, find) whatever its caller makes it do; a workload that allows a
// code-loading variable (LD_PRELOAD, BASH_ENV, PYTHON*, ...) attests whatever code the
// caller names in it; one that allows raw sockets or core dumps opens a way around the
// gate or the guard.
#include <algorithm>
#include <array>
#include <string>
#include <string_view>

#include "core/lint.h"

namespace kw::core {
namespace {

constexpr std::array<std::string_view, 22> kInterpreters = {
    "python", "python3", "bash", "sh",  "dash",  "zsh",     "ksh",  "fish", "node", "nodejs",  "java",
    "perl",   "ruby",    "php",  "lua", "tclsh", "Rscript", "pwsh", "deno", "bun",  "python2", "perl5"};

// Tools that do whatever their arguments say: fetch or send anywhere (curl, nc, ssh),
// run commands (env, xargs, find -exec, busybox applets), or interpret a program given on
// the command line (awk, sed's e command). Pinned by exe alone, the identity belongs to
// whoever can start them under the right uid and cgroup, for whatever purpose.
constexpr std::array<std::string_view, 24> kGeneralTools = {
    "curl",  "wget", "nc",     "ncat",  "netcat", "socat", "ssh", "scp", "sftp",  "openssl", "telnet", "rsync",
    "git",   "env",  "xargs",  "find",  "busybox", "awk",  "gawk", "mawk", "sed", "nice",    "timeout", "nohup"};

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Versioned names as distributions install them: python3.11, python2.7.
bool is_versioned_python(std::string_view name) {
    if (!name.starts_with("python")) return false;
    std::string_view version = name.substr(6);
    size_t dot = version.find('.');
    return dot != std::string_view::npos && all_digits(version.substr(0, dot)) && all_digits(version.substr(dot + 1));
}

bool is_interpreter(std::string_view name) {
    return std::find(kInterpreters.begin(), kInterpreters.end(), name) != kInterpreters.end() ||
           is_versioned_python(name);
}

// Every allowed variable but LD_LIBRARY_PATH, GLIBC_TUNABLES and "LD_*" names code of the
// caller's choosing outright (a library, a script, a module path, an option that loads an
// agent), so the identity then vouches for code nobody pinned. Those three only change
// where, or how, the exe's own libraries are found and bound: a quieter opening, still
// one the code rule must cover.
void warn_about_injection(const Workload& w, size_t index, std::vector<PolicyProblem>& advice) {
    constexpr uint32_t kQuiet = kLdLibraryPath | kGlibcTunables | kLdOther;
    std::vector<std::string_view> found;
    for (const CodeEnvVarName& v : kCodeEnvVars)
        if ((w.allow_env & v.var) && !(v.var & kQuiet)) found.push_back(v.name);
    std::string names;  // "A, B and C"
    for (size_t i = 0; i < found.size(); ++i)
        names += (i == 0 ? "" : i + 1 == found.size() ? " and " : ", ") + std::string(found[i]);
    if (!names.empty())
        advice.push_back({"/workloads/" + std::to_string(index) + "/allow_env",
                          names + " allowed: any process of this identity may run injected code"});
}

// Openings of the guard that hand an attacker next to the workload a way around it.
void warn_about_openings(const Workload& w, size_t index, std::vector<PolicyProblem>& advice) {
    const std::string at = "/workloads/" + std::to_string(index);
    if (w.allow_raw_sockets)
        advice.push_back({at + "/allow_raw_sockets",
                          "raw and packet sockets allowed: any process of this identity with CAP_NET_RAW may "
                          "hand-craft packets to any destination, whatever the rules"});
    if (w.allow_core_dumps)
        advice.push_back({at + "/allow_core_dumps",
                          "core dumps allowed: whoever can send this workload a signal (same uid) may get its memory, "
                          "keys included, written to disk or to the core_pattern helper"});
}

// An "allow_code" entry that opens a whole library directory, or a place anyone may
// write to, lets the identity map far more code than the workload needs: whatever of it
// a caller points the loader or dlopen at runs under the identity.
constexpr std::array<std::string_view, 14> kBroadCodeDirs = {
    "/lib",       "/lib64",     "/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/bin", "/usr/bin",
    "/sbin",      "/usr/sbin",  "/usr/local/bin"};
constexpr std::array<std::string_view, 5> kWritableDirs = {"/tmp", "/var/tmp", "/dev/shm", "/run/user", "/home"};

void warn_about_code(const Workload& w, size_t index, std::vector<PolicyProblem>& advice) {
    for (size_t i = 0; i < w.allow_code.size(); ++i) {
        std::string_view p = w.allow_code[i];
        std::string where = "/workloads/" + std::to_string(index) + "/allow_code/" + std::to_string(i);
        if (std::find(kBroadCodeDirs.begin(), kBroadCodeDirs.end(), p) != kBroadCodeDirs.end())
            advice.push_back({where, "'" + std::string(p) +
                                         "' opens every file of a system directory to executable mapping: "
                                         "name the plugins (files or their own directory) instead"});
        for (std::string_view dir : kWritableDirs)
            if (p == dir || (p.starts_with(dir) && p[dir.size()] == '/'))
                advice.push_back({where, "'" + std::string(p) + "' is under " + std::string(dir) +
                                             ", where other users may write: what it holds when the policy is "
                                             "applied runs under the identity"});
    }
}

// A relative argument that looks like a file (a script, a path) names whatever file the
// caller's working directory holds: it is compared as text, and nothing is pinned.
void warn_about_relative_files(const Workload& w, size_t index, std::vector<PolicyProblem>& advice) {
    static constexpr std::array<std::string_view, 10> kScriptSuffixes = {".py", ".pl", ".rb", ".js", ".mjs",
                                                                        ".sh", ".jar", ".php", ".lua", ".tcl"};
    const auto& argv = w.selectors.argv;
    if (!argv) return;
    for (size_t a = 1; a < argv->args.size(); ++a) {
        std::string_view arg = argv->args[a];
        // Options, URLs, host:port and key=value are not paths.
        if (arg.empty() || arg.starts_with('/') || arg.starts_with('-') || arg.find_first_of(":=") != std::string_view::npos)
            continue;
        bool pathlike = arg.find('/') != std::string_view::npos ||
                        std::any_of(kScriptSuffixes.begin(), kScriptSuffixes.end(),
                                    [&](std::string_view s) { return arg.ends_with(s); });
        if (!pathlike) continue;
        advice.push_back({"/workloads/" + std::to_string(index) + (argv->prefix ? "/selectors/argv_prefix/" : "/selectors/argv/") +
                              std::to_string(a),
                          "'" + std::string(arg) +
                              "' is a relative path: the caller's working directory decides which file it names, "
                              "and it is not pinned; use the absolute path"});
    }
}

}  // namespace

std::vector<PolicyProblem> lint_policy(const Policy& policy) {
    std::vector<PolicyProblem> advice;
    for (size_t i = 0; i < policy.workloads.size(); ++i) {
        const Selectors& sel = policy.workloads[i].selectors;
        warn_about_injection(policy.workloads[i], i, advice);
        warn_about_openings(policy.workloads[i], i, advice);
        warn_about_code(policy.workloads[i], i, advice);
        warn_about_relative_files(policy.workloads[i], i, advice);
        if (sel.container && !sel.exe && !sel.script)
            advice.push_back({"/workloads/" + std::to_string(i) + "/selectors/container",
                              "a container selected without a code selector (exe, script): any program started "
                              "in it gets this identity, a shell exec'd into it included: add an exe selector"});
        if (!sel.exe || sel.script || sel.argv) continue;
        std::string_view exe = *sel.exe;
        std::string_view name = exe.substr(exe.rfind('/') + 1);
        std::string at = "/workloads/" + std::to_string(i) + "/selectors/exe";
        if (is_interpreter(name)) {
            advice.push_back({at, "exe selector on interpreter '" + std::string(name) +
                                      "' alone hands the identity to any code it runs: add a script or argv selector"});
        } else if (std::find(kGeneralTools.begin(), kGeneralTools.end(), name) != kGeneralTools.end()) {
            advice.push_back({at, "exe selector on general-purpose tool '" + std::string(name) +
                                      "' alone: whoever can run it under the selected uid and cgroup gets this "
                                      "identity for any purpose: add an argv or argv_prefix selector"});
        }
    }
    return advice;
}

}  // namespace kw::core
