#!/usr/bin/env bash
# Installs what kokon's enclave needs to run on an NVIDIA GPU (`--device cuda`):
# ONNX Runtime's CUDA build (PyPI onnxruntime-gpu, which wants CUDA 13) and,
# unless KOKON_SYSTEM_CUDA=1 says the machine's own CUDA 13 is to be used, the
# CUDA 13 runtime, cuBLAS, cuDNN, cuFFT and cuRAND wheels it loads (its
# `cuda` and `cudnn` extras, PyPI nvidia-*), into .cache/venv-gpu, apart from
# the CPU build in .cache/venv. Writes .cache/kokon-gpu.env:
#   KOKON_ORT_LIB     onnxruntime-gpu's libonnxruntime.so (CPU and CUDA)
#   LD_LIBRARY_PATH   its directory and the CUDA libraries' (wheels or system)
# Source it (set -a; source .cache/kokon-gpu.env; set +a) before
# `kokon host --device cuda`, `just test-gpu` or `just bench-gpu`. The GPU's
# driver (libcuda.so.1, libnvidia-ml.so.1) comes from the machine.
# Then checks with ldd that every library the CUDA provider needs resolves,
# the driver's libcuda.so.1 aside. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNXRUNTIME_GPU_VERSION=1.31.1
cache=.cache
venv=$cache/venv-gpu
system_cuda=${KOKON_SYSTEM_CUDA:-0}
stamp=$venv/.kokon-$ONNXRUNTIME_GPU_VERSION-system-cuda-$system_cuda
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  if [ "$system_cuda" = 1 ]; then
    package="onnxruntime-gpu==$ONNXRUNTIME_GPU_VERSION"
  else
    package="onnxruntime-gpu[cuda,cudnn]==$ONNXRUNTIME_GPU_VERSION nvidia-cublas~=13.0"
  fi
  echo "setup-gpu: installing $package into $venv (the CUDA wheels are large)" >&2
  # shellcheck disable=SC2086 # two requirements when the CUDA wheels come too
  "$venv/bin/pip" install --quiet --disable-pip-version-check $package
  touch "$stamp"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
capi=$site/onnxruntime/capi
ort_lib=$(ls "$capi"/libonnxruntime.so.1.* | head -n1)
[ -f "$capi/libonnxruntime_providers_cuda.so" ] || { echo "setup-gpu: no CUDA provider in $capi" >&2; exit 1; }
dirs=$capi
if [ "$system_cuda" != 1 ]; then
  for d in "$site"/nvidia/*/lib; do
    [ -d "$d" ] && dirs=$dirs:$d
  done
fi
cat > $cache/kokon-gpu.env <<ENV
KOKON_ORT_LIB=$ort_lib
LD_LIBRARY_PATH=$dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
ENV
missing=$(LD_LIBRARY_PATH=$dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ldd "$capi/libonnxruntime_providers_cuda.so" \
  | awk '/not found/ {print $1}' | grep -v '^libcuda\.so' || true)
if [ -n "$missing" ]; then
  echo "setup-gpu: the CUDA provider cannot find: $(echo $missing)" >&2
  [ "$system_cuda" = 1 ] && echo "setup-gpu: install CUDA 13, cuBLAS and cuDNN 9, or run without KOKON_SYSTEM_CUDA=1" >&2
  exit 1
fi
echo "setup-gpu: ready ($cache/kokon-gpu.env); the GPU driver provides libcuda.so.1" >&2
