// What a TLS 1.3 server sends after the handshake, looked at before kTLS takes the
// receive side. A server may follow its handshake with NewSessionTicket messages (OpenSSL
// sends two by default, once it has read the client's Finished); kTLS would hand them to
// the app as non-data records, and the app's first read() would fail with EIO. So the
// client reads them first: each record at the head of the socket is peeked (MSG_PEEK, not
// consumed), a copy decrypted with the receive keys, and only a record of tickets is
// consumed. Application data and alerts stay for kTLS, at the record number they need.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "core/result.h"
#include "tls/ktls.h"

namespace kw::tls {

struct NextRecord {
    enum Kind {
        incomplete,  // not all of the record has arrived yet (or nothing has)
        closed,      // the peer closed its side: nothing more will come
        ticket_record,  // only NewSessionTicket messages: consume it (consume_record)
        key_update,  // the peer changed its sending keys: kTLS here cannot follow
        other,       // application data, an alert, or a handshake message we never asked for
    } kind = incomplete;
    size_t length = 0;  // bytes of the whole record (header included), for consume_record
    int tickets = 0;    // NewSessionTicket messages in it
    uint8_t handshake_type = 0;  // other: the first handshake message's type, 0 if not a handshake
};

// Looks at the record at the head of FD's receive queue (FD non-blocking), decrypting a
// copy with KEYS' receive secret at record number KEYS.rx_sequence. Fails on a record that
// does not decrypt or is malformed: the connection is not usable.
Result<NextRecord> peek_record(int fd, const TrafficKeys& keys);

// Reads and drops the LENGTH bytes of the record peek_record looked at; the caller then
// counts it (rx_sequence + 1).
Result<void> consume_record(int fd, size_t length);

// How many tickets each server sent after its handshake, learned on the first connection
// to it (kwarden servers send none, OpenSSL's two): a server known to send none costs no
// wait; one known to send N is read until N have come; an unknown one is waited for,
// bounded. A count only grows. "None" is learned again after kRelearn, so that a server
// whose tickets came too late once is not taken for one that sends none for good (its
// clients' reads would fail with EIO). Bounded in size: when full, it starts over.
class TicketMemory {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr size_t kMaxPeers = 4096;
    static constexpr std::chrono::seconds kRelearn{60};

    std::optional<int> known(const std::string& peer, Clock::time_point now) const {
        auto it = counts_.find(peer);
        if (it == counts_.end() || (it->second.tickets == 0 && now - it->second.learned > kRelearn)) return std::nullopt;
        return it->second.tickets;
    }
    void learn(const std::string& peer, int tickets, Clock::time_point now) {
        if (counts_.size() >= kMaxPeers && !counts_.count(peer)) counts_.clear();
        auto [it, fresh] = counts_.try_emplace(peer, Learned{tickets, now});
        if (!fresh && (tickets > it->second.tickets || it->second.tickets == 0)) it->second = Learned{tickets, now};
    }
    size_t size() const { return counts_.size(); }

private:
    struct Learned {
        int tickets;
        Clock::time_point learned;
    };
    std::map<std::string, Learned> counts_;
};

}  // namespace kw::tls
