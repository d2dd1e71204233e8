#!/usr/bin/env bash
# The guest image from source, twice: two clones of HEAD at different paths,
# each with its own target directory, build the guest binaries with
# scripts/image-binaries.sh and an image from them; every binary and every
# image artifact must be byte for byte the same. Long (two release builds
# from scratch): `just image-repro`, not part of `just test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
kokon=${KOKON_BIN:-$root/target/release/kokon}
# The model the images serve ($KOKON_MODEL, which `just setup` writes here).
set -a; source .cache/kokon.env; set +a
work=$(mktemp -d "${TMPDIR:-/tmp}/kokon-repro.XXXXXX")
trap 'rm -rf "$work"' EXIT
sides=("$work/a" "$work/b/a-longer/path")
for side in "${sides[@]}"; do
  mkdir -p "$side"
  git clone -q "$root" "$side/kokon"
  echo "building the guest binaries in $side/kokon" >&2
  "$side/kokon/scripts/image-binaries.sh"
  "$kokon" image build --out "$side/image" --lock "$side/kokon/image/debian.lock" \
      --enclave "$side/kokon/target/image/kokon-enclave" --init "$side/kokon/target/image/kokon-init"
done
status=0
for file in kokon/target/image/kokon-enclave kokon/target/image/kokon-init \
            image/OVMF.fd image/OVMF.amdsev.fd image/vmlinuz image/initrd.img image/cmdline image/manifest.json; do
  a=$(sha256sum < "${sides[0]}/$file" | cut -d' ' -f1)
  b=$(sha256sum < "${sides[1]}/$file" | cut -d' ' -f1)
  if [ "$a" = "$b" ]; then
    echo "same      $a  $file"
  else
    echo "DIFFERENT $a $b  $file"
    status=1
  fi
done
if [ $status -ne 0 ]; then
  echo "not reproducible: the files marked DIFFERENT differ between two builds of $(git rev-parse --short HEAD)" >&2
else
  echo "reproducible: two builds of $(git rev-parse --short HEAD) at different paths are identical" >&2
fi
exit $status
