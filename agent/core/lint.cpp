// lint_policy (declared in compile.h): advice that needs no host access. At exec the kernel
// sees the interpreter, not the script it runs, so an exe selector on an interpreter
// alone attests whatever code that interpreter is asked to run; a workload that allows
// LD_PRELOAD or LD_AUDIT attests whatever library the caller injects; one that allows raw
// sockets or core dumps opens a way around the gate or the guard.
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

}  // namespace

std::vector<PolicyProblem> lint_policy(const Policy& policy) {
    std::vector<PolicyProblem> advice;
    for (size_t i = 0; i < policy.workloads.size(); ++i) {
        const Selectors& sel = policy.workloads[i].selectors;
        warn_about_injection(policy.workloads[i], i, advice);
        warn_about_openings(policy.workloads[i], i, advice);
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
