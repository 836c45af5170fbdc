# make run   installs what is missing (Debian 12, as root), builds Release and runs the demo.
# make test  the same set-up, then every test (CTest).
# make test-asan  the unit tests built with AddressSanitizer and UndefinedBehaviorSanitizer
#                 (but test_interop and test_dist, which run in the Release build: tests/CMakeLists.txt).
# make test-engine  the engine-only build (LibTorch, no image libraries) and its smoke test.
# make check-format  clang-format's verdict on every C++ file (CI).
# make lint  clang-tidy over every source (.clang-tidy).
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build run test test-unit test-asan test-engine check-format lint clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j$(JOBS)

run: build
	HISTOSCAN=$(BUILD)/histoscan DEMO_DIR=$(BUILD)/demo bash scripts/demo.sh

test: build
	cd $(BUILD) && ctest --output-on-failure

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

# Any ASan or UBSan report fails the test that caused it; fontconfig's leak at exit (behind
# cairo) is suppressed. A crash that the probe helper contains by design (HDF5 or LibTorch on
# a damaged file) reports into /dev/null there.
test-asan: deps
	cmake -S . -B build-asan -DHISTOSCAN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-asan -j$(JOBS)
	cd build-asan && LSAN_OPTIONS=suppressions=$$PWD/lsan.supp UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ctest --output-on-failure -L unit

# -DHISTOSCAN_ENGINE_ONLY=ON finds LibTorch, nlohmann-json and CLI11 only: the training engine
# and histoscan-engine, as on a machine with a PyTorch wheel (see README, "GPUs").
# It proves the build and its smoke test, not speed: -O1 compiles it in about half the time.
test-engine: deps
	cmake -S . -B build-engine -DHISTOSCAN_ENGINE_ONLY=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG"
	cmake --build build-engine -j$(JOBS)
	cd build-engine && ctest --output-on-failure

# Every tracked C++ file as clang-format makes it (.clang-format); CI runs it first.
check-format: deps
	bash scripts/check-format.sh

# clang-tidy (.clang-tidy) over every source the Release build compiles; slow (LibTorch's headers).
lint: build
	bash scripts/lint.sh --build $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-engine
