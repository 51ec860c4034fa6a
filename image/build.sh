#!/usr/bin/env bash
# Builds the x86-64 development image and a signed update bundle of the same root:
#   target/image/disk.img      GPT: ESP (GRUB EFI + RAUC's slot logic), root slots A and B,
#                              the data partition; boot it with image/run-vm.sh
#   target/image/update.raucb  a RAUC bundle of the root slot, signed by the development CA
# Nothing is mounted: filesystems are made from directories (mkfs.ext4 -d, mtools) and the
# disk is assembled with sfdisk and dd. The Debian tree is cached by content (the package
# list and this recipe's bootstrap step), so a rebuild after a node change takes seconds, and
# the outputs by their inputs: building what was built before only checks that.
#
# Environment: IMAGE_PROFILE (cargo profile of the node, default release; the test suite
# uses dev), IMAGE_VERSION (the bundle's version, default the node's), IMAGE_KEYS (the
# signing key and CA, default target/image/keys: generated once, never in the repository),
# IMAGE_OUT (where the disk and bundle go, default target/image), IMAGE_OVERLAY (a directory
# copied over the root last: a venue's own configuration), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
# stdout carries only the disk's path (the last line); everything else is progress.
exec 3>&1 1>&2
./scripts/deps.sh >/dev/null

PROFILE=${IMAGE_PROFILE:-release}
OUT=${IMAGE_OUT:-target/image}
CACHE=target/image/cache
KEYS=${IMAGE_KEYS:-target/image/keys}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPATIBLE=livepeer-edge-x86_64-dev
# Fixed partition identities: the kernel finds its root slot by these (grub.cfg), RAUC by
# the partition labels (system.conf).
ROOTFS_A_UUID=6c1f8a2e-5a8d-4f0e-9a51-2d7c3e0b1a01
ROOTFS_B_UUID=6c1f8a2e-5a8d-4f0e-9a51-2d7c3e0b1a02
SLOT_MIB=2048
DATA_MIB=1024
ESP_MIB=64
mkdir -p "$OUT" "$CACHE"
say() { echo "image: $*" >&2; }

# 1. The Debian tree, from the package list; cached under its key.
packages=$(grep -v '^#' image/packages.txt | paste -sd, -)
bootstrap_recipe='v4 minbase bookworm, no GL drivers, modules zstd -9, listed initramfs'
initramfs_conf=image/rootfs/etc/initramfs-tools
key=$( (printf '%s\n%s\n%s\n' "$packages" "$MIRROR" "$bootstrap_recipe"; cat "$initramfs_conf"/conf.d/* "$initramfs_conf"/hooks/*) |
  sha256sum | cut -c1-16)
base="$CACHE/base-$key"
# A failed debootstrap can leave the kernel's filesystems mounted in its tree; they go before
# the tree does.
clear_partial() {
  for fs in proc sys dev/pts; do
    if mountpoint -q "$base.partial/$fs" 2>/dev/null; then umount "$base.partial/$fs"; fi
  done
  rm -rf "$base.partial"
}
if [ ! -f "$base/.complete" ]; then
  rm -rf "$base"
  # Configuring a few hundred packages in a chroot has failed once in a while for no lasting
  # reason (initramfs-tools' trigger, once): a second try, with the first one's log shown.
  for attempt in 1 2; do
    say "bootstrapping Debian bookworm ($key), attempt $attempt"
    clear_partial
    if debootstrap --variant=minbase --include="$packages" bookworm "$base.partial" "$MIRROR"; then
      break
    fi
    tail -n 40 "$base.partial/debootstrap/debootstrap.log" 2>/dev/null | sed 's/^/debootstrap.log: /' >&2 || true
    if [ "$attempt" = 2 ]; then
      clear_partial
      exit 1
    fi
  done
  # What a read-only appliance root does not need.
  rm -rf "$base.partial"/var/cache/apt/archives/*.deb "$base.partial"/var/lib/apt/lists/* \
    "$base.partial"/usr/share/doc/* "$base.partial"/usr/share/man/* "$base.partial"/usr/share/info/*
  # Mesa's GL drivers and the LLVM and Z3 they are built on (160 MB) come with GTK, which
  # Debian's plugins-bad depends on; a headless box never makes a GL context, the only time
  # they are loaded. Purged through dpkg, so its database says so.
  chroot "$base.partial" dpkg --purge --force-depends libgl1-mesa-dri libllvm15 libz3-4 >&2
  # Kernel modules compressed, as kmod reads them (zstd): 395 MB of them take about a quarter.
  # Level 9 on every core: 5 s here, against two minutes at level 19 for 9 % less.
  find "$base.partial/usr/lib/modules" -name '*.ko' -print0 |
    xargs -0 -n 64 -P "$(nproc)" zstd -q --rm -9
  for kver in "$base.partial"/usr/lib/modules/*; do chroot "$base.partial" depmod "$(basename "$kver")"; done
  # The initramfs made again with the image's own settings: the root's drivers only.
  cp -a "$initramfs_conf/." "$base.partial/etc/initramfs-tools/"
  chroot "$base.partial" update-initramfs -u -k all
  touch "$base.partial/.complete"
  mv "$base.partial" "$base"
  # Older trees are superseded.
  find "$CACHE" -maxdepth 1 -name 'base-*' ! -name "base-$key" -exec rm -rf {} +
fi

# 2. The node and its web UI.
if [ "$PROFILE" = dev ]; then
  dir=debug
  # The test suite's build, features unified across the workspace as `cargo test` has them:
  # `-p livepeer-edge` would rebuild a dozen crates for the package's narrower set (a minute
  # here) and the suite's next build would undo it.
  cargo build --workspace --all-targets
else
  dir=$PROFILE
  cargo build --profile "$PROFILE" -p livepeer-edge
fi
(cd web-ui && npm run --silent build)
version=${IMAGE_VERSION:-$(./target/"$dir"/livepeer-edge --version | awk '{print $2}')}
# On-device inference: ONNX Runtime's CPU library from the wheel the project's set-up installs
# (the node finds it in ../lib beside its binary) and CenterFace, the built-in face model
# privacy mode blurs with.
ort=$(find target/pyenv/lib -path '*/onnxruntime/capi/libonnxruntime.so.*' | sort | tail -n 1)
if [ -z "$ort" ] || [ ! -f target/models/centerface.onnx ]; then
  echo "image: ONNX Runtime or CenterFace is missing; run scripts/deps.sh" >&2
  exit 1
fi

# The development CA signs bundles; the image trusts it alone. Made before the inputs are
# summed: they include it.
if [ ! -f "$KEYS/ca.cert.pem" ]; then
  say "making the development signing CA in $KEYS"
  mkdir -p "$KEYS" && chmod 700 "$KEYS"
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=Livepeer Edge development CA" \
    -keyout "$KEYS/ca.key.pem" -out "$KEYS/ca.cert.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -subj "/CN=Livepeer Edge development bundles" \
    -keyout "$KEYS/signing.key.pem" -out "$KEYS/signing.csr" 2>/dev/null
  # No extendedKeyUsage: RAUC refuses codeSigning ("unsuitable certificate purpose").
  openssl x509 -req -in "$KEYS/signing.csr" -CA "$KEYS/ca.cert.pem" -CAkey "$KEYS/ca.key.pem" \
    -CAcreateserial -days 3650 -out "$KEYS/signing.cert.pem" \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n') 2>/dev/null
fi

# The disk and the bundle are made again only when what they are made from changed: the
# tree, this recipe and the image's files, the node, its UI, the inference library and model,
# the venue's overlay, the signing keys and the version (a suite builds the same image more
# than once; each build is a minute of copying and compressing).
inputs=$(
  {
    echo "$key $PROFILE $version"
    find image web-ui/dist ${IMAGE_OVERLAY:+"$IMAGE_OVERLAY"} -type f -print0 | sort -z | xargs -0 sha256sum
    sha256sum "target/$dir/livepeer-edge" "$ort" target/models/centerface.onnx
    if [ -d "$KEYS" ]; then find "$KEYS" -name '*.pem' -print0 | sort -z | xargs -0 -r sha256sum; fi
  } | sha256sum | cut -c1-16
)
if [ -f "$OUT/disk.img" ] && [ -f "$OUT/update.raucb" ] && [ "$(cat "$OUT/inputs" 2>/dev/null)" = "$inputs" ]; then
  say "unchanged since its last build ($inputs): $OUT/disk.img"
  echo "$OUT/disk.img" >&3
  exit 0
fi
rm -f "$OUT/inputs"

# 3. The root slot: the tree, the image's own files, the node.
say "assembling the root ($PROFILE node, version $version)"
root="$OUT/root"
rm -rf "$root"
cp -a "$base" "$root"
rm -f "$root/.complete"
# Translations and desktop icons are never shown by a headless box.
rm -rf "$root"/usr/share/locale/* "$root"/usr/share/icons/*
cp -a image/rootfs/. "$root/"
install -D -m 0755 "target/$dir/livepeer-edge" "$root/usr/bin/livepeer-edge"
strip --strip-debug "$root/usr/bin/livepeer-edge"
mkdir -p "$root/usr/share/livepeer-edge"
cp -a web-ui/dist "$root/usr/share/livepeer-edge/ui"
install -m 0644 "$ort" "$root/usr/lib/$(basename "$ort")"
install -D -m 0644 target/models/centerface.onnx "$root/usr/share/livepeer-edge/models/centerface.onnx"
printf 'VERSION=%s\nCOMPATIBLE=%s\n' "$version" "$COMPATIBLE" > "$root/etc/livepeer-edge/release"
# GStreamer's plugin registry, made here for this root: the node reads it from the read-only
# root (the unit's drop-in names it) instead of scanning every plugin into the data partition
# at its first start, after a factory reset and after every update (6 s under emulation).
# Probing the encoders initialises GStreamer inside the root, so the registry names the
# root's own paths.
mkdir -p "$root/usr/lib/livepeer-edge"
chroot "$root" env -i HOME=/nonexistent GST_REGISTRY=/usr/lib/livepeer-edge/gstreamer-registry.bin \
  /usr/bin/livepeer-edge encoders >/dev/null
chmod 0644 "$root/usr/lib/livepeer-edge/gstreamer-registry.bin"
if [ -n "${IMAGE_OVERLAY:-}" ]; then cp -a "$IMAGE_OVERLAY/." "$root/"; fi
mkdir -p "$root/boot/efi" "$root/var/lib/livepeer-edge"
: > "$root/etc/machine-id"
systemd-sysusers --root="$root"
# RAUC's service is started by D-Bus when asked.
systemctl --root="$root" enable livepeer-edge.service livepeer-edge-reboot.path systemd-networkd.service \
  systemd-resolved.service 2>&1 | sed 's/^/image: /'
# What a headless box without LVM never uses, started at every boot: e2scrub's clean-up of LVM
# snapshots and an early load of the display drivers (udev loads a GPU's when there is one).
systemctl --root="$root" mask e2scrub_reap.service modprobe@drm.service 2>&1 | sed 's/^/image: /'
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/rauc"
install -m 0644 "$KEYS/ca.cert.pem" "$root/etc/rauc/ca.cert.pem"
# RAUC's GRUB slot logic through a backend that rewrites grubenv in place (see the script).
install -D -m 0755 image/rauc/grubenv-backend "$root/usr/libexec/rauc/grubenv-backend"
sed -e "s|@COMPATIBLE@|$COMPATIBLE|" -e "s|@BACKEND@|/usr/libexec/rauc/grubenv-backend|" \
  -e "s|@SLOT_A@|/dev/disk/by-partlabel/rootfs-a|" -e "s|@SLOT_B@|/dev/disk/by-partlabel/rootfs-b|" \
  image/rauc/system.conf.in > "$root/etc/rauc/system.conf"

# 4. Filesystems, made from directories.
used=$(du -sm "$root" | cut -f1)
rootfs_mib=$((used * 115 / 100 + 64))
if [ "$rootfs_mib" -gt "$SLOT_MIB" ]; then
  echo "image: the root needs ${rootfs_mib} MiB, a slot has ${SLOT_MIB}"
  exit 1
fi
rm -f "$OUT/rootfs.ext4" "$OUT/data.ext4" "$OUT/esp.vfat"
mkfs.ext4 -q -F -L rootfs -d "$root" "$OUT/rootfs.ext4" "${rootfs_mib}M"
rm -rf "$root"
mkfs.ext4 -q -F -L data "$OUT/data.ext4" "${DATA_MIB}M"
mkfs.vfat -n ESP -C "$OUT/esp.vfat" $((ESP_MIB * 1024)) >/dev/null
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$OUT/BOOTX64.EFI" \
  part_gpt fat ext2 normal linux loadenv test echo regexp configfile all_video efi_gop gzio
sed -e "s/@ROOTFS_A_UUID@/$ROOTFS_A_UUID/" -e "s/@ROOTFS_B_UUID@/$ROOTFS_B_UUID/" \
  image/grub.cfg > "$OUT/grub.cfg"
rm -f "$OUT/grubenv"
GRUBENV="$OUT/grubenv" image/rauc/grubenv-backend create
mmd -i "$OUT/esp.vfat" ::/EFI ::/EFI/BOOT
mcopy -i "$OUT/esp.vfat" "$OUT/BOOTX64.EFI" "$OUT/grub.cfg" "$OUT/grubenv" ::/EFI/BOOT/

# 5. The disk: 1 MiB alignment, the slots' partition UUIDs fixed.
esp_start=1
a_start=$((esp_start + ESP_MIB))
b_start=$((a_start + SLOT_MIB))
data_start=$((b_start + SLOT_MIB))
total=$((data_start + DATA_MIB + 1))
disk="$OUT/disk.img"
rm -f "$disk"
truncate -s "${total}M" "$disk"
sfdisk -q "$disk" <<SFDISK
label: gpt
start=${esp_start}MiB, size=${ESP_MIB}MiB, type=U, name=esp
start=${a_start}MiB, size=${SLOT_MIB}MiB, type=L, name=rootfs-a, uuid=$ROOTFS_A_UUID
start=${b_start}MiB, size=${SLOT_MIB}MiB, type=L, name=rootfs-b, uuid=$ROOTFS_B_UUID
start=${data_start}MiB, size=${DATA_MIB}MiB, type=L, name=data
SFDISK
put() { dd if="$1" of="$disk" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$OUT/esp.vfat" "$esp_start"
put "$OUT/rootfs.ext4" "$a_start"
put "$OUT/data.ext4" "$data_start"

# 6. The update bundle: the same root, signed.
bundle_dir="$OUT/bundle"
rm -rf "$bundle_dir" "$OUT/update.raucb"
mkdir -p "$bundle_dir"
cp --sparse=always "$OUT/rootfs.ext4" "$bundle_dir/rootfs.ext4"
cat > "$bundle_dir/manifest.raucm" <<MANIFEST
[update]
compatible=$COMPATIBLE
version=$version

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rauc bundle --cert="$KEYS/signing.cert.pem" --key="$KEYS/signing.key.pem" \
  --keyring="$KEYS/ca.cert.pem" --mksquashfs-args="-comp zstd -Xcompression-level 3" \
  "$bundle_dir" "$OUT/update.raucb"
rm -rf "$bundle_dir"
echo "$inputs" > "$OUT/inputs"
say "$(du -h --apparent-size "$disk" | cut -f1) disk ($(du -h "$disk" | cut -f1) allocated), root $(du -h --apparent-size "$OUT/rootfs.ext4" | cut -f1), bundle $(du -h "$OUT/update.raucb" | cut -f1)"
echo "$disk" >&3
