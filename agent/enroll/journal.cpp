// The journal of held calls (see journal.h).
#include "enroll/journal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace kw::enroll {

// The layout is shared between agent versions through the holder: it only grows by a
// new magic.
struct Journal::Header {
    char magic[8];
    uint32_t slots;
    uint32_t slot_size;
};

struct Journal::Slot {
    uint64_t id;
    uint32_t used;  // written last when recording, first when clearing
    int32_t tid;
    int32_t nr;
    int32_t saved_flags;
    uint64_t args[6];
};

namespace {
constexpr char kMagic[8] = {'K', 'W', 'J', 'R', 'N', 'L', '0', '1'};
constexpr size_t kHeaderSize = 64;
constexpr size_t kSlotSize = 72;
constexpr size_t kSize = kHeaderSize + Journal::kSlots * kSlotSize;
}  // namespace

Journal::Journal(core::UniqueFd fd, void* map) : fd_(std::move(fd)), map_(map) {}

Journal::Journal(Journal&& other) noexcept : fd_(std::move(other.fd_)), map_(std::exchange(other.map_, nullptr)) {}

Journal& Journal::operator=(Journal&& other) noexcept {
    if (this != &other) {
        if (map_) ::munmap(map_, kSize);
        fd_ = std::move(other.fd_);
        map_ = std::exchange(other.map_, nullptr);
    }
    return *this;
}

Journal::~Journal() {
    if (map_) ::munmap(map_, kSize);
}

Result<Journal> Journal::create() {
    static_assert(sizeof(Slot) == kSlotSize && sizeof(Header) <= kHeaderSize);
    core::UniqueFd fd(::memfd_create("kwarden-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid()) return make_error(std::string("memfd_create: ") + std::strerror(errno));
    if (::ftruncate(fd.get(), kSize) != 0) return make_error(std::string("ftruncate: ") + std::strerror(errno));
    // The size never changes: a reader may map it whole without checking again.
    ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    void* map = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) return make_error(std::string("mmap: ") + std::strerror(errno));
    auto* h = static_cast<Header*>(map);
    std::memcpy(h->magic, kMagic, sizeof(kMagic));
    h->slots = kSlots;
    h->slot_size = sizeof(Slot);
    return Journal(std::move(fd), map);
}

Result<Journal> Journal::adopt(core::UniqueFd fd) {
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) return make_error(std::string("fstat: ") + std::strerror(errno));
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    if (static_cast<size_t>(st.st_size) != kSize || seals < 0 || !(seals & F_SEAL_SHRINK))
        return make_error("not a journal of this kwarden version (size " + std::to_string(st.st_size) + ")");
    void* map = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) return make_error(std::string("mmap: ") + std::strerror(errno));
    Journal j(std::move(fd), map);
    auto* h = static_cast<Header*>(map);
    if (std::memcmp(h->magic, kMagic, sizeof(kMagic)) != 0 || h->slots != kSlots || h->slot_size != sizeof(Slot))
        return make_error("not a journal of this kwarden version (bad header)");
    return j;
}

Journal::Slot* Journal::slot(uint32_t i) const {
    return reinterpret_cast<Slot*>(static_cast<char*>(map_) + kHeaderSize + i * sizeof(Slot));
}

Journal::Slot* Journal::find(uint64_t id) const {
    for (uint32_t i = 0; i < kSlots; ++i) {
        Slot* s = slot(i);
        if (s->used && s->id == id) return s;
    }
    return nullptr;
}

bool Journal::record(const Call& call) {
    for (uint32_t i = 0; i < kSlots; ++i) {
        Slot* s = slot(i);
        if (s->used) continue;
        s->id = call.id;
        s->tid = call.tid;
        s->nr = call.nr;
        s->saved_flags = -1;
        std::memcpy(s->args, call.args, sizeof(s->args));
        __atomic_store_n(&s->used, 1u, __ATOMIC_RELEASE);
        return true;
    }
    return false;
}

void Journal::set_saved_flags(uint64_t id, int flags) {
    if (Slot* s = find(id)) s->saved_flags = flags;
}

void Journal::clear(uint64_t id) {
    if (Slot* s = find(id)) __atomic_store_n(&s->used, 0u, __ATOMIC_RELEASE);
}

std::vector<JournalEntry> Journal::held() const {
    std::vector<JournalEntry> out;
    for (uint32_t i = 0; i < kSlots; ++i) {
        const Slot* s = slot(i);
        if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) continue;
        JournalEntry e;
        e.call.id = s->id;
        e.call.tid = s->tid;
        e.call.nr = s->nr;
        std::memcpy(e.call.args, s->args, sizeof(e.call.args));
        e.saved_flags = s->saved_flags;
        out.push_back(e);
    }
    return out;
}

size_t Journal::size() const { return held().size(); }

}  // namespace kw::enroll
