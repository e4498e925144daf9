// Argument parsing shared by the `kwarden` commands: options with a value (--name VALUE
// or --name=VALUE), flags (--name) and positional arguments; an unknown option is an
// error that prints the command's usage.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kw::cli {

inline constexpr const char* kDefaultAdminSocket = "/run/kwarden/admin.sock";

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options;  // --name value
    std::map<std::string, bool> flags;           // --name

    bool has(const std::string& name) const { return options.count(name) != 0; }
    bool flag(const std::string& name) const { return flags.count(name) != 0; }
    std::string opt(const std::string& name, const std::string& fallback) const {
        auto it = options.find(name);
        return it == options.end() ? fallback : it->second;
    }
};

// Parses ARGV against the options (taking a value) and flags a command accepts; prints
// the problem and USAGE to stderr and returns nullopt on a bad argument.
std::optional<Args> parse(const std::vector<std::string>& argv, const std::vector<std::string>& with_value,
                          const std::vector<std::string>& flags, const std::string& usage);

// Prints "kwarden: MESSAGE" to stderr and returns CODE.
int fail(const std::string& message, int code = 1);

}  // namespace kw::cli
