// Argument parsing for the commands (see args.h).
#include "cli/args.h"

#include <algorithm>
#include <iostream>

namespace kw::cli {

std::optional<Args> parse(const std::vector<std::string>& argv, const std::vector<std::string>& with_value,
                          const std::vector<std::string>& flags, const std::string& usage) {
    Args a;
    for (size_t i = 0; i < argv.size(); i++) {
        const std::string& s = argv[i];
        if (s.rfind("--", 0) == 0 && s.size() > 2) {
            std::string name = s.substr(2), value;
            bool inline_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                inline_value = true;
            }
            if (std::find(with_value.begin(), with_value.end(), name) != with_value.end()) {
                if (!inline_value) {
                    if (i + 1 >= argv.size()) {
                        std::cerr << "kwarden: option --" << name << " needs a value\nusage: " << usage << "\n";
                        return std::nullopt;
                    }
                    value = argv[++i];
                }
                a.options[name] = value;
            } else if (std::find(flags.begin(), flags.end(), name) != flags.end() && !inline_value) {
                a.flags[name] = true;
            } else {
                std::cerr << "kwarden: unknown option --" << name << "\nusage: " << usage << "\n";
                return std::nullopt;
            }
        } else {
            a.positional.push_back(s);
        }
    }
    return a;
}

int fail(const std::string& message, int code) {
    std::cerr << "kwarden: " << message << "\n";
    return code;
}

}  // namespace kw::cli
