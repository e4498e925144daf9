// SVID issuance throughput: how many X.509-SVIDs (fresh P-256 key, certificate
// signed by the node intermediate) the agent can issue per second on this machine, next
// to its two parts measured alone in the same run: P-256 key generation and ECDSA-P256
// certificate signing. Each figure is repeated 5 times; the table shows median, min, max.
//
//   build/kw_bench_issuance [--count N] [--json FILE]
//
// --json also writes every repeat to FILE, for bench/run's report:
// {"figures": [{"name": ..., "per_second": [...]}, ...]}.
#include <openssl/ec_key.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "identity/authority.h"

using namespace kw::identity;

namespace {

constexpr int kRepeats = 5;

struct Figure {
    std::string name;
    std::vector<double> per_second;
};

// Runs OP COUNT times, KREPEATS times over, and records operations per second.
Figure measure(const std::string& name, int count, const std::function<bool()>& op) {
    Figure f{name, {}};
    for (int r = 0; r < kRepeats; ++r) {
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < count; ++i) {
            if (!op()) {
                std::fprintf(stderr, "kw_bench_issuance: %s failed\n", name.c_str());
                std::exit(1);
            }
        }
        std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        f.per_second.push_back(count / took.count());
    }
    std::sort(f.per_second.begin(), f.per_second.end());
    return f;
}

}  // namespace

int main(int argc, char** argv) {
    int count = 200;
    const char* json_path = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = std::atoi(argv[++i]);
        } else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            std::fprintf(stderr, "usage: kw_bench_issuance [--count N] [--json FILE]\n");
            return 2;
        }
    }
    if (count <= 0) {
        std::fprintf(stderr, "kw_bench_issuance: --count must be positive\n");
        return 2;
    }
    TimePoint now = now_seconds();
    auto ca = SigningAuthority::ephemeral("bench.example", now);
    if (!ca) {
        std::fprintf(stderr, "kw_bench_issuance: %s\n", ca.message().c_str());
        return 1;
    }
    kw::core::SpiffeId id{"bench.example", "/ns/bench/sa/worker"};
    auto key = generate_p256_key();
    if (!key) return 1;

    std::vector<Figure> figures;
    figures.push_back(measure("SVID issuance (key + certificate)", count, [&] { return bool((*ca)->issue(id, Seconds(3600), now)); }));
    figures.push_back(measure("P-256 key generation alone", count, [] { return bool(generate_p256_key()); }));
    // Signing alone: a certificate for a key made once, signed by a CA made once.
    auto ca_key = generate_p256_key();
    if (!ca_key) return 1;
    auto ca_cert = issue_certificate(ca_template("bench.example", "bench CA", now, Seconds(86400)), ca_key->get(),
                                     nullptr, nullptr);
    if (!ca_cert) return 1;
    figures.push_back(measure("certificate signing alone", count, [&] {
        return bool(issue_certificate(leaf_template(id, now, Seconds(3600)), key->get(), ca_cert->get(), ca_key->get()));
    }));

    std::printf("kwarden SVID issuance, %d operations x %d repeats, one thread\n", count, kRepeats);
    std::printf("%-36s %12s %12s %12s %10s\n", "figure", "median/s", "min/s", "max/s", "vs issue");
    double base = figures[0].per_second[kRepeats / 2];
    for (const Figure& f : figures) {
        double median = f.per_second[kRepeats / 2];
        std::printf("%-36s %12.0f %12.0f %12.0f %9.2fx\n", f.name.c_str(), median, f.per_second.front(),
                    f.per_second.back(), median / base);
    }
    if (json_path) {
        nlohmann::json doc = {{"count", count}, {"figures", nlohmann::json::array()}};
        for (const Figure& f : figures) doc["figures"].push_back({{"name", f.name}, {"per_second", f.per_second}});
        std::ofstream out(json_path);
        out << doc.dump() << "\n";
        if (!out) {
            std::fprintf(stderr, "kw_bench_issuance: cannot write %s\n", json_path);
            return 1;
        }
    }
    return 0;
}
