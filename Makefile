# make run   installs what is missing (Debian 12, as root), builds Release and runs the demo.
# make test  the same set-up, then every test (CTest).
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build run test test-unit clean

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

clean:
	rm -rf $(BUILD)
