// What every mutual-TLS session the runtime runs for an enrolled process works with: the
// policy in force, the kernel, the node's SVIDs, the event sink and the loop. The agent
// fills one (io/agent.cpp); unit tests fill one with fakes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "identity/node_identity.h"
#include "runtime/kernel_port.h"
#include "runtime/loop.h"
#include "runtime/policy_view.h"
#include "tls/handshake.h"
#include "tls/ktls.h"
#include "tls/post_handshake.h"

namespace kw::runtime {

struct Context {
    std::function<std::shared_ptr<const PolicyView>()> policy;
    // Null: a kernel that grants nothing (no identity, every mark refused), so every
    // mutual-TLS call fails closed.
    KernelPort* kernel = nullptr;
    const identity::NodeIdentity* identity = nullptr;
    std::function<void(const nlohmann::json&)> emit;
    Loop* loop = nullptr;
    // The threads handshakes step on (each step runs there, what follows on the loop);
    // null: on the loop's thread.
    Offload* handshakes = nullptr;
    // The session tickets each mutual-TLS server sends after its handshake (learned).
    tls::TicketMemory* tickets = nullptr;
    // The TLS contexts handshakes share (one per SVID, role and suite); null: each
    // handshake makes its own.
    tls::ContextCache* contexts = nullptr;
    std::chrono::milliseconds handshake_timeout{10000};
    tls::Cipher cipher = tls::Cipher::aes_128_gcm;
    // Called with the keys just installed on a socket: the test build's key dump
    // (testhooks/); empty in the release build.
    std::function<void(const char* role, pid_t tgid, const std::string& spiffe_id, int fd,
                       const tls::TrafficKeys& keys)>
        keys_installed;
};

// The kernel of a Context without one.
KernelPort& no_kernel();

}  // namespace kw::runtime
