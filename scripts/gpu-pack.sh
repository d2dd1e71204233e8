#!/usr/bin/env bash
# Packs kokon's GPU checks for a lent GPU machine that has no package registry
# and takes uploads of at most 64 MiB (see ../shared/tools/gpu-stage.sh, which
# this runs for onnxruntime-gpu). The payload: release binaries built with the
# `cuda` feature (kokon, kokon-enclave, kokon-bench, the two gpu test binaries),
# magika's package, the text model's GGUF (the GPU machine converts it with
# scripts/llm/gguf_to_onnx.py, and the digests must equal this machine's),
# and the gguf and onnx wheels the converter imports. It is one tar, split
# over .device/c4 (beside onnxruntime) and .device/c5, c6, ...
#
# Then, on the GPU machine, one `run` each, back to back:
#   carry .device/c1, c2, c3, c5, c6, ...: mkdir -p /root/stage && cp .device/cN/* /root/stage/
#   carry .device/c4: source .device/c4/unstage.sh && bash scripts/gpu-run.sh
# usage: scripts/gpu-pack.sh   (KOKON_GPU_TARGET: the cargo target directory, default target/gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
set -a; source .cache/kokon.env; set +a
target=${KOKON_GPU_TARGET:-target/gpu}
chunk=62000000
cargo build --profile image --target-dir "$target" --features kokon-tests/cuda \
  -p kokon -p kokon-enclave -p kokon-tests --bins
# The GPU test binaries: kokon-tests' (CUDA inference) and kokon-enclave's
# (NVML: the GPUs' confidential-computing state), as <package> <path> lines.
tests=$(cargo test --profile image --target-dir "$target" --features kokon-tests/cuda \
  -p kokon-tests -p kokon-enclave --test gpu --no-run --message-format json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["target"]["src_path"].split("/")[-3], m["executable"])')
[ "$(echo "$tests" | wc -l)" = 2 ] || { echo "gpu-pack: expected two gpu test binaries, got: $tests" >&2; exit 1; }
payload=$(mktemp -d)
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/bin" "$payload/wheels"
for b in kokon kokon-enclave kokon-bench; do cp "$target/image/$b" "$payload/bin/"; done
echo "$tests" | while read -r package path; do cp "$path" "$payload/bin/$package-gpu-tests"; done
cp -r "$KOKON_MAGIKA_DIR" "$payload/magika"
rm -rf "$payload/magika/__pycache__"
cp "$KOKON_LLM_GGUF" "$payload/model.gguf"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$payload/wheels" "gguf==$("$KOKON_PYTHON" -c 'import importlib.metadata as m; print(m.version("gguf"))')" \
  "onnx==$("$KOKON_PYTHON" -c 'import importlib.metadata as m; print(m.version("onnx"))')"
# What the conversion there must reproduce.
(cd "$KOKON_LLM_DIR" && sha256sum model.onnx tokenizer.json kokon-llm.json) > "$payload/llm.sha256"
git rev-parse HEAD > "$payload/commit"
pwd > "$payload/checkout"
(cd "$target/image" && pwd) > "$payload/target"   # the tests' CARGO_BIN_EXE_* paths
cp -r ../shared/fixtures/nvidia "$payload/fixtures-nvidia"   # enclave/tests/gpu.rs reads them
(cd "$payload" && sha256sum bin/* model.gguf > payload.sha256)
tar -C "$payload" -cf - . | zstd -q -T0 -6 > "$payload.tar.zst"
bash ../shared/tools/gpu-stage.sh
room=$(( chunk - $(du -sb .device/c4 | cut -f1) ))
head -c "$room" "$payload.tar.zst" > .device/c4/payload.part0
tail -c +$(( room + 1 )) "$payload.tar.zst" | split -b "$chunk" -d -a 1 - "$payload.rest."
n=5
for part in "$payload".rest.*; do
  mkdir -p ".device/c$n"
  mv "$part" ".device/c$n/payload.part$(( n - 4 ))"
  n=$(( n + 1 ))
done
rm -f "$payload.tar.zst"
du -sh .device/c*
echo "gpu-pack: upload c1 c2 c3 $(seq -s ' ' -f 'c%g' 5 $(( n - 1 ))) into /root/stage, then c4 with: source .device/c4/unstage.sh && bash scripts/gpu-run.sh" >&2
