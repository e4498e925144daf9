// The journal of held calls (enroll/journal.cpp): a shared memory page that a previous
// agent (of this or another version) wrote and the listener holder handed over. adopt()
// refuses any other layout; whatever the slots hold, reading, recording and clearing
// stay inside the mapping and keep the slot count right.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "enroll/journal.h"
#include "fuzz_common.h"

using namespace kw;

namespace {

constexpr size_t kHeaderSize = 64;
constexpr size_t kSlotSize = 72;
constexpr size_t kSize = kHeaderSize + enroll::Journal::kSlots * kSlotSize;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    // The first byte: bit 0 writes a valid header over the input (so the fuzzer reaches
    // the slots), bits 1-2 pick the file's size and seals (right, short, unsealed).
    uint8_t mode = data[0];
    std::string image(fuzz::as_text(data + 1, size - 1));
    image.resize(kSize, '\0');
    if (mode & 1) {
        const char magic[8] = {'K', 'W', 'J', 'R', 'N', 'L', '0', '1'};
        uint32_t slots = enroll::Journal::kSlots, slot_size = kSlotSize;
        std::memcpy(image.data(), magic, 8);
        std::memcpy(image.data() + 8, &slots, 4);
        std::memcpy(image.data() + 12, &slot_size, 4);
    }
    size_t file_size = ((mode >> 1) & 3) == 1 ? kSize - 1 : kSize;
    core::UniqueFd fd(::memfd_create("fuzz-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd.valid() || ::ftruncate(fd.get(), file_size) != 0 ||
        ::pwrite(fd.get(), image.data(), file_size, 0) != static_cast<ssize_t>(file_size))
        fuzz::fail("memfd");
    if (((mode >> 1) & 3) != 2) ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    auto journal = enroll::Journal::adopt(std::move(fd));
    if (!journal) return 0;
    if (file_size != kSize) fuzz::fail("adopted a journal of the wrong size");
    auto held = journal->held();
    if (held.size() > enroll::Journal::kSlots) fuzz::fail("more held calls than slots");
    enroll::Call call;
    call.id = 0xfeedfacecafebeefull;
    call.tid = 1;
    call.nr = 42;
    bool recorded = journal->record(call);
    if (recorded != (held.size() < enroll::Journal::kSlots)) fuzz::fail("record() and the free slots disagree");
    journal->set_saved_flags(call.id, 2);
    for (const auto& e : held) journal->set_saved_flags(e.call.id, e.saved_flags);
    journal->clear(call.id);
    if (!held.empty()) journal->clear(held.front().call.id);
    size_t after = journal->size();
    if (after > held.size()) fuzz::fail("clearing left more calls held than before");
    return 0;
}
