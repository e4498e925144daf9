# kwarden front door. `make demo` and `make test` work on a fresh Debian 12 machine:
# both install their own dependencies (scripts/install-deps.sh, idempotent).
#
#   make deps      Debian packages, guest kernels (6.12, 6.1), virtme-ng
#   make build     BPF objects, skeletons, agent, unit tests, e2e tools (build/)
#   make unit      host unit tests (no root, no kernel features)
#   make vmtest    end-to-end tests in VMs, one VM per kernel of VM_KERNELS, all at once
#                  (E2E='t_a t_b': only those tests)
#   make test      unit + vmtest: what CI runs
#   make demo      the agent with the embedded default policy, in a 6.12 VM
#   make bench     benchmarks: gate cost, throughput, latency, connection rate and memory
#                  against plaintext, stunnel4 and in-process BoringSSL (VM, ~15 min);
#                  BENCH_QUICK=1: every figure, short (what `make test` checks)
#   make vmlinux   regenerate third_party/vmlinux.h from the 6.12 guest's BTF

BUILD      ?= build
VM_KERNELS ?= 6.12 6.1
JOBS       ?= $(shell nproc)

.PHONY: all deps build unit vmtest test demo bench vmlinux clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

vmtest: build
	vmtest/matrix --timeout 1800 $(VM_KERNELS) -- test/e2e/run.sh $(E2E)

test: unit vmtest
	$(MAKE) bench BENCH_QUICK=1

demo: build
	vmtest/run --kernel 6.12 -- vmtest/demo.sh

bench: build
	bench/run --build $(BUILD) $(if $(filter 1,$(BENCH_QUICK)),--quick)

vmlinux: deps
	vmtest/run --kernel 6.12 --rwdir third_party -- \
	    sh -c 'bpftool btf dump file /sys/kernel/btf/vmlinux format c > third_party/vmlinux.h'

clean:
	rm -rf $(BUILD)
