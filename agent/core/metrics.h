// The Prometheus text exposition format (version 0.0.4), written: families with their HELP
// and TYPE, samples with escaped label values, histograms with cumulative buckets. And
// the two pieces of bookkeeping that keep a scrape bounded and its counters monotonic:
// SeriesCap (label pairs beyond a cap share one "_other" series) and FlowTotals (the
// kernel's cumulative per-key counters folded into series that never go back).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "core/result.h"

namespace kw::core::metrics {

// What a label set is: name and value, in the order written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value as the format writes it between quotes: backslash, quote and newline
// escaped. Any other byte passes (the format is UTF-8; a SPIFFE ID or a container name
// that is not is still one sample line).
std::string escape_label_value(std::string_view value);

class Exposition {
public:
    // TYPE is "counter", "gauge" or "histogram". A family is written once, before its
    // samples; HELP text has backslash and newline escaped.
    void family(std::string_view name, std::string_view type, std::string_view help);
    // One sample line: NAME{LABELS} VALUE. NAME is the family's, or for a histogram its
    // _bucket/_sum/_count.
    void sample(std::string_view name, const Labels& labels, double value);
    const std::string& text() const { return out_; }

private:
    std::string out_;
};

// A histogram of durations in seconds, with fixed upper bounds (ascending).
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double value);
    // FAMILY_bucket (cumulative, le="+Inf" last), FAMILY_sum and FAMILY_count, each with
    // LABELS (le appended to the buckets').
    void write(Exposition& out, std::string_view family, const Labels& labels) const;
    uint64_t count() const { return count_; }

private:
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // per bucket, not cumulative; one more for +Inf
    double sum_ = 0;
    uint64_t count_ = 0;
};

// Label values of a family keyed by (identity, destination), with at most MAX distinct
// pairs: the first MAX pairs seen keep their own series for the agent's lifetime (a
// counter must not move between series), every later pair is counted in one series
// labelled kOther/kOther. A 1,000 x 1,000 policy so yields at most MAX + 1 series.
class SeriesCap {
public:
    static constexpr const char* kOther = "_other";
    explicit SeriesCap(size_t max) : max_(max) {}
    // The series of (IDENTITY, DESTINATION): themselves, or the shared one.
    std::pair<std::string, std::string> series(const std::string& identity, const std::string& destination);
    size_t own() const { return own_.size(); }
    uint64_t folded() const { return folded_; }  // pairs sent to the shared series

private:
    size_t max_;
    std::map<std::pair<std::string, std::string>, bool> own_;
    std::map<std::pair<std::string, std::string>, bool> other_;
    uint64_t folded_ = 0;
};

// One key of the kernel's flow counters, summed over the CPUs: cumulative since the map
// was created. The key is opaque here (bpf/abi.h's kw_flow_key as bytes).
struct FlowReading {
    std::string key;
    uint64_t connections = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
};
struct FlowSeries {
    std::string decision;
    std::string identity;
    std::string destination;
    bool operator<(const FlowSeries& o) const {
        return std::tie(decision, identity, destination) < std::tie(o.decision, o.identity, o.destination);
    }
};
struct FlowCount {
    uint64_t connections = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
};

// Folds readings into totals per series. Each kernel key is named once, the first time it
// is read (its policy revision may be gone later), and its growth since the last reading
// is added to that series: totals only grow, whatever happens to the keys. A key whose
// counts went down was deleted and made anew: its whole reading is growth.
class FlowTotals {
public:
    using Namer = std::function<FlowSeries(const std::string& key)>;
    void fold(const std::vector<FlowReading>& readings, const Namer& name);
    const std::map<FlowSeries, FlowCount>& totals() const { return totals_; }
    size_t keys() const { return last_.size(); }

private:
    struct Seen {
        FlowSeries series;
        FlowCount last;
    };
    std::map<std::string, Seen> last_;
    std::map<FlowSeries, FlowCount> totals_;
};

// Where the metrics endpoint listens: "IPV4:PORT" or "[IPV6]:PORT" (numeric addresses
// only: a name would be resolved at start, and could change), or "none".
struct ListenAddress {
    std::string host;  // numeric, without brackets; "" for none
    uint16_t port = 0;
    bool none() const { return host.empty(); }
};
Result<ListenAddress> parse_listen_address(std::string_view text);

// The head of an HTTP/1.x request: what the metrics endpoint needs of it.
struct HttpRequest {
    std::string method;
    std::string target;  // path and query, as sent
};
// Parses the request line of HEAD (everything before the blank line). Errors name what
// is wrong ("request line ... is not METHOD SP TARGET SP HTTP/1.x").
Result<HttpRequest> parse_http_head(std::string_view head);

}  // namespace kw::core::metrics
