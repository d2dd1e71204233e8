#!/usr/bin/env bash
# Installs kokon's run-time dependencies into a project-local cache (.cache/):
# ONNX Runtime's shared library (from the PyPI onnxruntime wheel) and the
# default model (magika's standard_v3_3, from the PyPI magika wheel); and the
# npm packages of the TON sandbox bridge (demo/ton-sandbox: @ton/sandbox,
# @ton/core, tonweb) from its committed lockfile.
# Idempotent: a second run finds the cache and does nothing.
# Writes .cache/kokon.env with the paths the enclave and the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
ONNXRUNTIME_VERSION=1.31.1
MAGIKA_VERSION=1.0.3
cache=.cache
venv=$cache/venv
stamp=$venv/.kokon-$ONNXRUNTIME_VERSION-$MAGIKA_VERSION
if [ ! -f "$stamp" ]; then
  echo "setup: installing onnxruntime==$ONNXRUNTIME_VERSION magika==$MAGIKA_VERSION into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==$ONNXRUNTIME_VERSION" "magika==$MAGIKA_VERSION"
  touch "$stamp"
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
root=$(pwd)
cat > $cache/kokon.env <<ENV
KOKON_ORT_LIB=$ort_lib
KOKON_MODEL=$model_dir/model.onnx
KOKON_MAGIKA_DIR=$site/magika
KOKON_MAGIKA_BIN=$root/$venv/bin/magika
KOKON_PYTHON=$root/$venv/bin/python
KOKON_TON_BRIDGE=$root/$bridge/bridge.js
ENV
echo "setup: ready ($cache/kokon.env)" >&2
