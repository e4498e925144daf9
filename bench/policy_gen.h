// Generated policies of a chosen size, for the policy bench (bench/policy_bench.cpp) and
// the unit tests that check parse and compile scale with the policy: the same shapes in
// both, so a test's policy is one the bench measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "core/compile.h"

namespace kw::bench {

enum class Shape {
    Cidrs,         // one destination with N CIDRs on one port, /25s holding /32s
    Ports,         // N ports, 1,000 per destination, each destination its own /16
    PortsByCidrs,  // one destination with sqrt(N) ports by sqrt(N) CIDRs: N trie nodes
    Rules,         // N rules: every one of N/100 workloads to each of 100 destinations
};

inline const char* shape_name(Shape shape) {
    switch (shape) {
        case Shape::Cidrs: return "cidrs";
        case Shape::Ports: return "ports";
        case Shape::PortsByCidrs: return "ports x cidrs";
        case Shape::Rules: return "rules";
    }
    return "?";
}

inline std::string ipv4(uint32_t addr) {
    return std::to_string(addr >> 24) + "." + std::to_string((addr >> 16) & 0xff) + "." +
           std::to_string((addr >> 8) & 0xff) + "." + std::to_string(addr & 0xff);
}

// The I-th CIDR of a destination: every 8th a /25, the others a /32 inside the /25 before
// them, so that nodes nest as they do in real policies.
inline std::string nth_cidr(uint32_t i) {
    uint32_t addr = 0x0A000000u + i * 16;  // 10.0.0.0 on: 100,000 CIDRs stay in 10/8
    return i % 8 == 0 ? ipv4(addr) + "/25" : ipv4(addr + 1) + "/32";
}

inline std::string workload_json(const std::string& id, const std::string& exe) {
    return R"({"id": ")" + id + R"(", "selectors": {"exe": ")" + exe + R"("}})";
}

inline std::string rule_json(const std::string& from, const std::string& to) {
    return R"({"from": ")" + from + R"(", "to": ")" + to + R"("})";
}

// A valid policy of SHAPE with about N of its items, as JSON text.
inline std::string generate_policy(Shape shape, uint32_t n) {
    const std::string td = "bench.example";
    std::string workloads, destinations, rules;
    auto append = [](std::string& list, const std::string& item) {
        if (!list.empty()) list += ",\n";
        list += item;
    };
    auto destination = [](const std::string& name, const std::string& cidrs, const std::string& ports) {
        return R"({"name": ")" + name + R"(", "cidrs": [)" + cidrs + R"(], "ports": [)" + ports + "]}";
    };
    auto cidr_list = [](uint32_t count) {
        std::string out;
        for (uint32_t i = 0; i < count; ++i) out += (i ? ", \"" : "\"") + nth_cidr(i) + "\"";
        return out;
    };
    auto port_list = [](uint32_t first, uint32_t count) {
        std::string out;
        for (uint32_t i = 0; i < count; ++i) out += (i ? ", " : "") + std::to_string(1 + (first + i) % 65535);
        return out;
    };
    const std::string app = "spiffe://" + td + "/app";
    switch (shape) {
        case Shape::Cidrs:
            append(workloads, workload_json(app, "/opt/bench/app"));
            append(destinations, destination("d0", cidr_list(n), "443"));
            append(rules, rule_json(app, "d0"));
            break;
        case Shape::Ports:
            append(workloads, workload_json(app, "/opt/bench/app"));
            for (uint32_t first = 0, d = 0; first < n; first += 1000, ++d) {
                std::string name = "d" + std::to_string(d);
                append(destinations, destination(name, "\"" + ipv4(0x0A000000u + (d << 16)) + "/16\"",
                                                 port_list(first, std::min(1000u, n - first))));
                append(rules, rule_json(app, name));
            }
            break;
        case Shape::PortsByCidrs: {
            auto side = static_cast<uint32_t>(std::lround(std::sqrt(double(n))));
            append(workloads, workload_json(app, "/opt/bench/app"));
            append(destinations, destination("d0", cidr_list(side), port_list(1000, side)));
            append(rules, rule_json(app, "d0"));
            break;
        }
        case Shape::Rules: {
            // Odd destinations also hold 10/8, so every node's set has about 50 members.
            uint32_t nworkloads = std::max(1u, n / 100), ndests = std::max(1u, n / nworkloads);
            for (uint32_t w = 0; w < nworkloads; ++w)
                append(workloads, workload_json(app + std::to_string(w), "/opt/bench/app" + std::to_string(w)));
            for (uint32_t d = 0; d < ndests; ++d) {
                std::string cidrs = "\"" + ipv4(0x0A000000u + (d << 16)) + "/16\"";
                if (d % 2) cidrs += ", \"10.0.0.0/8\"";
                append(destinations, destination("d" + std::to_string(d), cidrs, "443"));
            }
            for (uint32_t w = 0; w < nworkloads; ++w)
                for (uint32_t d = 0; d < ndests; ++d)
                    append(rules, rule_json(app + std::to_string(w), "d" + std::to_string(d)));
            break;
        }
    }
    return R"({"version": 1, "trust_domain": ")" + td + R"(", "workloads": [)" + workloads +
           R"(], "destinations": [)" + destinations + R"(], "rules": [)" + rules + "]}";
}

// A host where every file exists, each path its own inode, and every cgroup is missing:
// compilation without touching the machine.
class GeneratedHost : public core::HostView {
public:
    Result<core::PinnedContent> pin_file(const std::string& path) override {
        core::PinnedContent content;
        auto [it, inserted] = inodes_.emplace(path, inodes_.size() + 1);
        content.key = kw_file_key{1, it->second};
        content.sha256 = std::string(64, 'a');
        return content;
    }
    std::optional<core::CgroupRef> resolve_cgroup(const std::string&) override { return std::nullopt; }

private:
    std::unordered_map<std::string, uint64_t> inodes_;
};

}  // namespace kw::bench
