#include "bpf/btf_layout.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>

#include <cstring>
#include <utility>

#include "core/unique_fd.h"

namespace kw::bpf {

namespace {

// The struct or union T is, under typedefs and qualifiers; nullptr for anything else.
const btf_type* composite(const btf* b, const btf_type* t) {
    while (t && (btf_is_typedef(t) || btf_is_mod(t))) t = btf__type_by_id(b, t->type);
    return t && btf_is_composite(t) ? t : nullptr;
}

// Byte offset and type of the member FIELD of the struct or union T, looked for in its
// anonymous members too (6.1's ovl_inode keeps lowerdata in an anonymous union).
std::optional<std::pair<uint32_t, const btf_type*>> find_member(const btf* b, const btf_type* t,
                                                                std::string_view field, int depth = 0) {
    if (!t || depth > 8) return std::nullopt;
    const btf_member* m = btf_members(t);
    for (int i = 0; i < btf_vlen(t); i++, m++) {
        const uint32_t bits = btf_member_bit_offset(t, static_cast<uint32_t>(i));
        const btf_type* mt = btf__type_by_id(b, m->type);
        const char* name = btf__name_by_offset(b, m->name_off);
        std::optional<std::pair<uint32_t, const btf_type*>> hit;
        if (name && *name && field == name)
            hit = std::pair{0u, mt};
        else if ((!name || !*name) && composite(b, mt))
            hit = find_member(b, composite(b, mt), field, depth + 1);
        if (!hit) continue;
        if (bits % 8 != 0) return std::nullopt;
        return std::pair{bits / 8 + hit->first, hit->second};
    }
    return std::nullopt;
}

}  // namespace

std::optional<uint32_t> member_offset(const btf* b, const char* type, std::string_view path) {
    const int id = btf__find_by_name_kind(b, type, BTF_KIND_STRUCT);
    if (id < 0) return std::nullopt;
    const btf_type* t = btf__type_by_id(b, static_cast<uint32_t>(id));
    uint32_t off = 0;
    while (true) {
        const auto dot = path.find('.');
        auto hit = find_member(b, t, path.substr(0, dot));
        if (!hit) return std::nullopt;
        off += hit->first;
        if (dot == std::string_view::npos) return off;
        path = path.substr(dot + 1);
        t = composite(b, hit->second);
        if (!t) return std::nullopt;
    }
}

kw_ovl_layout overlay_layout_of(const btf* overlay) {
    auto at = [&](const char* type, const char* member) { return member_offset(overlay, type, member); };
    const auto vfs_inode = at("ovl_inode", "vfs_inode"), upper = at("ovl_inode", "__upperdentry");
    if (!vfs_inode || !upper) return {};
    if (auto oe = at("ovl_inode", "oe"), numlower = at("ovl_entry", "__numlower"),
        stack = at("ovl_entry", "__lowerstack"), dentry = at("ovl_path", "dentry");
        oe && numlower && stack && dentry)
        return {.kind = KW_OVL_ENTRY, .vfs_inode = *vfs_inode, .upperdentry = *upper, .oe = *oe,
                .numlower = *numlower, .lower_dentry = *stack + *dentry, .lowerdata = 0, ._pad = 0};
    if (auto lowerpath = at("ovl_inode", "lowerpath.dentry"), lowerdata = at("ovl_inode", "lowerdata");
        lowerpath && lowerdata)
        return {.kind = KW_OVL_LOWERPATH, .vfs_inode = *vfs_inode, .upperdentry = *upper, .oe = 0,
                .numlower = 0, .lower_dentry = *lowerpath, .lowerdata = *lowerdata, ._pad = 0};
    return {};
}

kw_ovl_layout overlay_layout() {
    kw_ovl_layout l{};
    btf* vmlinux = btf__load_vmlinux_btf();
    if (!vmlinux) return l;
    btf* overlay = nullptr;
    for (uint32_t id = 0; !overlay && bpf_btf_get_next_id(id, &id) == 0;) {
        core::UniqueFd fd(bpf_btf_get_fd_by_id(id));
        if (!fd.valid()) continue;
        char name[64] = {};
        bpf_btf_info info{};
        uint32_t len = sizeof(info);
        info.name = reinterpret_cast<uint64_t>(name);
        info.name_len = sizeof(name);
        if (bpf_btf_get_info_by_fd(fd.get(), &info, &len) == 0 && info.kernel_btf && std::strcmp(name, "overlay") == 0)
            overlay = btf__load_from_kernel_by_id_split(id, vmlinux);
    }
    if (overlay) {
        l = overlay_layout_of(overlay);
        btf__free(overlay);
    }
    btf__free(vmlinux);
    return l;
}

}  // namespace kw::bpf
