// overlayfs's layout as the agent reads it from BTF for the programs: both layouts the
// kernels have had, members in anonymous unions, and what it refuses. The BTF is built
// here with libbpf's writer, shaped as the overlay module's is on 6.12 and on 6.1.
#include <catch2/catch_test_macros.hpp>

#include <bpf/btf.h>

#include <memory>

#include "bpf/btf_layout.h"

using kw::bpf::member_offset;
using kw::bpf::overlay_layout_of;

namespace {

using BtfPtr = std::unique_ptr<btf, decltype(&btf__free)>;

struct Base {
    BtfPtr b{btf__new_empty(), &btf__free};
    int u32 = 0, ptr = 0, inode = 0, path = 0;
    Base() {
        u32 = btf__add_int(b.get(), "unsigned int", 4, 0);
        int v = btf__add_struct(b.get(), "void_like", 0);
        ptr = btf__add_ptr(b.get(), v);
        inode = btf__add_struct(b.get(), "inode", 600);  // its size is all that matters here
        // struct ovl_path { struct ovl_layer *layer; struct dentry *dentry; }
        path = btf__add_struct(b.get(), "ovl_path", 16);
        btf__add_field(b.get(), "layer", ptr, 0, 0);
        btf__add_field(b.get(), "dentry", ptr, 64, 0);
    }
};

}  // namespace

TEST_CASE("the 6.12 layout: the lower stack hangs off ovl_inode.oe") {
    Base k;
    btf* b = k.b.get();
    // struct ovl_entry { unsigned int __numlower; struct ovl_path __lowerstack[]; }
    // (libbpf adds fields to the type added last: the array type comes first)
    int stack = btf__add_array(b, k.u32, k.path, 0);
    int entry = btf__add_struct(b, "ovl_entry", 8);
    btf__add_field(b, "__numlower", k.u32, 0, 0);
    btf__add_field(b, "__lowerstack", stack, 64, 0);
    int entry_ptr = btf__add_ptr(b, entry);
    // struct ovl_inode { ...; struct inode vfs_inode; struct dentry *__upperdentry; struct ovl_entry *oe; }
    btf__add_struct(b, "ovl_inode", 664 + 16);
    btf__add_field(b, "flags", k.u32, 0, 0);
    btf__add_field(b, "vfs_inode", k.inode, 64 * 8, 0);
    btf__add_field(b, "__upperdentry", k.ptr, 664 * 8, 0);
    btf__add_field(b, "oe", entry_ptr, 672 * 8, 0);

    const kw_ovl_layout l = overlay_layout_of(b);
    CHECK(l.kind == KW_OVL_ENTRY);
    CHECK(l.vfs_inode == 64);
    CHECK(l.upperdentry == 664);
    CHECK(l.oe == 672);
    CHECK(l.numlower == 0);
    CHECK(l.lower_dentry == 8 + 8);  // __lowerstack[0].dentry
}

TEST_CASE("the 6.1 layout: lowerpath in ovl_inode, lowerdata in an anonymous union") {
    Base k;
    btf* b = k.b.get();
    // union { struct ovl_dir_cache *cache; struct inode *lowerdata; }
    int u = btf__add_union(b, nullptr, 8);
    btf__add_field(b, "cache", k.ptr, 0, 0);
    btf__add_field(b, "lowerdata", k.ptr, 0, 0);
    btf__add_struct(b, "ovl_inode", 48 + 600 + 8 + 16);
    btf__add_field(b, nullptr, u, 0, 0);
    btf__add_field(b, "flags", k.u32, 8 * 8, 0);
    btf__add_field(b, "vfs_inode", k.inode, 48 * 8, 0);
    btf__add_field(b, "__upperdentry", k.ptr, 648 * 8, 0);
    btf__add_field(b, "lowerpath", k.path, 656 * 8, 0);
    // 6.1 has an ovl_entry too, without __numlower: not the 6.12 layout.
    btf__add_struct(b, "ovl_entry", 8);
    btf__add_field(b, "numlower", k.u32, 0, 0);

    const kw_ovl_layout l = overlay_layout_of(b);
    CHECK(l.kind == KW_OVL_LOWERPATH);
    CHECK(l.vfs_inode == 48);
    CHECK(l.upperdentry == 648);
    CHECK(l.lowerdata == 0);
    CHECK(l.lower_dentry == 656 + 8);  // lowerpath.dentry
    CHECK(member_offset(b, "ovl_inode", "lowerpath.layer") == 656u);
}

TEST_CASE("an overlay layout this release does not know is none, never a guess") {
    Base k;
    btf* b = k.b.get();
    CHECK(overlay_layout_of(b).kind == KW_OVL_NONE);  // no ovl_inode at all
    btf__add_struct(b, "ovl_inode", 680);
    btf__add_field(b, "vfs_inode", k.inode, 64 * 8, 0);
    btf__add_field(b, "__upperdentry", k.ptr, 664 * 8, 0);
    btf__add_field(b, "lowerstack_of_the_future", k.ptr, 672 * 8, 0);
    CHECK(overlay_layout_of(b).kind == KW_OVL_NONE);
}

TEST_CASE("member offsets: nested paths, missing members, bitfields") {
    Base k;
    btf* b = k.b.get();
    int inner = btf__add_struct(b, "inner", 8);
    btf__add_field(b, "a", k.u32, 0, 0);
    btf__add_field(b, "bits", k.u32, 33, 3);  // a bitfield at bit 33: not byte-aligned
    int td = btf__add_typedef(b, "inner_t", inner);
    btf__add_struct(b, "outer", 24);
    btf__add_field(b, "x", k.u32, 0, 0);
    btf__add_field(b, "in", td, 128, 0);

    CHECK(member_offset(b, "outer", "in") == 16u);
    CHECK(member_offset(b, "outer", "in.a") == 16u);  // through the typedef
    CHECK_FALSE(member_offset(b, "outer", "in.bits"));
    CHECK_FALSE(member_offset(b, "outer", "in.nope"));
    CHECK_FALSE(member_offset(b, "outer", "x.a"));  // x is no struct
    CHECK_FALSE(member_offset(b, "nosuch", "x"));
    CHECK_FALSE(member_offset(b, "outer", ""));
}
