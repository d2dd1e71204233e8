#!/usr/bin/env bash
# Builds the two binaries the guest image holds, kokon-enclave and kokon-init,
# so that the same source, Cargo.lock and Rust toolchain give the same bytes
# wherever the checkout and the cargo home are (docs/image.md, "The
# binaries"). They land in target/image/. With `--cuda`, the enclave has the
# CUDA execution provider compiled in and lands as kokon-enclave-cuda (GPU
# images: `just image-gpu`).
#
#   - `--locked`: exactly the crate versions of Cargo.lock.
#   - profile `image` (Cargo.toml): release, without debug info or symbols,
#     which would carry the builder's paths and compile-time details.
#   - the checkout and the cargo home are renamed /kokon and /cargo in
#     whatever the compilers keep of them: rustc's `--remap-path-prefix`
#     (panic locations, file!()), and the C compilers' `-ffile-prefix-map`
#     for the C and assembly that crates such as ring compile.
#   - no `target-cpu=native`, no incremental compilation.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)
export RUSTFLAGS="--remap-path-prefix=$root=/kokon --remap-path-prefix=$cargo_home=/cargo"
prefix_map="-ffile-prefix-map=$root=/kokon -ffile-prefix-map=$cargo_home=/cargo"
export CFLAGS="${prefix_map}" CXXFLAGS="${prefix_map}" ASMFLAGS="${prefix_map}"
export CARGO_INCREMENTAL=0 SOURCE_DATE_EPOCH=0
unset CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
# A GPU image's enclave (--cuda) has the CUDA execution provider compiled
# in, and is kept apart as kokon-enclave-cuda (the next plain build rebuilds
# kokon-enclave).
features=()
if [ "${1:-}" = --cuda ]; then
  features=(--features cuda)
fi
cargo build --locked --profile image --target-dir "$root/target" \
    -p kokon-enclave --bin kokon-enclave "${features[@]}" -p kokon-guest --bin kokon-init
enclave=target/image/kokon-enclave
if [ ${#features[@]} -gt 0 ]; then
  cp "$enclave" target/image/kokon-enclave-cuda
  enclave=target/image/kokon-enclave-cuda
fi
echo "reproducible guest binaries:" >&2
sha256sum "$enclave" target/image/kokon-init >&2
