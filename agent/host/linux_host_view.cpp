// LinuxHostView (see linux_host_view.h). Symlinks are followed on purpose: at exec the
// kernel sees the target inode, so that is the file to pin.
#include "host/linux_host_view.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <spawn.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "core/sha256.h"
#include "core/unique_fd.h"

namespace kw::host {
using core::Sha256;
using core::UniqueFd;

namespace {


std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

// The fields that a write, truncate, chmod or replace of the inode changes.
bool same_inode_state(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

// The superblock device of mount MNT_ID, from /proc/self/mountinfo.
std::optional<uint64_t> mount_device(uint64_t mnt_id, const std::string& mountinfo) {
    std::ifstream in(mountinfo);
    std::stringstream text;
    text << in.rdbuf();
    return mount_device_in(text.str(), mnt_id);
}

}  // namespace

namespace {

// The line of MOUNTINFO that describes mount MNT_ID (its first field), or nothing.
std::optional<std::string> mountinfo_line(const std::string& mountinfo, uint64_t mnt_id) {
    std::istringstream in(mountinfo);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        uint64_t id = 0;
        if (fields >> id && id == mnt_id) return line;
    }
    return std::nullopt;
}

}  // namespace

std::optional<uint64_t> mount_device_in(const std::string& mountinfo, uint64_t mnt_id) {
    auto line = mountinfo_line(mountinfo, mnt_id);
    if (!line) return std::nullopt;
    std::istringstream fields(*line);
    uint64_t id = 0, parent = 0;
    std::string devno;
    if (!(fields >> id >> parent >> devno)) return std::nullopt;
    unsigned major = 0, minor = 0;
    char tail = 0;
    if (std::sscanf(devno.c_str(), "%u:%u%c", &major, &minor, &tail) != 2) return std::nullopt;
    return (static_cast<uint64_t>(major) << 20) | minor;
}

Result<KernelFileFacts> kernel_file_facts(int fd, const std::string& mountinfo) {
    struct statx stx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_INO | STATX_CTIME | STATX_MNT_ID, &stx) != 0)
        return make_error("statx failed: " + errno_text(errno));
    if (!(stx.stx_mask & STATX_MNT_ID)) return make_error("statx returned no mount id (kernel older than 5.8?)");
    auto dev = mount_device(stx.stx_mnt_id, mountinfo);
    if (!dev) return make_error("mount " + std::to_string(stx.stx_mnt_id) + " is not in " + mountinfo);
    KernelFileFacts f;
    f.key.dev = *dev;
    f.key.ino = stx.stx_ino;
    f.ctime_sec = stx.stx_ctime.tv_sec;
    f.ctime_nsec = stx.stx_ctime.tv_nsec;
    return f;
}

namespace {

// S with mountinfo's octal escapes (\ooo) undone.
std::string unescape_octal(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && s.size() - i >= 4 && std::isdigit(static_cast<unsigned char>(s[i + 1])) && std::isdigit(static_cast<unsigned char>(s[i + 2])) &&
            std::isdigit(static_cast<unsigned char>(s[i + 3]))) {
            out += static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

// A layer list ("a:b:c", "\:" a colon within a path).
std::vector<std::string> split_layers(std::string_view list) {
    std::vector<std::string> out(1);
    for (size_t i = 0; i < list.size(); ++i) {
        if (list[i] == '\\' && i + 1 < list.size() && list[i + 1] == ':') {
            out.back() += ':';
            ++i;
        } else if (list[i] == ':') {
            out.emplace_back();
        } else {
            out.back() += list[i];
        }
    }
    return out;
}

}  // namespace

std::optional<OverlayMount> overlay_mount_in(const std::string& mountinfo, uint64_t mnt_id) {
    if (auto line = mountinfo_line(mountinfo, mnt_id)) {
        std::istringstream fields(*line);
        std::string id, parent, dev, root, mountpoint, word;
        if (!(fields >> id >> parent >> dev >> root >> mountpoint)) return std::nullopt;
        while (fields >> word && word != "-") {
        }
        std::string fstype, source, options;
        if (!(fields >> fstype >> source >> options) || fstype != "overlay") return std::nullopt;
        OverlayMount m{unescape_octal(root), unescape_octal(mountpoint), {}, ""};
        // Options are comma-separated; a comma inside a value is escaped (octal).
        std::istringstream opts(options);
        std::string opt;
        while (std::getline(opts, opt, ',')) {
            if (opt.rfind("lowerdir=", 0) == 0) {
                for (auto& l : split_layers(opt.substr(9))) m.lower.push_back(unescape_octal(l));
            } else if (opt.rfind("lowerdir+=", 0) == 0) {
                m.lower.push_back(unescape_octal(opt.substr(10)));
            } else if (opt.rfind("upperdir=", 0) == 0) {
                m.upper = unescape_octal(opt.substr(9));
            }
        }
        if (m.lower.empty()) return std::nullopt;
        return m;
    }
    return std::nullopt;
}

std::optional<KernelFileFacts> overlay_layer_facts(pid_t pid, int exe_fd) {
    char link[4096];
    ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), link, sizeof link);
    if (n <= 0 || static_cast<size_t>(n) == sizeof link) return std::nullopt;
    return overlay_layer_facts(pid, exe_fd, std::string(link, static_cast<size_t>(n)));
}

std::optional<KernelFileFacts> overlay_layer_facts(pid_t pid, int fd, const std::string& path) {
    struct statfs fs {};
    if (::fstatfs(fd, &fs) != 0 || fs.f_type != OVERLAYFS_SUPER_MAGIC) return std::nullopt;
    struct statx stx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0 || !(stx.stx_mask & STATX_MNT_ID))
        return std::nullopt;
    std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
    std::stringstream text;
    text << in.rdbuf();
    auto mount = overlay_mount_in(text.str(), stx.stx_mnt_id);
    if (!mount) return std::nullopt;
    // The path in the process's own tree, then within the overlay.
    const std::string& mp = mount->mountpoint;
    if (mp != "/" && !(path.rfind(mp, 0) == 0 && path.size() > mp.size() && path[mp.size()] == '/'))
        return std::nullopt;
    std::string rel = (mount->root == "/" ? "" : mount->root) + (mp == "/" ? path : path.substr(mp.size()));
    if (rel.empty() || rel[0] != '/' || rel.find("/../") != std::string::npos) return std::nullopt;
    struct stat st {};
    // Copied up (or written) into the writable layer: not the image's file.
    if (!mount->upper.empty() && ::lstat((mount->upper + rel).c_str(), &st) == 0) return std::nullopt;
    for (const auto& layer : mount->lower) {
        if (::lstat((layer + rel).c_str(), &st) != 0) continue;
        if (!S_ISREG(st.st_mode)) return std::nullopt;
        core::UniqueFd fd(::open((layer + rel).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!fd.valid()) return std::nullopt;
        auto facts = kernel_file_facts(fd.get());
        if (!facts) return std::nullopt;
        return *facts;
    }
    return std::nullopt;
}

namespace {

// The PT_INTERP of the 64-bit ELF file FD ("" when it has none: static, or not ELF).
std::optional<std::string> elf_interpreter(int fd) {
    Elf64_Ehdr eh{};
    if (::pread(fd, &eh, sizeof eh, 0) != static_cast<ssize_t>(sizeof eh)) return std::string{};
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
        return std::string{};
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph{};
        if (::pread(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) != static_cast<ssize_t>(sizeof ph))
            return std::nullopt;
        if (ph.p_type != PT_INTERP) continue;
        if (ph.p_filesz < 2 || ph.p_filesz > 4096) return std::nullopt;
        std::string interp(ph.p_filesz, '\0');
        if (::pread(fd, interp.data(), interp.size(), static_cast<off_t>(ph.p_offset)) !=
            static_cast<ssize_t>(interp.size()))
            return std::nullopt;
        interp.resize(std::strlen(interp.c_str()));
        return interp;
    }
    return std::string{};
}

// A 64-bit ELF shared object (ET_DYN): a plugin or library the loader can list.
bool is_shared_object(int fd) {
    Elf64_Ehdr eh{};
    return ::pread(fd, &eh, sizeof eh, 0) == static_cast<ssize_t>(sizeof eh) &&
           std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_type == ET_DYN;
}

// Paths in the output of the loader's list mode: "name => /path (0x...)" or "/path (0x...)";
// the vDSO and "not found" lines name no file.
std::vector<std::string> listed_paths(const std::string& out) {
    std::vector<std::string> paths;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        auto arrow = line.find("=> ");
        size_t start = arrow != std::string::npos ? arrow + 3 : line.find_first_not_of(" \t");
        if (start == std::string::npos || start >= line.size() || line[start] != '/') continue;
        size_t end = line.find(" (", start);
        paths.push_back(line.substr(start, end == std::string::npos ? std::string::npos : end - start));
    }
    return paths;
}

}  // namespace

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
    // A file on overlayfs is pinned by its own (overlay) inode, as stat gives it: the
    // kernel tries that identity first, and a container's image file by its layer's host
    // path as the other.
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

}  // namespace kw::host

namespace kw::host {

// The system loader in list mode (`ld.so --list EXE`) resolves the closure exactly as it
// will at exec: ld.so.cache, RUNPATH, $ORIGIN, hwcaps subdirectories, /etc/ld.so.preload.
// It maps the libraries but relocates none and runs no constructor, so asking it runs no
// code of the files asked about. An empty environment keeps the agent's own (LD_*)
// variables out of the answer.
Result<std::vector<std::string>> LinuxHostView::code_closure(const std::string& path, const std::string& loader) {
    const std::string what = "'" + path + "'";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return make_error("cannot open " + what + ": " + errno_text(errno));
    auto interp = elf_interpreter(fd.get());
    if (!interp) return make_error("cannot read the program headers of " + what);
    if (interp->empty()) {
        if (loader.empty() || !is_shared_object(fd.get())) return std::vector<std::string>{};
        *interp = loader;
    }

    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return make_error("pipe: " + errno_text(errno));
    UniqueFd rd(pipefd[0]), wr(pipefd[1]);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    std::string list = "--list";
    std::vector<char*> argv = {interp->data(), list.data(), const_cast<char*>(path.c_str()), nullptr};
    char* envp[] = {nullptr};
    pid_t pid = 0;
    int err = posix_spawn(&pid, interp->c_str(), &fa, nullptr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) return make_error("cannot run the loader " + *interp + " of " + what + ": " + errno_text(err));
    wr = UniqueFd();
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(rd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return make_error("the loader " + *interp + " cannot list the libraries of " + what);
    std::vector<std::string> files{*interp};
    for (auto& p : listed_paths(out))
        if (p != *interp) files.push_back(std::move(p));
    return files;
}

std::optional<std::string> LinuxHostView::script_interpreter(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string line;
    if (!in || !std::getline(in, line) || !line.starts_with("#!")) return std::nullopt;
    size_t start = line.find_first_not_of(" \t", 2);
    if (start == std::string::npos) return std::nullopt;
    size_t end = line.find_first_of(" \t\r", start);
    return line.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

Result<std::vector<std::string>> LinuxHostView::code_files(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return make_error("cannot stat '" + path + "': " + errno_text(errno));
    if (!S_ISDIR(st.st_mode)) return std::vector<std::string>{path};
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(path.c_str()), ::closedir);
    if (!dir) return make_error("cannot list '" + path + "': " + errno_text(errno));
    std::set<std::string> files;  // sorted: the same set whatever order readdir gives
    std::string base = path.ends_with('/') ? path : path + "/";
    while (dirent* e = ::readdir(dir.get())) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        struct stat fst {};
        if (::stat((base + name).c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) files.insert(base + name);
    }
    return std::vector<std::string>(files.begin(), files.end());
}

namespace {

// Who other than root could change the entry NAME of directory DIR (whose stat is D), or
// "" if nobody: its owner, or anyone its mode lets write, unless the sticky bit keeps
// them to their own entries and ENTRY_UID (the entry's owner) is root.
std::string dir_writer(const std::string& dir, const struct stat& d, uid_t entry_uid) {
    if (d.st_uid != 0) return "uid " + std::to_string(d.st_uid) + " owns the directory '" + dir + "'";
    bool others = (d.st_mode & S_IWOTH) || ((d.st_mode & S_IWGRP) && d.st_gid != 0);
    if (others && !((d.st_mode & S_ISVTX) && entry_uid == 0))
        return "the directory '" + dir + "' is writable by " + ((d.st_mode & S_IWOTH) ? "anyone" : "group " + std::to_string(d.st_gid));
    return "";
}

std::string parent_of(const std::string& path) {
    size_t slash = path.find_last_of('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

}  // namespace

// Walks PATH one component at a time, resolving symlinks as the kernel's lookup does, and
// checks every directory it passes through and every symlink it follows: whoever may
// rename, replace or retarget any of them decides what PATH names.
ArgPath LinuxHostView::arg_path(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ArgPath{ArgPath::Missing, "", ""};
    if (S_ISDIR(st.st_mode)) return ArgPath{ArgPath::Directory, "", ""};
    if (!S_ISREG(st.st_mode)) return ArgPath{ArgPath::Other, "", ""};
    ArgPath out{ArgPath::File, "", ""};
    auto refuse = [&](const std::string& why) {
        if (out.problem.empty())
            out.problem = "'" + path + "' cannot be pinned: " + why +
                          " (a file an argv selector names is read at its path: only root may be able to change "
                          "what that path names)";
    };
    std::deque<std::string> todo;
    auto push_front_components = [&](const std::string& p) {
        std::vector<std::string> parts;
        std::stringstream in(p);
        for (std::string part; std::getline(in, part, '/');)
            if (!part.empty() && part != ".") parts.push_back(part);
        todo.insert(todo.begin(), parts.begin(), parts.end());
    };
    push_front_components(path);
    std::string cur = "/";
    int hops = 0;
    while (!todo.empty()) {
        std::string name = todo.front();
        todo.pop_front();
        if (name == "..") {
            cur = parent_of(cur);
            continue;
        }
        std::string next = cur == "/" ? "/" + name : cur + "/" + name;
        struct stat d {}, e {};
        if (::stat(cur.c_str(), &d) != 0 || ::lstat(next.c_str(), &e) != 0)
            return ArgPath{ArgPath::Missing, "", ""};
        if (auto who = dir_writer(cur, d, e.st_uid); !who.empty()) refuse(who);
        if (S_ISLNK(e.st_mode)) {
            if (++hops > 40) return ArgPath{ArgPath::Other, "", ""};
            std::vector<char> buf(static_cast<size_t>(e.st_size) + 1 > 4096 ? e.st_size + 1 : 4096);
            ssize_t n = ::readlink(next.c_str(), buf.data(), buf.size());
            if (n < 0) return ArgPath{ArgPath::Missing, "", ""};
            std::string target(buf.data(), static_cast<size_t>(n));
            if (target.starts_with('/')) cur = "/";
            push_front_components(target);
            continue;
        }
        cur = next;
    }
    struct stat f {};
    if (::stat(cur.c_str(), &f) != 0 || !S_ISREG(f.st_mode)) return ArgPath{ArgPath::Missing, "", ""};
    if (f.st_uid != 0) refuse("uid " + std::to_string(f.st_uid) + " owns it");
    else if ((f.st_mode & S_IWOTH) || ((f.st_mode & S_IWGRP) && f.st_gid != 0))
        refuse(std::string("it is writable by ") + ((f.st_mode & S_IWOTH) ? "anyone" : "group " + std::to_string(f.st_gid)));
    out.real_path = cur;
    return out;
}

}  // namespace kw::host
