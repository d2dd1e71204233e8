#!/usr/bin/env bash
# kokon's GPU checks, on a lent GPU machine once scripts/gpu-pack.sh's uploads
# have arrived and .device/c4/unstage.sh was sourced (onnxruntime-gpu in
# /opt/ort-gpu, KOKON_ORT_LIB and LD_LIBRARY_PATH exported). Run from the
# checkout's root. Writes its logs to $OUT (or /tmp/kokon-out):
#   gpu.txt        the card and driver (nvidia-smi)
#   convert.log    the text model converted there, and its digests against this machine's
#   enclave-gpu-tests.log  enclave/tests/gpu.rs: NVML, the GPUs' CC state
#   tests-gpu-tests.log    tests/tests/gpu.rs: magika and the text model on CUDA
#   bench.log      `kokon-bench gpu`: magika and the text model, GPU against CPU
set -uo pipefail
root=$(pwd)
out=${OUT:-/tmp/kokon-out}
work=/tmp/kokon
mkdir -p "$out" "$work"
log() { echo "gpu-run: $*" | tee -a "$out/summary.txt" >&2; }
export PATH=$root/.device/c4:$PATH   # gpu-stage's zstd
parts=$(ls /root/stage/payload.part* 2>/dev/null | sort -V)
cat "$root/.device/c4/payload.part0" $parts \
  | zstd -d -q | tar -C "$work" -xf - || { log "payload incomplete: upload c5.. again"; exit 1; }
(cd "$work" && sha256sum -c --quiet payload.sha256) || { log "payload corrupt"; exit 1; }
log "payload of commit $(cat "$work/commit") unpacked"
# The binaries find the checkout where they were built (their tests read
# llm/tests/data and .cache/kokon.env from there).
built_root=$(cat "$work/checkout")
if [ "$built_root" != "$root" ] && [ ! -e "$built_root" ]; then
  mkdir -p "$(dirname "$built_root")" && ln -s "$root" "$built_root"
fi
log "checkout $root, built at $built_root"
# The binaries where the tests were built to find them, and the NVIDIA
# fixtures beside the checkout, as ../shared is on the machine that built them.
target_dir=$(cat "$work/target")
mkdir -p "$target_dir"
for b in kokon kokon-enclave; do [ -e "$target_dir/$b" ] || ln -s "$work/bin/$b" "$target_dir/$b"; done
fixtures=$(dirname "$built_root")/shared/fixtures
[ -e "$fixtures/nvidia" ] || { mkdir -p "$fixtures" && cp -r "$work/fixtures-nvidia" "$fixtures/nvidia"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv | tee "$out/gpu.txt"
nvidia-smi -q | grep -i -A3 "confidential\|cc mode\|cc state" >> "$out/gpu.txt" || true
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$work"/wheels/*.whl \
  && export PYTHONPATH=/tmp/site
start=$(date +%s)
python3 "$root/scripts/llm/gguf_to_onnx.py" "$work/model.gguf" "$work/llm" --name smollm2-135m-instruct \
  > "$out/convert.log" 2>&1 || { log "conversion failed"; tail "$out/convert.log"; }
log "text model converted in $(( $(date +%s) - start )) s"
if (cd "$work/llm" && sha256sum -c "$work/llm.sha256" >> "$out/convert.log" 2>&1); then
  log "the conversion there equals this machine's, file for file"
else
  log "the conversion differs from this machine's: see convert.log"
fi
mkdir -p "$root/.cache"
cat > "$root/.cache/kokon.env" <<ENV
KOKON_ORT_LIB=$KOKON_ORT_LIB
KOKON_MODEL=$work/magika/models/standard_v3_3/model.onnx
KOKON_MAGIKA_DIR=$work/magika
KOKON_PYTHON=$(command -v python3)
KOKON_LLM_GGUF=$work/model.gguf
KOKON_LLM_DIR=$work/llm
ENV
# Exported too: the variables take precedence over the file the tests read.
set -a; source "$root/.cache/kokon.env"; set +a
chmod +x "$work"/bin/*
for t in enclave tests; do
  start=$(date +%s)
  "$work/bin/$t-gpu-tests" --test-threads 1 --nocapture > "$out/$t-gpu-tests.log" 2>&1
  log "$t/tests/gpu.rs: exit $? in $(( $(date +%s) - start )) s: $(grep -E '^test result' "$out/$t-gpu-tests.log" | tail -n1)"
done
start=$(date +%s)
KOKON_BENCH_DEVICE=cuda KOKON_BENCH_SKIP_LLAMACPP=1 timeout "${KOKON_GPU_BENCH_SECONDS:-330}" \
  "$work/bin/kokon-bench" gpu > "$out/bench.log" 2>&1
log "bench: exit $? in $(( $(date +%s) - start )) s"
tail -n 40 "$out/bench.log"
