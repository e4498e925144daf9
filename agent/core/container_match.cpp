// See container_match.h.
#include "core/container_match.h"

#include <algorithm>

namespace kw::core {
namespace {

constexpr std::string_view kDigestPrefix = "@sha256:";
constexpr size_t kDigestHex = 64;

struct ImageReference {
    std::string_view repository;  // the name without tag or digest
    std::string_view digest;      // "sha256:HEX", or empty
};

// REF split into repository and digest; a tag (":TAG" after the last "/") is dropped.
ImageReference split_reference(std::string_view ref) {
    ImageReference r;
    if (auto at = ref.find('@'); at != std::string_view::npos) {
        r.digest = ref.substr(at + 1);
        ref = ref.substr(0, at);
    }
    auto slash = ref.rfind('/');
    auto colon = ref.rfind(':');
    if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) ref = ref.substr(0, colon);
    r.repository = ref;
    return r;
}

}  // namespace

std::optional<std::string> image_reference_problem(std::string_view image) {
    auto at = image.find('@');
    if (at == std::string_view::npos) return std::nullopt;
    if (at == 0) return "names a digest but no image: write NAME@sha256:HEX";
    std::string_view digest = image.substr(at);
    if (!digest.starts_with(kDigestPrefix))
        return "pins the image by a digest that is not sha256 (write NAME@sha256: and 64 lowercase hex digits)";
    std::string_view hex = digest.substr(kDigestPrefix.size());
    if (hex.size() != kDigestHex || !std::all_of(hex.begin(), hex.end(), [](char c) {
            return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        }))
        return "the sha256 digest must be 64 lowercase hex digits";
    return std::nullopt;
}

bool image_selected(std::string_view wanted, std::string_view named) {
    if (wanted.find('@') == std::string_view::npos) return wanted == named;
    ImageReference w = split_reference(wanted), n = split_reference(named);
    return !n.digest.empty() && n.digest == w.digest && n.repository == w.repository;
}

bool container_selected(const ContainerSelector& sel, const ContainerFacts& facts) {
    if (facts.sandbox) return false;
    auto meets = [](const std::optional<std::string>& wanted, const std::optional<std::string>& has) {
        return !wanted || (has && *has == *wanted);
    };
    if (sel.image && !(facts.image && image_selected(*sel.image, *facts.image))) return false;
    return meets(sel.name, facts.name) &&
           meets(sel.pod_namespace, facts.pod_namespace) && meets(sel.pod_name, facts.pod_name);
}

std::vector<kw_ctr_key> container_entries(const Policy& policy, uint64_t cgroup_id, const ContainerFacts& facts) {
    std::vector<kw_ctr_key> out{kw_ctr_key{cgroup_id, KW_CTR_GOVERNED, 0}};
    for (size_t i = 0; i < policy.workloads.size(); ++i) {
        const auto& sel = policy.workloads[i].selectors.container;
        if (sel && container_selected(*sel, facts)) out.push_back(kw_ctr_key{cgroup_id, static_cast<uint32_t>(i), 0});
    }
    return out;
}

}  // namespace kw::core
