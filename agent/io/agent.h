// The agent daemon: loads and takes over the kernel programs, applies policies
// atomically (start, SIGHUP, admin socket), streams events, and serves the admin socket.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "core/metrics.h"
#include "identity/svid_store.h"
#include "runtime/session.h"

namespace kw::io {

// One handshake worker per online CPU, at most kMaxHandshakeWorkers.
inline constexpr size_t kMaxHandshakeWorkers = 64;
size_t default_handshake_workers();

struct AgentOptions {
    std::optional<std::string> policy_path;  // none: the embedded default policy
    std::string state_dir = "/var/lib/kwarden";
    // The node's signing CA (identity/authority.h). Without intermediate.pem there the
    // agent makes an ephemeral single-machine CA for the policy's trust domain.
    std::string ca_dir = "/var/lib/kwarden/ca";
    std::string events_path;  // "" none, "-" stdout, else a file appended to
    std::string admin_socket = "/run/kwarden/admin.sock";
    std::string enroll_socket = "/run/kwarden/enroll.sock";  // kwarden exec hands listeners here
    // An OCI runtime hands containers' listeners here (linux.seccomp.listenerPath); "" none.
    std::string oci_socket = "/run/kwarden/oci.sock";
    // Keeps the listeners across agent restarts (enroll/holder.h); started if none runs.
    std::string holder_socket = "/run/kwarden/holder.sock";
    // The Prometheus endpoint (/metrics). Loopback by default: a DaemonSet gives the pod's
    // address (deploy/kubernetes). What it serves names identities and destinations.
    core::metrics::ListenAddress metrics_address{"127.0.0.1", 9977};
    std::chrono::milliseconds handshake_timeout{10000};
    // The threads mutual-TLS handshakes (client and server) run on, besides the loop's;
    // 0 (the default) runs them on the loop's thread. default_handshake_workers() is one
    // per online CPU.
    size_t handshake_workers = 0;
    std::string tls_cipher = "TLS_AES_128_GCM_SHA256";
    std::string pin_dir = "/sys/fs/bpf/kwarden";
    std::string cgroup_root = "/sys/fs/cgroup";
    // Start with the guard off (bpf/kw_guard.bpf.c): the documented way to upgrade or
    // remove kwarden. Without it the guard is turned on at start.
    bool unprotect = false;
    // What the test build (agent/testhooks/) is told; empty in the release binary, whose
    // sources never include the hooks.
    struct Hooks {
        std::function<void(const identity::SvidStore&)> svids_issued;  // after each issue or rotation
        decltype(runtime::Context::keys_installed) keys_installed;      // after each kTLS install
    } hooks;
};

// Runs until SIGTERM/SIGINT; returns the process exit code. Enforcement outlives it.
int run_agent(const AgentOptions& options);

}  // namespace kw::io
