// `kwarden ca`, `kwarden svid` and `kwarden bundle`: the CA tooling (offline, files) and
// the views of the running agent's SVIDs and trust bundle (admin socket).
#pragma once

#include <string>
#include <vector>

namespace kw::cli {

int cmd_ca(const std::vector<std::string>& argv);
int cmd_svid(const std::vector<std::string>& argv);
int cmd_bundle(const std::vector<std::string>& argv);

}  // namespace kw::cli
