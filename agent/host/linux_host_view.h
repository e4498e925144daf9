// LinuxHostView: the HostView (core/compile.h) of a running system: files hashed through
// one open fd, cgroups resolved below the cgroup2 mount. The compiler sees the host only
// through HostView, so that core does no I/O of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "core/compile.h"

namespace kw::host {

using core::ArgPath;
using core::CgroupRef;
using core::HostView;
using core::PinnedContent;

// The identity the kernel gives the open file FD: (superblock dev, ino) and ctime, as
// the BPF programs read them from the inode. stat(2)'s st_dev is not always the
// superblock's: overlayfs and btrfs report per-layer or per-subvolume pseudo devices.
// The device is therefore taken from the file's mount in MOUNTINFO: ours, or for a file
// a process of another mount namespace runs, /proc/PID/mountinfo.
struct KernelFileFacts {
    kw_file_key key{};
    int64_t ctime_sec = 0;
    uint32_t ctime_nsec = 0;
};
Result<KernelFileFacts> kernel_file_facts(int fd, const std::string& mountinfo = "/proc/self/mountinfo");

// The superblock device of mount MNT_ID in MOUNTINFO, the text of /proc/self/mountinfo
// ("ID PARENT MAJ:MIN ..."), as the kernel encodes it (major << 20 | minor); nullopt when
// the mount is not listed or its device field is malformed.
std::optional<uint64_t> mount_device_in(const std::string& mountinfo, uint64_t mnt_id);

// An overlay mount as /proc/PID/mountinfo shows it: the filesystem path it exposes
// (ROOT), where it is mounted, and its layers (paths as the mounter gave them).
struct OverlayMount {
    std::string root;
    std::string mountpoint;
    std::vector<std::string> lower;  // top first
    std::string upper;               // "" for a read-only overlay
};
// The overlay mount MNT_ID in MOUNTINFO; nullopt when it is not listed or not overlayfs.
// Octal escapes (\040) are undone; "\:" in a layer list is a colon in a path.
std::optional<OverlayMount> overlay_mount_in(const std::string& mountinfo, uint64_t mnt_id);

// The image layer's file under the executable of process PID (EXE_FD: /proc/PID/exe,
// open), as the kernel's attestation finds it (bpf/lib/common.h kw_file_layer_facts):
// when the exe is on overlayfs and not copied up, the file at the same path in the
// first lower layer that has it. nullopt when it is not on overlayfs, is in the
// writable layer, or no layer can be read from here.
std::optional<KernelFileFacts> overlay_layer_facts(pid_t pid, int exe_fd);
// The same for any file FD the process PID has open or mapped, PATH being the path it
// shows for it (/proc/PID/maps, a /proc/PID/fd link).
std::optional<KernelFileFacts> overlay_layer_facts(pid_t pid, int fd, const std::string& path);

// PATH's content and identity, as pin_file gives them but for a file on overlayfs too,
// whose identity is then the overlay inode's (what the kernel presents for a file in a
// container's writable layer). For naming the code of a process seen in an event.
Result<PinnedContent> hash_file(const std::string& path);

class LinuxHostView : public HostView {
public:
    explicit LinuxHostView(std::string cgroup2_mount = "/sys/fs/cgroup");

    Result<PinnedContent> pin_file(const std::string& path) override;
    std::optional<CgroupRef> resolve_cgroup(const std::string& path) override;
    Result<std::vector<std::string>> code_closure(const std::string& path, const std::string& loader) override;
    std::optional<std::string> script_interpreter(const std::string& path) override;
    Result<std::vector<std::string>> code_files(const std::string& path) override;
    ArgPath arg_path(const std::string& path) override;

private:
    std::string cgroup2_mount_;
};

}  // namespace kw::host
