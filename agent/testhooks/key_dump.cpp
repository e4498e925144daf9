// Key dump of the test build (see key_dump.h). Raw key bytes pass only through stack
// buffers that are wiped here: whatever the agent's memory still holds afterwards is what
// the agent itself keeps, not a leftover of this hook.
#include "testhooks/key_dump.h"

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/mem.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <span>

#include "core/unique_fd.h"

namespace kw::testhooks {
namespace {

core::UniqueFd g_file;
std::set<std::string> g_dumped_serials;
uint64_t g_connections = 0;

std::string hex(const void* data, size_t size) {
    static constexpr char kDigits[] = "0123456789abcdef";
    const auto* p = static_cast<const uint8_t*>(data);
    std::string out;
    out.reserve(size * 2);
    for (size_t i = 0; i < size; ++i) {
        out += kDigits[p[i] >> 4];
        out += kDigits[p[i] & 0xf];
    }
    return out;
}

void write_line(std::string& line) {
    line += '\n';
    if (::write(g_file.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        spdlog::error("test key dump: short write: {}", std::strerror(errno));
    OPENSSL_cleanse(line.data(), line.size());
}

std::string endpoint(int fd, bool peer) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                  : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    if (rc != 0) return "?";
    char buf[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (ss.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        port = ntohs(in6->sin6_port);
    }
    return std::string(buf) + ":" + std::to_string(port);
}

// key, iv, salt and rec_seq of one tls12_crypto_info_* laid out as INFO_BYTES.
template <typename Info>
std::string crypto_info_fields(std::span<const uint8_t> info_bytes) {
    Info info;
    if (info_bytes.size() != sizeof info) return " crypto_info_size_mismatch=1";
    std::memcpy(&info, info_bytes.data(), sizeof info);
    std::string out = " key=" + hex(info.key, sizeof info.key) + " iv=" + hex(info.iv, sizeof info.iv) +
                      " salt=" + hex(info.salt, sizeof info.salt) + " rec_seq=" + hex(info.rec_seq, sizeof info.rec_seq);
    OPENSSL_cleanse(&info, sizeof info);
    return out;
}

// The crypto_info install_ktls gave the kernel for one direction, rebuilt the same way.
std::string direction_fields(tls::Cipher cipher, const tls::Secret& secret, uint64_t sequence) {
    auto info = tls::CryptoInfo::build(cipher, secret.bytes(), sequence);
    if (!info) return " error=" + info.message();
    std::string out = " secret=" + hex(secret.bytes().data(), secret.size());
    switch (cipher) {
    case tls::Cipher::aes_128_gcm:
        out += crypto_info_fields<tls12_crypto_info_aes_gcm_128>(info->bytes());
        break;
    case tls::Cipher::aes_256_gcm:
        out += crypto_info_fields<tls12_crypto_info_aes_gcm_256>(info->bytes());
        break;
    case tls::Cipher::chacha20_poly1305:
        out += crypto_info_fields<tls12_crypto_info_chacha20_poly1305>(info->bytes());
        break;
    }
    return out + " crypto_info=" + hex(info->bytes().data(), info->bytes().size());
}

}  // namespace

Result<void> open_key_dump(const std::string& path) {
    core::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!fd.valid()) return make_error("cannot open " + path + ": " + std::strerror(errno));
    g_file = std::move(fd);
    spdlog::warn("TEST BUILD: private keys and kTLS traffic keys are written to {}; never run this binary in production",
                 path);
    return {};
}

void dump_svid_keys(const identity::SvidStore& store) {
    if (!g_file.valid()) return;
    for (const auto& [id, svid] : store.all()) {
        if (!g_dumped_serials.insert(svid->serial).second) continue;
        const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(svid->key.get());
        const BIGNUM* scalar = ec ? EC_KEY_get0_private_key(ec) : nullptr;
        uint8_t raw[32];
        std::string line = "svid spiffe_id=" + id + " serial=" + svid->serial;
        if (scalar && BN_bn2bin_padded(raw, sizeof raw, scalar))
            line += " key=" + hex(raw, sizeof raw);
        else
            line += " error=not-a-P-256-key";
        OPENSSL_cleanse(raw, sizeof raw);
        write_line(line);
    }
}

void dump_traffic_keys(const char* role, pid_t tgid, const std::string& spiffe_id, int fd,
                       const tls::TrafficKeys& keys) {
    if (!g_file.valid()) return;
    std::string common = " conn=" + std::to_string(++g_connections) + " role=" + role;
    std::string where = " tgid=" + std::to_string(tgid) + " spiffe_id=" + spiffe_id + " local=" + endpoint(fd, false) +
                        " peer=" + endpoint(fd, true) + " cipher=" + std::string(tls::cipher_name(keys.cipher));
    std::string tx = "tls" + common + " dir=tx" + where + direction_fields(keys.cipher, keys.tx_secret, keys.tx_sequence);
    write_line(tx);
    std::string rx = "tls" + common + " dir=rx" + where + direction_fields(keys.cipher, keys.rx_secret, keys.rx_sequence);
    write_line(rx);
}

}  // namespace kw::testhooks
