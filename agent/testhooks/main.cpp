// kwarden-testhooks: kwarden, plus `kwarden agent --test-key-dump FILE` (key_dump.h). The
// hooks reach the agent only from here, through cli::AgentExtension: the release sources
// never include this directory (scripts/check-layers).
#include "cli/cli.h"
#include "testhooks/key_dump.h"

int main(int argc, char** argv) {
    kw::cli::AgentExtension key_dump;
    key_dump.usage = " [--test-key-dump FILE]";
    key_dump.options = {"test-key-dump"};
    key_dump.apply = [](const kw::cli::Args& args, kw::io::AgentOptions& options) -> kw::Result<void> {
        if (!args.has("test-key-dump")) return {};
        if (auto r = kw::testhooks::open_key_dump(args.opt("test-key-dump", "")); !r)
            return kw::make_error("--test-key-dump: " + r.message());
        options.hooks.svids_issued = kw::testhooks::dump_svid_keys;
        options.hooks.keys_installed = kw::testhooks::dump_traffic_keys;
        return {};
    };
    return kw::cli::main(argc, argv, &key_dump);
}
