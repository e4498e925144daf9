// /proc/self/mountinfo (host/linux_host_view.cpp): mount points and their options are
// named by whoever mounts (unprivileged users in their own namespaces, FUSE), and the
// agent takes a pinned file's device from it. The lookup never crashes, and it finds the
// device of a line written plainly.
#include "host/linux_host_view.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    // The first byte picks the mount id looked up; the rest is the file.
    uint64_t mnt_id = data[0];
    std::string text(fuzz::as_text(data + 1, size - 1));
    (void)host::mount_device_in(text, mnt_id);
    // The same text after a plain line for that mount: the plain line decides.
    std::string first = std::to_string(mnt_id) + " 1 259:3 / / rw - ext4 /dev/x rw\n";
    auto dev = host::mount_device_in(first + text, mnt_id);
    if (!dev || *dev != ((uint64_t{259} << 20) | 3)) fuzz::fail("the first line for the mount was not the answer");
    return 0;
}
