# kwarden front door. `make demo` and `make test` work on a fresh Debian 12 machine:
# both install their own dependencies (scripts/install-deps.sh, idempotent).
#
#   make deps      Debian packages, guest kernels (6.12, 6.1), virtme-ng
#   make build     BPF objects, skeletons, agent, unit tests, e2e tools (build/)
#   make unit      host unit tests (no root, no kernel features)
#   make vmtest    end-to-end tests in VMs, one VM per kernel of VM_KERNELS, all at once
#                  (E2E='t_a t_b': only those tests); builds the previous release's
#                  agent first, for the upgrade test (make previous)
#   make test      unit, fuzz-smoke (10 s a harness), vmtest: what CI runs
#   make demo      the agent with the embedded default policy, in a 6.12 VM
#   make bench     benchmarks: gate cost, throughput, latency, connection rate and memory
#                  against plaintext, stunnel4 and in-process BoringSSL (VM, ~15 min);
#                  BENCH_QUICK=1: every figure, short (5 min; not in `make test`, whose
#                  60-minute budget the VM tests fill)
#   make vmlinux   regenerate third_party/vmlinux.h from the 6.12 guest's BTF
#   make fuzz      every libFuzzer harness (test/fuzz/, clang build in build-fuzz/) for
#                  FUZZ_SECONDS each (600), one after the other; FUZZ_HARNESSES=policy
#                  admin ... picks some; crashes land in build-fuzz/artifacts/<harness>/
#   make fuzz-smoke  every seed and regression input once, then each harness for
#                  FUZZ_SMOKE_SECONDS (20): a fuzzing regression fails it (~4 min)

BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_HARNESSES ?=
VM_KERNELS ?= 6.12 6.1
JOBS       ?= $(shell nproc)

.PHONY: all deps build previous unit vmtest test demo bench vmlinux fuzz-build fuzz fuzz-smoke clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The agent of the release the upgrade test starts from (build/previous/kwarden).
previous: deps
	scripts/build-previous $(BUILD)/previous

vmtest: build previous
	vmtest/matrix --timeout 3000 $(VM_KERNELS) -- test/e2e/run.sh $(E2E)

# The host's checks first (a failure there fails fast), then the VMs.
test: FUZZ_SMOKE_SECONDS = 10
test: unit fuzz-smoke vmtest

demo: build
	vmtest/run --kernel 6.12 -- vmtest/demo.sh

bench: build
	bench/run --build $(BUILD) $(if $(filter 1,$(BENCH_QUICK)),--quick)

vmlinux: deps
	vmtest/run --kernel 6.12 --rwdir third_party -- \
	    sh -c 'bpftool btf dump file /sys/kernel/btf/vmlinux format c > third_party/vmlinux.h'

# The harnesses build with clang (libFuzzer) in a tree of their own: build/ stays GCC's.
$(FUZZ_BUILD)/CMakeCache.txt: test/fuzz/CMakeLists.txt
	cmake -S test/fuzz -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null

fuzz-build: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) -j$(JOBS)

fuzz: fuzz-build
	test/fuzz/run --build $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

fuzz-smoke: fuzz-build
	test/fuzz/run --build $(FUZZ_BUILD) --smoke --jobs $(JOBS) --seconds $(FUZZ_SMOKE_SECONDS) $(FUZZ_HARNESSES)

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD)
