// Struct layouts read from the kernel's BTF by the agent, for the programs: what CO-RE
// would resolve, for types whose resolution by libbpf costs more than it should.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "abi.h"

struct btf;

namespace kw::bpf {

// Byte offset of PATH ("member" or "member.member") in the struct TYPE of B, looking
// into anonymous struct and union members too; nullopt when the struct or a member is
// missing, or a member is not byte-aligned.
std::optional<uint32_t> member_offset(const btf* b, const char* type, std::string_view path);

// overlayfs's layout (bpf/abi.h kw_ovl_layout) in OVERLAY, the overlay module's BTF
// (split on the kernel's): KW_OVL_ENTRY when ovl_inode.oe and ovl_entry.__numlower and
// __lowerstack exist (6.5 and later), KW_OVL_LOWERPATH when ovl_inode.lowerpath and
// lowerdata do (earlier), else KW_OVL_NONE.
kw_ovl_layout overlay_layout_of(const btf* overlay);

// The running kernel's: only the overlay module's BTF is parsed (CO-RE would have libbpf
// parse every module's, a second of each object's load under emulation). KW_OVL_NONE
// when the module is not loaded.
kw_ovl_layout overlay_layout();

}  // namespace kw::bpf
