// LinuxHostView on the real filesystem: pinning hashes the content and records the inode
// as the kernel knows it; cgroup paths resolve to directory inodes and depths.
#include <catch2/catch_test_macros.hpp>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "host/linux_host_view.h"

using kw::host::LinuxHostView;

namespace {

constexpr long kCgroup2SuperMagic = 0x63677270;  // CGROUP2_SUPER_MAGIC, linux/magic.h

// A directory of its own under the system temp dir, removed with what it holds.
class TempDir {
public:
    TempDir() {
        std::string templ = (std::filesystem::temp_directory_path() / "kw-host-view-XXXXXX").string();
        REQUIRE(::mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

void write_file(const std::filesystem::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary);
    out << content;
    REQUIRE(out.good());
}

// Whether stat(2)'s st_dev is the superblock's device, as the kernel's inode has it:
// overlayfs and btrfs report per-layer or per-subvolume devices instead.
bool st_dev_is_superblock(const std::filesystem::path& path) {
    constexpr long kOverlayfsSuperMagic = 0x794c7630;
    constexpr long kBtrfsSuperMagic = 0x9123683e;
    struct statfs fs {};
    REQUIRE(::statfs(path.c_str(), &fs) == 0);
    return fs.f_type != kOverlayfsSuperMagic && fs.f_type != kBtrfsSuperMagic;
}

bool is_cgroup2(const std::string& path) {
    struct statfs fs {};
    return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == kCgroup2SuperMagic;
}

// /sys/fs/cgroup on a unified host; on a hybrid (v1 + v2) host the v2 hierarchy is
// mounted elsewhere, usually /sys/fs/cgroup/unified.
std::optional<std::string> find_cgroup2_mount() {
    if (is_cgroup2("/sys/fs/cgroup")) return "/sys/fs/cgroup";
    std::ifstream mounts("/proc/self/mounts");
    std::string line;
    while (std::getline(mounts, line)) {
        std::istringstream fields(line);
        std::string source, target, type;
        fields >> source >> target >> type;
        if (type == "cgroup2") return target;
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("pinning a file hashes its content and records its inode in the kernel's encoding") {
    TempDir dir;
    write_file(dir.path() / "abc", "abc");
    LinuxHostView host;
    auto pinned = host.pin_file((dir.path() / "abc").string());
    INFO((pinned ? "" : pinned.message()));
    REQUIRE(pinned.ok());
    CHECK(pinned->sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    struct stat st {};
    REQUIRE(::stat((dir.path() / "abc").c_str(), &st) == 0);
    CHECK(pinned->key.ino == st.st_ino);
    if (st_dev_is_superblock(dir.path()))
        CHECK(pinned->key.dev == ((static_cast<uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev)));  // the kernel's dev_t
    else
        CHECK(pinned->key.dev != 0);
    CHECK(pinned->ctime_sec == st.st_ctim.tv_sec);
    CHECK(pinned->ctime_nsec == static_cast<uint32_t>(st.st_ctim.tv_nsec));
}

TEST_CASE("pinning an empty file gives the hash of no bytes") {
    TempDir dir;
    write_file(dir.path() / "empty", "");
    LinuxHostView host;
    auto pinned = host.pin_file((dir.path() / "empty").string());
    REQUIRE(pinned.ok());
    CHECK(pinned->sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("pinning a file larger than one read buffer hashes all of it") {
    TempDir dir;
    write_file(dir.path() / "big", std::string(200000, 'a'));
    LinuxHostView host;
    auto pinned = host.pin_file((dir.path() / "big").string());
    REQUIRE(pinned.ok());
    // python3 -c "import hashlib; print(hashlib.sha256(b'a' * 200000).hexdigest())"
    CHECK(pinned->sha256 == "2287d207f24a941ff3b56c04c8a25ad56b63e3023207b3bb5b4ac0c9869d74be");
}

TEST_CASE("pinning follows a symlink to the file the kernel will execute") {
    TempDir dir;
    write_file(dir.path() / "target", "abc");
    std::filesystem::create_symlink(dir.path() / "target", dir.path() / "link");
    LinuxHostView host;
    auto via_link = host.pin_file((dir.path() / "link").string());
    auto direct = host.pin_file((dir.path() / "target").string());
    REQUIRE(via_link.ok());
    REQUIRE(direct.ok());
    CHECK(via_link->key.ino == direct->key.ino);
    CHECK(via_link->sha256 == direct->sha256);
}

TEST_CASE("pinning a directory is refused: only regular files can be pinned") {
    TempDir dir;
    LinuxHostView host;
    auto pinned = host.pin_file(dir.path().string());
    REQUIRE_FALSE(pinned.ok());
    CHECK(pinned.message() == "'" + dir.path().string() + "' is not a regular file: only files can be pinned");
}

TEST_CASE("pinning a missing file fails with the path and the reason") {
    LinuxHostView host;
    auto pinned = host.pin_file("/nonexistent/kwarden/bin");
    REQUIRE_FALSE(pinned.ok());
    CHECK(pinned.message() == "cannot open '/nonexistent/kwarden/bin' to pin it: No such file or directory");
}

TEST_CASE("a cgroup path resolves to its directory inode and its depth below the mount") {
    TempDir mount;
    std::filesystem::create_directories(mount.path() / "system.slice" / "app.service");
    write_file(mount.path() / "cgroup.procs", "");
    LinuxHostView host(mount.path().string());

    auto root = host.resolve_cgroup("/");
    REQUIRE(root);
    CHECK(root->level == 0);
    struct stat st {};
    REQUIRE(::stat(mount.path().c_str(), &st) == 0);
    CHECK(root->id == st.st_ino);

    auto leaf = host.resolve_cgroup("/system.slice/app.service");
    REQUIRE(leaf);
    CHECK(leaf->level == 2);
    REQUIRE(::stat((mount.path() / "system.slice" / "app.service").c_str(), &st) == 0);
    CHECK(leaf->id == st.st_ino);

    CHECK_FALSE(host.resolve_cgroup("/system.slice/other.service"));
    CHECK_FALSE(host.resolve_cgroup("/cgroup.procs"));  // a file, not a cgroup
}

TEST_CASE("the root of the host's cgroup2 hierarchy resolves at level 0") {
    auto mount = find_cgroup2_mount();
    // Containers and minimal VMs may have no cgroup2 mounted at all: there is then no
    // hierarchy to resolve against, which is the machine's state, not a failure.
    if (!mount) SKIP("no cgroup2 file system is mounted on this machine");
    LinuxHostView host(*mount);
    auto root = host.resolve_cgroup("/");
    REQUIRE(root);
    CHECK(root->level == 0);
    struct stat st {};
    REQUIRE(::stat(mount->c_str(), &st) == 0);
    CHECK(root->id == st.st_ino);
}

TEST_CASE("a mount's device is read from its own mountinfo line, in the kernel's encoding") {
    using kw::host::mount_device_in;
    // Mount points are named by whoever mounts: spaces (escaped), numbers, look-alikes.
    const std::string mountinfo =
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "122 22 0:52 / /mnt/22\\0401\\0408:1 rw - fuse.x x rw\n"
        "31 22 259:3 /sub /home rw - btrfs /dev/nvme0n1p3 rw\n"
        "40 22 0:x / /bad rw - tmpfs tmpfs rw\n"
        "41 22 8:2junk / /bad2 rw - tmpfs tmpfs rw\n";
    CHECK(mount_device_in(mountinfo, 22) == ((uint64_t{8} << 20) | 1));
    CHECK(mount_device_in(mountinfo, 122) == uint64_t{52});
    CHECK(mount_device_in(mountinfo, 31) == ((uint64_t{259} << 20) | 3));
    CHECK_FALSE(mount_device_in(mountinfo, 40).has_value());  // a device that is no number
    CHECK_FALSE(mount_device_in(mountinfo, 41).has_value());  // trailing text after the minor
    CHECK_FALSE(mount_device_in(mountinfo, 1).has_value());   // a parent id is not a mount id
    CHECK_FALSE(mount_device_in("", 22).has_value());
    CHECK_FALSE(mount_device_in("22", 22).has_value());  // a line cut short
}

TEST_CASE("an argv file is a source at its real path only while root alone can change what the path names") {
    if (::geteuid() != 0) SKIP("ownership checks need files owned by root and by another uid");
    TempDir tmp;  // in /tmp, whose sticky bit lets nobody but its owner rename it
    std::filesystem::create_directory(tmp.path() / "srv");
    struct Srv {
        std::filesystem::path p;
        const std::filesystem::path& path() const { return p; }
    } dir{tmp.path() / "srv"};
    const auto app = dir.path() / "app.py";
    write_file(app, "print('hi')\n");
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    REQUIRE(::chmod(app.c_str(), 0644) == 0);
    std::filesystem::create_symlink(app, dir.path() / "current.py");
    std::filesystem::create_directory(dir.path() / "sub");
    LinuxHostView host;
    using kw::core::ArgPath;
    const std::string real = std::filesystem::canonical(app).string();

    auto plain = host.arg_path(app.string());
    CHECK(plain.kind == ArgPath::File);
    CHECK(plain.problem == "");
    CHECK(plain.real_path == real);
    auto linked = host.arg_path((dir.path() / "current.py").string());
    CHECK(linked.kind == ArgPath::File);
    CHECK(linked.real_path == real);  // what bpf_d_path shows for the opened file
    CHECK(host.arg_path((dir.path() / "sub").string()).kind == ArgPath::Directory);
    CHECK(host.arg_path((dir.path() / "missing.py").string()).kind == ArgPath::Missing);
    CHECK(host.arg_path("/dev/null").kind == ArgPath::Other);

    // The file writable by others, then owned by someone else, then its directory.
    REQUIRE(::chmod(app.c_str(), 0666) == 0);
    CHECK(host.arg_path(app.string()).problem.find("it is writable by anyone") != std::string::npos);
    REQUIRE(::chmod(app.c_str(), 0644) == 0);
    REQUIRE(::chown(app.c_str(), 1000, 1000) == 0);
    CHECK(host.arg_path(app.string()).problem.find("uid 1000 owns it") != std::string::npos);
    REQUIRE(::chown(app.c_str(), 0, 0) == 0);
    REQUIRE(::chown(dir.path().c_str(), 1000, 1000) == 0);
    auto owned_dir = host.arg_path(app.string());
    CHECK(owned_dir.problem.find("uid 1000 owns the directory") != std::string::npos);
    // ... which the symlink passes through as well.
    CHECK(host.arg_path((dir.path() / "current.py").string()).problem.find("uid 1000 owns the directory") !=
          std::string::npos);
    REQUIRE(::chown(dir.path().c_str(), 0, 0) == 0);
    // A sticky world-writable directory keeps others to their own entries: a root-owned
    // file there is safe, a symlink someone else owns is not.
    REQUIRE(::chmod(dir.path().c_str(), 01777) == 0);
    CHECK(host.arg_path(app.string()).problem == "");
    REQUIRE(::lchown((dir.path() / "current.py").c_str(), 1000, 1000) == 0);
    CHECK(host.arg_path((dir.path() / "current.py").string()).problem.find("is writable by anyone") !=
          std::string::npos);
    REQUIRE(::chmod(dir.path().c_str(), 0777) == 0);
    CHECK(host.arg_path(app.string()).problem.find("is writable by anyone") != std::string::npos);
}

TEST_CASE("an overlay mount's layers are read from mountinfo as crun and containerd mount them", "[host][overlay]") {
    using kw::host::overlay_mount_in;
    const std::string mountinfo =
        // A bundle's root mounted by a test (one layer), as the container sees it after pivot_root.
        "612 600 0:45 / / rw,relatime - overlay overlay rw,lowerdir=/tmp/kwe2e/t/layer,"
        "upperdir=/tmp/kwe2e/t/cart/upper,workdir=/tmp/kwe2e/t/cart/work\n"
        "613 612 0:5 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
        // containerd's snapshotter: two image layers, top first; a path with a space.
        "700 650 0:52 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/ab/rootfs rw,relatime shared:300 - "
        "overlay overlay rw,lowerdir=/var/lib/containerd/snapshots/3/fs:/var/lib/containerd/snap\\040shots/2/fs,"
        "upperdir=/var/lib/containerd/snapshots/4/fs,workdir=/var/lib/containerd/snapshots/4/work,index=off\n"
        // 6.7 and later may list each layer on its own (lowerdir+), and a read-only overlay has no upper.
        "701 650 0:53 /sub /mnt/ro ro,relatime - overlay overlay ro,lowerdir+=/l1,lowerdir+=/l\\0542\n";
    auto bundle = overlay_mount_in(mountinfo, 612);
    REQUIRE(bundle);
    CHECK(bundle->root == "/");
    CHECK(bundle->mountpoint == "/");
    CHECK(bundle->lower == std::vector<std::string>{"/tmp/kwe2e/t/layer"});
    CHECK(bundle->upper == "/tmp/kwe2e/t/cart/upper");
    auto containerd = overlay_mount_in(mountinfo, 700);
    REQUIRE(containerd);
    CHECK(containerd->lower ==
          std::vector<std::string>{"/var/lib/containerd/snapshots/3/fs", "/var/lib/containerd/snap shots/2/fs"});
    CHECK(containerd->upper == "/var/lib/containerd/snapshots/4/fs");
    auto ro = overlay_mount_in(mountinfo, 701);
    REQUIRE(ro);
    CHECK(ro->root == "/sub");
    CHECK(ro->lower == std::vector<std::string>{"/l1", "/l,2"});
    CHECK(ro->upper.empty());
    CHECK_FALSE(overlay_mount_in(mountinfo, 613));  // proc: not an overlay
    CHECK_FALSE(overlay_mount_in(mountinfo, 999));  // not listed
    CHECK_FALSE(overlay_mount_in("612 600 0:45 / / rw - overlay overlay rw,upperdir=/u\n", 612));  // no layer
}
