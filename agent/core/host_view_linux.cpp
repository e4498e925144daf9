// LinuxHostView (see host_view_linux.h). Symlinks are followed on purpose: at exec the
// kernel sees the target inode, so that is the file to pin.
#include "core/host_view_linux.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/sha256.h"
#include "core/unique_fd.h"

namespace kw::core {
namespace {

constexpr uint64_t kOverlayfsMagic = 0x794c7630;  // OVERLAYFS_SUPER_MAGIC

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// The fields that a write, truncate, chmod or replace of the inode changes.
bool same_inode_state(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// The superblock device of mount MNT_ID, from /proc/self/mountinfo.
std::optional<uint64_t> mount_device(uint64_t mnt_id) {
    std::ifstream in("/proc/self/mountinfo");
    std::stringstream text;
    text << in.rdbuf();
    return mount_device_in(text.str(), mnt_id);
}

}  // namespace

std::optional<uint64_t> mount_device_in(const std::string& mountinfo, uint64_t mnt_id) {
    std::istringstream in(mountinfo);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        uint64_t id = 0, parent = 0;
        std::string devno;
        if (!(fields >> id >> parent >> devno) || id != mnt_id) continue;
        unsigned major = 0, minor = 0;
        char tail = 0;
        if (std::sscanf(devno.c_str(), "%u:%u%c", &major, &minor, &tail) != 2) return std::nullopt;
        return (static_cast<uint64_t>(major) << 20) | minor;
    }
    return std::nullopt;
}

Result<KernelFileFacts> kernel_file_facts(int fd) {
    struct statx stx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_CTIME | STATX_MNT_ID, &stx) != 0)
        return make_error("statx failed: " + errno_text(errno));
    if (!(stx.stx_mask & STATX_MNT_ID)) return make_error("statx returned no mount id (kernel older than 5.8?)");
    auto dev = mount_device(stx.stx_mnt_id);
    if (!dev) return make_error("mount " + std::to_string(stx.stx_mnt_id) + " is not in /proc/self/mountinfo");
    KernelFileFacts f;
    f.key.dev = *dev;
    f.key.ino = stx.stx_ino;
    f.ctime_sec = stx.stx_ctime.tv_sec;
    f.ctime_nsec = stx.stx_ctime.tv_nsec;
    return f;
}

LinuxHostView::LinuxHostView(std::string cgroup2_mount) : cgroup2_mount_(std::move(cgroup2_mount)) {}

Result<PinnedContent> hash_file(const std::string& path) {
    const std::string what = "'" + path + "'";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return make_error("cannot open " + what + " to pin it: " + errno_text(errno));
    struct stat before {};
    if (::fstat(fd.get(), &before) != 0) return make_error("cannot stat " + what + ": " + errno_text(errno));
    if (!S_ISREG(before.st_mode)) return make_error(what + " is not a regular file: only files can be pinned");

    Sha256 hash;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error("cannot read " + what + " to hash it: " + errno_text(errno));
        if (n == 0) break;
        hash.update(buf, static_cast<size_t>(n));
    }

    struct stat after {};
    if (::fstat(fd.get(), &after) != 0) return make_error("cannot stat " + what + ": " + errno_text(errno));
    if (!same_inode_state(before, after))
        return make_error(what + " changed while it was hashed: apply the policy again once it is stable");

    auto facts = kernel_file_facts(fd.get());
    if (!facts) return make_error("cannot identify " + what + " as the kernel sees it: " + facts.message());
    PinnedContent content;
    content.key = facts->key;
    content.ctime_sec = facts->ctime_sec;
    content.ctime_nsec = facts->ctime_nsec;
    content.sha256 = hash.hex_digest();
    return content;
}

Result<PinnedContent> LinuxHostView::pin_file(const std::string& path) {
    // The kernel identifies a file on overlayfs that a container has not written by its
    // image layer's file, and one it has written by nothing pinnable: the overlay's own
    // inode, which stat gives here, is never what an exec of the layer's code presents.
    struct statfs fs {};
    if (::statfs(path.c_str(), &fs) == 0 && static_cast<uint64_t>(fs.f_type) == kOverlayfsMagic)
        return make_error("'" + path + "' is on overlayfs, where the kernel identifies a file by its layer's file: "
                          "name the file by its path in the layer directory (the overlay's lowerdir)");
    return hash_file(path);
}

std::optional<CgroupRef> LinuxHostView::resolve_cgroup(const std::string& path) {
    struct stat st {};
    if (::stat((cgroup2_mount_ + path).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return std::nullopt;
    CgroupRef ref;
    ref.id = st.st_ino;  // on cgroup2 the directory's inode number is the cgroup id
    for (size_t i = 0; i < path.size(); ++i)
        if (path[i] == '/' && i + 1 < path.size() && path[i + 1] != '/') ++ref.level;
    return ref;
}

}  // namespace kw::core
