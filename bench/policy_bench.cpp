// Policy parse and compile time: generated policies (bench/policy_gen.h) of
// 1,000, 10,000 and 100,000 CIDRs, ports, ports x CIDRs and rules, each parsed and then
// compiled against a host where every file exists, so that the growth with the policy's
// size shows: tenfold the size should cost about tenfold the time. Each figure is
// repeated; the table shows median, min, max in milliseconds.
//
//   build/kw_bench_policy [--repeats N] [--sizes 1000,10000,...] [--shape KEY] [--json FILE]
//
// --shape measures one shape only (cidrs, ports, ports_x_cidrs, rules).
//
// --json also writes every repeat to FILE, for bench/run's report:
// {"figures": [{"shape": ..., "key": ..., "size": N, "parse_ms": [...], "compile_ms": [...]}, ...]}.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/compile.h"
#include "core/policy.h"
#include "policy_gen.h"

using namespace kw::core;
using kw::bench::Shape;

namespace {

struct Figure {
    Shape shape;
    uint32_t size;
    size_t bytes = 0;
    size_t nodes = 0;
    std::vector<double> parse_ms, compile_ms;
};

double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The figure's key in the results: bench/report.py names figures policy.<key>.<size>.
const char* shape_key(Shape shape) {
    switch (shape) {
        case Shape::Cidrs: return "cidrs";
        case Shape::Ports: return "ports";
        case Shape::PortsByCidrs: return "ports_x_cidrs";
        case Shape::Rules: return "rules";
    }
    return "?";
}

Figure measure(Shape shape, uint32_t size, int repeats) {
    Figure f{shape, size};
    std::string text = kw::bench::generate_policy(shape, size);
    f.bytes = text.size();
    for (int r = 0; r < repeats; ++r) {
        auto start = std::chrono::steady_clock::now();
        ParseOutcome parsed = parse_policy(text);
        f.parse_ms.push_back(ms_since(start));
        if (!parsed.policy) {
            std::fprintf(stderr, "kw_bench_policy: the generated %s policy is invalid: %s\n",
                         kw::bench::shape_name(shape), parsed.errors.at(0).to_string().c_str());
            std::exit(1);
        }
        kw::bench::GeneratedHost host;
        IdentityTable ids;
        start = std::chrono::steady_clock::now();
        auto compiled = compile_policy(*parsed.policy, host, ids, {}, {});
        f.compile_ms.push_back(ms_since(start));
        if (!compiled) {
            std::fprintf(stderr, "kw_bench_policy: %s\n", compiled.message().c_str());
            std::exit(1);
        }
        f.nodes = compiled->dsts.size();
    }
    std::sort(f.parse_ms.begin(), f.parse_ms.end());
    std::sort(f.compile_ms.begin(), f.compile_ms.end());
    return f;
}

std::vector<uint32_t> parse_sizes(const char* text) {
    std::vector<uint32_t> sizes;
    for (const char* p = text; *p;) {
        char* end = nullptr;
        unsigned long n = std::strtoul(p, &end, 10);
        if (end == p || n == 0 || n > 10000000) return {};
        sizes.push_back(static_cast<uint32_t>(n));
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return {};
    }
    return sizes;
}

}  // namespace

int main(int argc, char** argv) {
    int repeats = 5;
    std::vector<uint32_t> sizes = {1000, 10000, 100000};
    const char* json_path = nullptr;
    std::string only;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--repeats") == 0 && i + 1 < argc) {
            repeats = std::atoi(argv[++i]);
        } else if (std::strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
            sizes = parse_sizes(argv[++i]);
        } else if (std::strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            std::fprintf(stderr, "usage: kw_bench_policy [--repeats N] [--sizes N,N,...] [--shape KEY] [--json FILE]\n");
            return 2;
        }
    }
    if (repeats <= 0 || sizes.empty()) {
        std::fprintf(stderr, "kw_bench_policy: --repeats must be positive, --sizes a list of positive counts\n");
        return 2;
    }

    std::printf("kwarden policy parse and compile, median (min-max) ms of %d repeats, one thread\n", repeats);
    std::printf("%-14s %8s %9s %9s %26s %26s\n", "shape", "size", "KiB", "nodes", "parse ms", "compile ms");
    std::vector<Figure> figures;
    for (Shape shape : {Shape::Cidrs, Shape::Ports, Shape::PortsByCidrs, Shape::Rules}) {
        if (!only.empty() && only != shape_key(shape)) continue;
        for (uint32_t size : sizes) {
            Figure f = measure(shape, size, repeats);
            auto cell = [](const std::vector<double>& ms) {
                char buf[64];
                std::snprintf(buf, sizeof buf, "%.1f (%.1f-%.1f)", ms[ms.size() / 2], ms.front(), ms.back());
                return std::string(buf);
            };
            std::printf("%-14s %8u %9zu %9zu %26s %26s\n", kw::bench::shape_name(shape), size, f.bytes / 1024,
                        f.nodes, cell(f.parse_ms).c_str(), cell(f.compile_ms).c_str());
            std::fflush(stdout);
            figures.push_back(std::move(f));
        }
    }
    if (json_path) {
        nlohmann::json doc = {{"repeats", repeats}, {"figures", nlohmann::json::array()}};
        for (const Figure& f : figures)
            doc["figures"].push_back({{"shape", kw::bench::shape_name(f.shape)},
                                      {"key", shape_key(f.shape)},
                                      {"size", f.size},
                                      {"bytes", f.bytes},
                                      {"nodes", f.nodes},
                                      {"parse_ms", f.parse_ms},
                                      {"compile_ms", f.compile_ms}});
        std::ofstream out(json_path);
        out << doc.dump() << "\n";
        if (!out) {
            std::fprintf(stderr, "kw_bench_policy: cannot write %s\n", json_path);
            return 1;
        }
    }
    return 0;
}
