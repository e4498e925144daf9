// See metrics.h.
#include "core/metrics.h"

#include <arpa/inet.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace kw::core::metrics {

namespace {

// Backslash and newline escaped, and the quote too in a label value (HELP text keeps it).
std::string escaped(std::string_view text, bool quote) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '"' && quote)
            out += "\\\"";
        else
            out += c;
    }
    return out;
}

// Integers as integers (counters of bytes pass 2^53 only after petabytes); others with
// enough digits to round-trip; the format's spellings of the special values.
void append_value(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
        out += std::to_string(static_cast<long long>(v));
    } else {
        char buf[32];
        for (int digits = 6; digits <= 17; digits++) {  // the shortest that reads back the same
            std::snprintf(buf, sizeof(buf), "%.*g", digits, v);
            if (std::strtod(buf, nullptr) == v) break;
        }
        out += buf;
    }
}

}  // namespace

std::string escape_label_value(std::string_view value) { return escaped(value, true); }

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += escaped(help, false);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
}

void Exposition::sample(std::string_view name, const Labels& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
        out_ += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
            if (!first) out_ += ',';
            first = false;
            out_ += k;
            out_ += "=\"";
            out_ += escape_label_value(v);
            out_ += '"';
        }
        out_ += '}';
    }
    out_ += ' ';
    append_value(out_, value);
    out_ += '\n';
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
    size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i]) i++;
    counts_[i]++;
    sum_ += value;
    count_++;
}

void Histogram::write(Exposition& out, std::string_view family, const Labels& labels) const {
    std::string bucket = std::string(family) + "_bucket";
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= bounds_.size(); i++) {
        cumulative += counts_[i];
        Labels l = labels;
        if (i < bounds_.size()) {
            std::string le;
            append_value(le, bounds_[i]);
            l.emplace_back("le", le);
        } else {
            l.emplace_back("le", "+Inf");
        }
        out.sample(bucket, l, static_cast<double>(cumulative));
    }
    out.sample(std::string(family) + "_sum", labels, sum_);
    out.sample(std::string(family) + "_count", labels, static_cast<double>(count_));
}

std::pair<std::string, std::string> SeriesCap::series(const std::string& identity, const std::string& destination) {
    auto key = std::make_pair(identity, destination);
    if (own_.count(key)) return key;
    if (own_.size() < max_) {
        own_.emplace(key, true);
        return key;
    }
    if (other_.emplace(key, true).second) folded_++;
    return {kOther, kOther};
}

void FlowTotals::fold(const std::vector<FlowReading>& readings, const Namer& name) {
    for (const auto& r : readings) {
        auto it = last_.find(r.key);
        if (it == last_.end()) it = last_.emplace(r.key, Seen{name(r.key), FlowCount{}}).first;
        FlowCount& last = it->second.last;
        FlowCount& total = totals_[it->second.series];
        // A reading below the last one: the key was made anew; all of it is new.
        bool reset = r.connections < last.connections || r.bytes_sent < last.bytes_sent ||
                     r.bytes_received < last.bytes_received;
        if (reset) last = FlowCount{};
        total.connections += r.connections - last.connections;
        total.bytes_sent += r.bytes_sent - last.bytes_sent;
        total.bytes_received += r.bytes_received - last.bytes_received;
        last = FlowCount{r.connections, r.bytes_sent, r.bytes_received};
    }
}

Result<ListenAddress> parse_listen_address(std::string_view text) {
    if (text == "none") return ListenAddress{};
    const std::string shown = "\"" + std::string(text.substr(0, 100)) + "\"";
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        return make_error(shown + " is not IPV4:PORT, [IPV6]:PORT or none");
    std::string_view host = text.substr(0, colon), port = text.substr(colon + 1);
    bool v6 = false;
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') return make_error(shown + ": an IPv6 address goes in brackets, [::1]:PORT");
        host = host.substr(1, host.size() - 2);
        v6 = true;
    }
    unsigned char buf[16];
    const std::string h(host);
    if (inet_pton(v6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1)
        return make_error(shown + ": " + h + " is not a numeric " + (v6 ? "IPv6" : "IPv4") + " address" +
                          (v6 ? "" : " (IPv6 goes in brackets; names are not resolved)"));
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
        return make_error(shown + ": the port is not a number from 1 to 65535");
    unsigned long p = std::stoul(std::string(port));
    if (p == 0 || p > 65535) return make_error(shown + ": the port is not a number from 1 to 65535");
    return ListenAddress{h, static_cast<uint16_t>(p)};
}

Result<HttpRequest> parse_http_head(std::string_view head) {
    auto eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol == std::string_view::npos ? head.size() : eol);
    auto quoted = [&] {
        std::string shown(line.substr(0, 80));
        for (char& c : shown)
            if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
        return "\"" + shown + (line.size() > 80 ? "...\"" : "\"");
    };
    auto sp1 = line.find(' ');
    auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return make_error("request line " + quoted() + " is not METHOD SP TARGET SP HTTP/1.x");
    std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                     version = line.substr(sp2 + 1);
    if (version != "HTTP/1.1" && version != "HTTP/1.0")
        return make_error("request line " + quoted() + ": version is not HTTP/1.0 or HTTP/1.1");
    if (method.empty() || target.empty() || target[0] != '/')
        return make_error("request line " + quoted() + ": the target is not an absolute path");
    for (char c : method)
        if (c < 'A' || c > 'Z') return make_error("request line " + quoted() + ": the method is not upper-case letters");
    for (char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return make_error("request line " + quoted() + ": the target has a control or non-ASCII byte");
    return HttpRequest{std::string(method), std::string(target)};
}

}  // namespace kw::core::metrics
