#!/usr/bin/env bash
# Builds the web UI's release asset, target/ui/livepeer-edge-ui-<version>.tar.gz, reproducibly
# (sorted entries, fixed owner, modes and time, gzip without name or time), and writes its
# checksums into the Yocto recipe's include, so the Jetson image installs exactly what this
# tree builds. With --check, it fails instead when the include does not match.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
(cd web-ui && npm run --silent build >/dev/null)
out=target/ui
stage=$out/livepeer-edge-ui
rm -rf "$stage"
mkdir -p "$stage"
cp -R web-ui/dist/. "$stage/"
printf 'Livepeer Edge web UI\nLicense: MIT OR Apache-2.0\n' > "$stage/COPYING"
asset=$out/livepeer-edge-ui-$version.tar.gz
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u=rwX,go=rX \
  -C "$out" -cf - livepeer-edge-ui | gzip -9n > "$asset"
sha256=$(sha256sum "$asset" | cut -d' ' -f1)
copying_md5=$(md5sum "$stage/COPYING" | cut -d' ' -f1)
inc=yocto/meta-livepeer-edge/recipes-livepeer/livepeer-edge-ui/livepeer-edge-ui-checksum.inc
expected=$(printf '# Written by scripts/ui-asset.sh from this tree'"'"'s web UI; do not edit.\nSRC_URI[sha256sum] = "%s"\nLIVEPEER_EDGE_UI_COPYING_MD5 = "%s"\n' "$sha256" "$copying_md5")
if [ "${1:-}" = --check ]; then
  if [ "$expected" != "$(cat "$inc" 2>/dev/null)" ]; then
    echo "$inc does not match the web UI this tree builds: run scripts/ui-asset.sh" >&2
    exit 1
  fi
else
  printf '%s\n' "$expected" > "$inc"
  echo "$asset"
fi
