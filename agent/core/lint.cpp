// lint_policy (declared in compile.h): advice that needs no host access. At exec the kernel
// sees the interpreter, not the script it runs, so an exe selector on an interpreter
// alone attests whatever code that interpreter is asked to run; a workload that allows
// LD_PRELOAD or LD_AUDIT attests whatever library the caller injects.
#include <algorithm>
#include <array>
#include <string>
#include <string_view>

#include "core/compile.h"

namespace kw::core {
namespace {

constexpr std::array<std::string_view, 22> kInterpreters = {
    "python", "python3", "bash", "sh",  "dash",  "zsh",     "ksh",  "fish", "node", "nodejs",  "java",
    "perl",   "ruby",    "php",  "lua", "tclsh", "Rscript", "pwsh", "deno", "bun",  "python2", "perl5"};

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

// LD_PRELOAD and LD_AUDIT load a library of the caller's choosing into the process; the
// identity then vouches for code nobody pinned. (LD_LIBRARY_PATH only changes where the
// exe's own libraries are found.)
void warn_about_injection(const Workload& w, size_t index, std::vector<PolicyProblem>& advice) {
    std::string names;
    for (LoaderVar var : {kLdPreload, kLdAudit}) {
        if (!(w.allow_env & var)) continue;
        auto known = std::find_if(kLoaderVars.begin(), kLoaderVars.end(),
                                  [&](const LoaderVarName& l) { return l.var == var; });
        names += (names.empty() ? "" : " and ") + std::string(known->name);
    }
    if (!names.empty())
        advice.push_back({"/workloads/" + std::to_string(index) + "/allow_env",
                          names + " allowed: any process of this identity may run injected code"});
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

}  // namespace

std::vector<PolicyProblem> lint_policy(const Policy& policy) {
    std::vector<PolicyProblem> advice;
    for (size_t i = 0; i < policy.workloads.size(); ++i) {
        const Selectors& sel = policy.workloads[i].selectors;
        warn_about_injection(policy.workloads[i], i, advice);
        warn_about_code(policy.workloads[i], i, advice);
        if (!sel.exe || sel.script || sel.argv) continue;
        std::string_view exe = *sel.exe;
        std::string_view name = exe.substr(exe.rfind('/') + 1);
        if (!is_interpreter(name)) continue;
        advice.push_back({"/workloads/" + std::to_string(i) + "/selectors/exe",
                          "exe selector on interpreter '" + std::string(name) +
                              "' alone hands the identity to any code it runs: add a script or argv selector"});
    }
    return advice;
}

}  // namespace kw::core
