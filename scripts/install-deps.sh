#!/usr/bin/env bash
# Installs everything kwarden needs to build and test, from Debian's archive only.
# Idempotent: a second run does nothing but check. Needs root (CI and dev machines are).
#
#   host packages   bookworm, plus bookworm-backports pinned per package for
#                   libbpf-dev, bpftool and catch2 (bookworm's are too old)
#   guest kernels   Debian 6.12 (bookworm-security) and 6.1 (bookworm), extracted into
#                   .cache/kernels/<ver>/ and never installed as the host kernel
#   virtme-ng       the one Architecture: all .deb from trixie, fetched with a private
#                   apt sources list; trixie is never added to the system's sources
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cache="$top/.cache"
stamp="$cache/deps.stamp"
mkdir -p "$cache"

# Bump when the lists below change, so that existing checkouts install the new set.
deps_version=11
if [[ -f $stamp && $(cat "$stamp") == "$deps_version" ]]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
sudo=""
[[ $(id -u) -eq 0 ]] || sudo=sudo

backports=/etc/apt/sources.list.d/kwarden-bookworm-backports.sources
if [[ ! -f $backports ]]; then
    $sudo tee "$backports" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
# Backports default to priority 100 and are only used for the packages pinned here.
$sudo tee /etc/apt/preferences.d/kwarden-backports >/dev/null <<'PIN'
Package: libbpf-dev libbpf1 bpftool catch2
Pin: release n=bookworm-backports
Pin-Priority: 990
PIN

$sudo apt-get update -qq

host_pkgs=(
    build-essential cmake pkg-config clang-14 llvm-14 lld-14
    libclang-rt-14-dev  # libFuzzer and the sanitizers (make fuzz)
    libelf-dev zlib1g-dev libzstd-dev
    libbpf-dev bpftool catch2
    libboost-dev libboost-system-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
    android-libboringssl-dev
    liburing-dev python3 iproute2 socat curl jq openssl tcpdump stunnel4 gnuplot-nox
    crun runc  # the OCI runtimes the container tests start (the guest runs the host's root)
    containerd python3-grpcio  # containerd's CRI, driven by test/e2e/tools/kw_cri.py
    gnutls-bin golang-go  # TLS peers of the interop tests: GnuTLS's tools, Go's crypto/tls
    qemu-system-x86 udev busybox-static kmod cpio
    python3-argcomplete python3-requests python3-jsonschema
)
$sudo apt-get install -y -qq --no-install-recommends "${host_pkgs[@]}" >/dev/null

# Guest kernels: (label, package, suite).
fetch_kernel() {
    local label=$1 pkg=$2 dir="$cache/kernels/$1"
    [[ -f $dir/ready ]] && return 0
    rm -rf "$dir" && mkdir -p "$dir/deb"
    (cd "$dir/deb" && apt-get download -qq "$pkg")
    # linux-image-amd64 / linux-image-6.12-amd64 are metapackages: follow to the image.
    local real
    real=$(dpkg-deb -f "$dir"/deb/*.deb Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
    if [[ -n $real ]]; then
        rm -f "$dir"/deb/*.deb
        (cd "$dir/deb" && apt-get download -qq "$real")
    fi
    dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
    local kver
    kver=$(ls "$dir/root/lib/modules")
    depmod -b "$dir/root" "$kver"
    ln -sfn "root/boot/vmlinuz-$kver" "$dir/vmlinuz"
    echo "$kver" >"$dir/release"
    rm -rf "$dir/deb"
    touch "$dir/ready"
}
# 6.12 from bookworm-security is linux-image-6.12-amd64 (metapackage -> 6.12.x image).
fetch_kernel 6.12 linux-image-6.12-amd64
fetch_kernel 6.1 linux-image-amd64

# virtme-ng from trixie, through a private apt root so the system never sees trixie.
if ! command -v vng >/dev/null; then
    aroot="$cache/apt-trixie"
    mkdir -p "$aroot"/{lists/partial,archives/partial,etc/preferences.d}
    cat >"$aroot/etc/sources.list" <<'SRC'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
    opts=(-o Dir::Etc::SourceList="$aroot/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::Etc::Preferences="$aroot/etc/preferences" -o Dir::Etc::PreferencesParts="$aroot/etc/preferences.d"
          -o Dir::State::Lists="$aroot/lists" -o Dir::Cache::Archives="$aroot/archives"
          -o Dir::State::Status=/dev/null -o APT::Architecture=amd64)
    apt-get "${opts[@]}" update -qq
    (cd "$aroot" && apt-get "${opts[@]}" download -qq virtme-ng)
    # Its dependencies are all in bookworm; install what it declares, then the .deb.
    deb=$(ls "$aroot"/virtme-ng_*.deb)
    $sudo apt-get install -y -qq --no-install-recommends "$deb" >/dev/null
fi

# The containers' default seccomp profile, which deploy/seccomp/kwarden.json is made from
# (scripts/seccomp-profile): extracted from golang-github-containers-common, not
# installed (the package depends on a container network stack).
if [[ ! -f $cache/containers-common/seccomp.json ]]; then
    rm -rf "$cache/containers-common" && mkdir -p "$cache/containers-common/deb"
    (cd "$cache/containers-common/deb" && apt-get download -qq golang-github-containers-common)
    dpkg-deb -x "$cache"/containers-common/deb/*.deb "$cache/containers-common/root"
    cp "$cache/containers-common/root/usr/share/containers/seccomp.json" "$cache/containers-common/seccomp.json"
    rm -rf "$cache/containers-common/deb" "$cache/containers-common/root"
fi

# Prometheus and promtool for the metrics test (t_metrics), extracted from Debian's
# prometheus package rather than installed: the package would start a Prometheus
# service on this machine.
if [[ ! -x $cache/prometheus/bin/prometheus ]]; then
    rm -rf "$cache/prometheus" && mkdir -p "$cache/prometheus/deb"
    (cd "$cache/prometheus/deb" && apt-get download -qq prometheus)
    dpkg-deb -x "$cache"/prometheus/deb/*.deb "$cache/prometheus/root"
    mkdir -p "$cache/prometheus/bin"
    cp "$cache/prometheus/root/usr/bin/prometheus" "$cache/prometheus/root/usr/bin/promtool" "$cache/prometheus/bin/"
    rm -rf "$cache/prometheus/deb" "$cache/prometheus/root"
fi

echo "$deps_version" >"$stamp"
echo "kwarden: dependencies installed"
