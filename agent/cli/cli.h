// Command-line front end: parses arguments and runs one command. Errors name the bad
// argument and print the usage line of the command.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/args.h"
#include "core/result.h"
#include "io/agent.h"

namespace kw::cli {

// Options `kwarden agent` takes in another build (the test build's key dump,
// agent/testhooks/): their usage text, their names, and how they set the agent's
// options. The release binary passes none, so its sources never name the hooks.
struct AgentExtension {
    std::string usage;
    std::vector<std::string> options;
    std::function<Result<void>(const Args& args, io::AgentOptions& options)> apply;
};

int main(int argc, char** argv, const AgentExtension* extension = nullptr);

}  // namespace kw::cli
