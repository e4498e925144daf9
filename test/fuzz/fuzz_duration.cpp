// Durations (core/duration.cpp) as policies ("svid_ttl") and the command line give them:
// parsing never crashes, accepts only (0, 100 years], and reads back what it formats.
#include "core/duration.h"
#include "fuzz_common.h"

using namespace kw;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view text = fuzz::as_text(data, size);
    auto d = core::parse_duration(text);
    constexpr int64_t kMax = int64_t{100} * 365 * 86400;
    if (d) {
        if (d->count() <= 0 || d->count() > kMax)
            fuzz::fail("parse_duration accepted a duration out of range", text);
        std::string again = core::format_duration(*d);
        auto back = core::parse_duration(again);
        if (!back || *back != *d) fuzz::fail("format_duration does not read back", again);
    } else if (d.message().empty()) {
        fuzz::fail("parse_duration refused without a reason", text);
    }
    // Every duration in range formats to something parse_duration reads back.
    if (size >= 8) {
        int64_t n = 0;
        for (int i = 0; i < 8; ++i) n = (n << 8) | data[i];
        n = static_cast<int64_t>(static_cast<uint64_t>(n) % static_cast<uint64_t>(kMax)) + 1;
        auto back = core::parse_duration(core::format_duration(std::chrono::seconds(n)));
        if (!back || back->count() != n) fuzz::fail("format_duration of a valid duration does not read back");
    }
    return 0;
}
