// SVID rotation (see rotation.h).
#include "runtime/rotation.h"

#include <spdlog/spdlog.h>

namespace kw::runtime {

void Rotation::schedule() {
    if (!timer_) timer_ = loop_.timer();
    timer_->cancel();
    auto next = identity_.svids().next_rotation();
    if (!next) return;
    // The SVIDs' own clock says when: certificate times have whole seconds, so the wake-up
    // comes just after the second it names.
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(*next - identity_.svids().now()) +
                 std::chrono::milliseconds(5);
    timer_->after(std::max(delay, std::chrono::milliseconds(5)), [this] { rotate(); });
}

void Rotation::rotate() {
    auto report = identity_.tick();
    for (const auto& line : report.rotated) spdlog::info("{}", line);
    for (const auto& line : report.errors) spdlog::error("{}; the current SVID stays until it expires", line);
    if (!report.rotated.empty() && rotated_) rotated_();
    if (!report.errors.empty()) {
        timer_->after(kRetry, [this] { schedule(); });
        return;
    }
    schedule();
}

}  // namespace kw::runtime
