// Signing authority, CA files and minting (see authority.h).
#include "identity/authority.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/mem.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/unique_fd.h"

namespace kw::identity {
namespace {

constexpr size_t kMaxPemFile = 1 << 20;
// The trust domain path used for the load-time self check of a signing authority.
constexpr std::string_view kSelfCheckPath = "/kwarden/self-check";

std::string join(const std::string& dir, std::string_view name) { return dir + "/" + std::string(name); }

X509Ptr share(X509* cert) {
    X509_up_ref(cert);
    return X509Ptr(cert);
}

std::string errno_text(int err) { return std::strerror(err); }

// A PEM file that holds a key: its bytes are cleared when this goes out of scope.
class SecretText {
public:
    explicit SecretText(std::string text) : text_(std::move(text)) {}
    SecretText(const SecretText&) = delete;
    SecretText& operator=(const SecretText&) = delete;
    ~SecretText() { OPENSSL_cleanse(text_.data(), text_.size()); }
    const std::string& str() const { return text_; }

private:
    std::string text_;
};

Result<void> read_file(const std::string& path, std::string& out) {
    core::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) return make_error("cannot read " + path + ": " + errno_text(errno));
    struct stat st {};
    if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return make_error(path + " is not a regular file");
    if (static_cast<size_t>(st.st_size) > kMaxPemFile)
        return make_error(path + " is " + std::to_string(st.st_size) + " bytes; a PEM file here is at most 1 MiB");
    out.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return make_error("cannot read " + path + ": " + (n < 0 ? errno_text(errno) : "short read"));
        got += static_cast<size_t>(n);
    }
    return {};
}

Result<std::vector<X509Ptr>> read_certs(const std::string& path) {
    std::string text;
    if (auto r = read_file(path, text); !r) return r.error();
    auto certs = certs_from_pem(text);
    if (!certs) return make_error(path + ": " + certs.message());
    return certs;
}

Result<KeyPtr> read_key(const std::string& path) {
    std::string text;
    if (auto r = read_file(path, text); !r) return r.error();
    SecretText secret(std::move(text));
    auto key = private_key_from_pem(secret.str());
    if (!key) return make_error(path + ": " + key.message());
    return key;
}

// A directory for key files: created 0700 when absent; when present, a real directory of
// ours that nobody else can read into.
Result<void> ensure_private_dir(const std::string& dir) {
    if (::mkdir(dir.c_str(), 0700) == 0) return {};
    if (errno != EEXIST) return make_error("cannot create directory " + dir + ": " + errno_text(errno));
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0) return make_error("cannot stat " + dir + ": " + errno_text(errno));
    if (!S_ISDIR(st.st_mode)) return make_error(dir + " exists and is not a directory");
    if (st.st_uid != ::geteuid())
        return make_error(dir + " belongs to uid " + std::to_string(st.st_uid) + ", not to us: key files go in a directory we own");
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
        return make_error(dir + " is mode " + mode + ": a directory holding keys must be 0700 (chmod 700 " + dir + ")");
    }
    return {};
}

struct OutFile {
    std::string_view name;
    const std::string* content;
};

// Writes each file 0600 through a temporary file and a rename, so a reader never sees a
// half-written key. Without FORCE nothing is written if any target exists.
Result<std::vector<std::string>> write_private_files(const std::string& dir, const std::vector<OutFile>& files,
                                                     bool force) {
    if (auto r = ensure_private_dir(dir); !r) return r.error();
    if (!force) {
        std::string existing;
        for (const OutFile& f : files)
            if (::access(join(dir, f.name).c_str(), F_OK) == 0) existing += (existing.empty() ? "" : ", ") + join(dir, f.name);
        if (!existing.empty()) return make_error(existing + " already exist(s): refusing to overwrite (use --force)");
    }
    std::vector<std::string> written;
    for (const OutFile& f : files) {
        std::string path = join(dir, f.name);
        std::string tmp = join(dir, "." + std::string(f.name) + ".tmp");
        ::unlink(tmp.c_str());
        core::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!fd.valid()) return make_error("cannot create " + tmp + ": " + errno_text(errno));
        const std::string& data = *f.content;
        size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                int err = errno;
                ::unlink(tmp.c_str());
                return make_error("cannot write " + tmp + ": " + errno_text(err));
            }
            done += static_cast<size_t>(n);
        }
        if (::fchmod(fd.get(), 0600) != 0 || ::fsync(fd.get()) != 0) {
            int err = errno;
            ::unlink(tmp.c_str());
            return make_error("cannot sync " + tmp + ": " + errno_text(err));
        }
        int rc = force ? ::rename(tmp.c_str(), path.c_str())
                       : ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
        if (rc != 0) {
            int err = errno;
            ::unlink(tmp.c_str());
            return make_error("cannot install " + path + ": " + errno_text(err));
        }
        written.push_back(path);
    }
    return written;
}

std::string pem_of(const std::vector<X509*>& certs) {
    std::string out;
    for (X509* c : certs) out += to_pem(c);
    return out;
}

Result<core::SpiffeId> trust_domain_id(std::string_view trust_domain) {
    if (auto td = core::validate_trust_domain(trust_domain); !td)
        return make_error("trust domain '" + std::string(trust_domain) + "': " + td.message());
    return core::SpiffeId{std::string(trust_domain), ""};
}

// A self-signed root and an intermediate it signs, both for TRUST_DOMAIN.
struct CaPair {
    X509Ptr root;
    KeyPtr root_key;
    X509Ptr intermediate;
    KeyPtr intermediate_key;
};

Result<CaPair> make_ca_pair(std::string_view trust_domain, TimePoint now, Seconds root_ttl, Seconds intermediate_ttl,
                            std::string_view label) {
    if (auto td = trust_domain_id(trust_domain); !td) return td.error();
    if (intermediate_ttl > root_ttl)
        return make_error("the intermediate TTL must not be longer than the root's: it cannot outlive its issuer");
    CaPair ca;
    auto root_key = generate_p256_key();
    if (!root_key) return root_key.error();
    auto root = issue_certificate(ca_template(trust_domain, std::string(label) + " root CA", now, root_ttl),
                                  root_key->get(), nullptr, nullptr);
    if (!root) return root.error();
    auto int_key = generate_p256_key();
    if (!int_key) return int_key.error();
    auto inter = issue_certificate(
        ca_template(trust_domain, std::string(label) + " intermediate CA", now, intermediate_ttl), int_key->get(),
        root->get(), root_key->get());
    if (!inter) return inter.error();
    ca.root = std::move(*root);
    ca.root_key = std::move(*root_key);
    ca.intermediate = std::move(*inter);
    ca.intermediate_key = std::move(*int_key);
    return ca;
}

}  // namespace

Result<std::shared_ptr<const SigningAuthority>> SigningAuthority::from_parts(X509Ptr signer, KeyPtr key,
                                                                             std::vector<X509Ptr> chain_up,
                                                                             std::vector<X509Ptr> roots, TimePoint now,
                                                                             std::string source) {
    if (!signer || !key) return make_error(source + ": no signing certificate or key");
    if (roots.empty()) return make_error(source + ": no root certificate (the trust bundle would be empty)");
    if (X509_check_private_key(signer.get(), key.get()) != 1)
        return make_error(source + ": the key does not belong to the signing certificate");
    auto td = validate_signing_certificate(signer.get());
    if (!td) return make_error(source + ": " + td.message());
    if (td->empty()) return make_error(source + ": the signing certificate carries no SPIFFE ID, so its trust domain is unknown");

    std::shared_ptr<SigningAuthority> ca(new SigningAuthority());
    ca->trust_domain_ = *td;
    ca->signer_ = std::move(signer);
    ca->key_ = std::move(key);
    ca->chain_up_ = std::move(chain_up);
    ca->bundle_.trust_domain = *td;
    ca->bundle_.x509_authorities = std::move(roots);
    ca->bundle_.sequence = 1;
    ca->bundle_.refresh_hint_seconds = kBundleRefreshHint.count();
    ca->source_ = std::move(source);

    // Self check with the one validator peers use: an SVID from this CA must verify against
    // this CA's bundle now. It catches a wrong root, a broken chain and expired certificates.
    auto probe = ca->issue(core::SpiffeId{*td, std::string(kSelfCheckPath)}, Seconds(60), now);
    if (!probe) return make_error(ca->source_ + ": " + probe.message());
    std::vector<X509*> inter;
    for (const auto& c : (*probe)->intermediates) inter.push_back(c.get());
    BundleSet bundles{{ca->trust_domain_, &ca->bundle_}};
    if (auto v = verify_svid((*probe)->cert.get(), inter, bundles, now); !v)
        return make_error(ca->source_ + ": an SVID it issues does not verify against its own root: " + v.message());
    return std::shared_ptr<const SigningAuthority>(std::move(ca));
}

Result<std::shared_ptr<const SigningAuthority>> SigningAuthority::load_dir(const std::string& dir, TimePoint now) {
    auto chain = read_certs(join(dir, kIntermediateCertFile));
    if (!chain) return chain.error();
    auto key = read_key(join(dir, kIntermediateKeyFile));
    if (!key) return key.error();
    auto roots = read_certs(join(dir, kRootCertFile));
    if (!roots) return roots.error();
    X509Ptr signer = std::move(chain->front());
    std::vector<X509Ptr> up;
    for (size_t i = 1; i < chain->size(); ++i) up.push_back(std::move((*chain)[i]));
    return from_parts(std::move(signer), std::move(*key), std::move(up), std::move(*roots), now, dir);
}

Result<std::shared_ptr<const SigningAuthority>> SigningAuthority::ephemeral(std::string_view trust_domain,
                                                                            TimePoint now, Seconds ttl) {
    auto ca = make_ca_pair(trust_domain, now, ttl, ttl, "kwarden ephemeral");
    if (!ca) return ca.error();
    std::vector<X509Ptr> roots;
    roots.push_back(std::move(ca->root));
    // The root key is dropped here: nothing can sign another intermediate for this domain.
    return from_parts(std::move(ca->intermediate), std::move(ca->intermediate_key), {}, std::move(roots), now,
                      "ephemeral");
}

Result<std::shared_ptr<const Svid>> SigningAuthority::issue(const core::SpiffeId& id, Seconds ttl,
                                                            TimePoint now) const {
    if (id.trust_domain != trust_domain_)
        return make_error("cannot issue an SVID for " + id.str() + ": this CA signs for trust domain '" +
                          trust_domain_ + "'");
    TimePoint expiry = std::min(now + ttl, signer_not_after());
    if (expiry <= now)
        return make_error("the signing certificate of " + source_ + " expired at " + format_time(signer_not_after()) +
                          ": sign a new intermediate (kwarden ca sign-intermediate)");
    auto key = generate_p256_key();
    if (!key) return key.error();
    CertTemplate tmpl = leaf_template(id, now, ttl);
    tmpl.not_after = expiry;
    auto cert = issue_certificate(tmpl, key->get(), signer_.get(), key_.get());
    if (!cert) return make_error("issuing an SVID for " + id.str() + ": " + cert.message());

    auto svid = std::make_shared<Svid>();
    svid->id = id;
    svid->serial = serial_hex(cert->get());
    svid->fingerprint = sha256_fingerprint(cert->get());
    svid->cert = std::move(*cert);
    svid->key = std::move(*key);
    svid->intermediates.push_back(share(signer_.get()));
    for (const auto& c : chain_up_) svid->intermediates.push_back(share(c.get()));
    svid->issued_at = now;
    svid->not_after = expiry;
    svid->ttl = ttl;
    svid->rotate_at = now + (expiry - now) / 2;
    return std::shared_ptr<const Svid>(std::move(svid));
}

Result<std::vector<std::string>> ca_init(const CaInitOptions& options, TimePoint now) {
    auto ca = make_ca_pair(options.trust_domain, now, options.root_ttl, options.intermediate_ttl, "kwarden");
    if (!ca) return ca.error();
    std::string root_pem = to_pem(ca->root.get());
    std::string inter_pem = to_pem(ca->intermediate.get());
    SecretText root_key(private_key_to_pem(ca->root_key.get()));
    SecretText inter_key(private_key_to_pem(ca->intermediate_key.get()));
    return write_private_files(options.out_dir,
                               {{kRootCertFile, &root_pem},
                                {kRootKeyFile, &root_key.str()},
                                {kIntermediateCertFile, &inter_pem},
                                {kIntermediateKeyFile, &inter_key.str()}},
                               options.force);
}

Result<std::vector<std::string>> ca_sign_intermediate(const SignIntermediateOptions& options, TimePoint now) {
    auto roots = read_certs(join(options.root_dir, kRootCertFile));
    if (!roots) return roots.error();
    if (roots->size() != 1)
        return make_error(join(options.root_dir, kRootCertFile) + " holds " + std::to_string(roots->size()) +
                          " certificates; sign-intermediate needs the one root that root.key belongs to");
    auto root_key = read_key(join(options.root_dir, kRootKeyFile));
    if (!root_key) return root_key.error();
    X509* root = roots->front().get();
    if (X509_check_private_key(root, root_key->get()) != 1)
        return make_error(join(options.root_dir, kRootKeyFile) + " does not belong to " +
                          join(options.root_dir, kRootCertFile));
    auto td = validate_signing_certificate(root);
    if (!td) return make_error(join(options.root_dir, kRootCertFile) + ": " + td.message());
    if (td->empty()) return make_error(join(options.root_dir, kRootCertFile) + " carries no SPIFFE ID: unknown trust domain");
    if (now + options.ttl > not_after(root))
        return make_error("an intermediate valid for " + std::to_string(options.ttl.count()) +
                          "s would outlive the root (not after " + format_time(not_after(root)) + "): pick a shorter --ttl");

    auto key = generate_p256_key();
    if (!key) return key.error();
    auto inter = issue_certificate(ca_template(*td, "kwarden intermediate CA", now, options.ttl), key->get(), root,
                                   root_key->get());
    if (!inter) return inter.error();
    // Check what we are about to hand out with the same self check the agent runs.
    std::vector<X509Ptr> bundle_roots;
    bundle_roots.push_back(share(root));
    EVP_PKEY_up_ref(key->get());
    auto check = SigningAuthority::from_parts(share(inter->get()), KeyPtr(key->get()), {}, std::move(bundle_roots), now,
                                              options.out_dir);
    if (!check) return check.error();

    std::string root_pem = to_pem(root);
    std::string inter_pem = to_pem(inter->get());
    SecretText inter_key(private_key_to_pem(key->get()));
    return write_private_files(options.out_dir,
                               {{kRootCertFile, &root_pem},
                                {kIntermediateCertFile, &inter_pem},
                                {kIntermediateKeyFile, &inter_key.str()}},
                               options.force);
}

Result<std::vector<std::string>> svid_mint(const MintOptions& options, TimePoint now) {
    auto id = core::parse_spiffe_id(options.spiffe_id);
    if (!id) return make_error("--id '" + options.spiffe_id + "': " + id.message());
    if (id->path.empty())
        return make_error("--id '" + options.spiffe_id + "' names only the trust domain: an SVID needs a path");
    auto ca = SigningAuthority::load_dir(options.ca_dir, now);
    if (!ca) return ca.error();
    auto svid = (*ca)->issue(*id, options.ttl, now);
    if (!svid) return svid.error();
    std::vector<X509*> chain{(*svid)->cert.get()};
    for (const auto& c : (*svid)->intermediates) chain.push_back(c.get());
    std::string chain_pem = pem_of(chain);
    std::vector<X509*> roots;
    for (const auto& r : (*ca)->bundle().x509_authorities) roots.push_back(r.get());
    std::string bundle_pem = pem_of(roots);
    SecretText key(private_key_to_pem((*svid)->key.get()));
    return write_private_files(options.out_dir,
                               {{kSvidCertFile, &chain_pem}, {kSvidKeyFile, &key.str()}, {kSvidBundleFile, &bundle_pem}},
                               options.force);
}

Result<TrustBundle> bundle_of_ca_dir(const std::string& dir) {
    auto roots = read_certs(join(dir, kRootCertFile));
    if (!roots) return roots.error();
    TrustBundle bundle;
    for (auto& r : *roots) {
        auto td = validate_signing_certificate(r.get());
        if (!td) return make_error(join(dir, kRootCertFile) + ": " + td.message());
        if (bundle.trust_domain.empty()) bundle.trust_domain = *td;
        if (td->empty() || *td != bundle.trust_domain)
            return make_error(join(dir, kRootCertFile) + ": every root must carry the SPIFFE ID of one trust domain");
    }
    bundle.x509_authorities = std::move(*roots);
    bundle.sequence = 1;
    bundle.refresh_hint_seconds = kBundleRefreshHint.count();
    return bundle;
}

}  // namespace kw::identity
