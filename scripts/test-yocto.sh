#!/usr/bin/env bash
# The Yocto layer's checks that run without a build host (a bitbake build cannot run here):
# recipes linted, kas files loaded by kas itself, the crate list and the web UI's checksum
# held to this tree, the files both images share taken from one place (units, RAUC's template
# and backends, the GRUB images' boot menu), the layer's scripts run through ShellCheck and the
# nvbootctrl backend driven against stand-ins for nvbootctrl and efivar.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/target/pyenv/bin:$PATH"
layer=yocto/meta-livepeer-edge

echo "== oelint-adv (scarthgap)"
# homepageping needs the internet, which the suite does not have.
find "$layer" \( -name '*.bb' -o -name '*.bbappend' \) -print0 | sort -z |
  xargs -0 oelint-adv --release scarthgap --quiet --relpaths \
    --extra-layer rauc openembedded-layer multimedia-layer networking-layer clang-layer \
    --constantmods +yocto/oelint-constants.json --suppress oelint.vars.homepageping

echo "== kas files (kas's own loader: schema, includes)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
KAS_WORK_DIR="$work" python - yocto/kas/*.yml <<'PY'
import argparse, sys
from kas import context, includehandler

class Args(argparse.Namespace):
    def __getattr__(self, name):
        return None

context.create_global_context(Args())
for f in sys.argv[1:]:
    cfg, missing = includehandler.IncludeHandler([f], use_lock=False).get_config()
    assert not missing, f"{f}: missing {missing}"
    assert cfg.get("distro") == "livepeer-edge", f
    repos = cfg.get("repos", {})
    for name, repo in repos.items():
        if repo.get("url") and name != "meta-lts-mixins":
            assert repo.get("commit"), f"{f}: {name} is not pinned to a commit"
    if "jetson" in f and "common" not in f:
        assert "meta-tegra" in repos and cfg.get("machine"), f
    print(f"{f}: machine {cfg.get('machine')}, {len(repos)} repos")
PY

echo "== crate list and web UI asset"
python3 scripts/yocto-crates.py --check
scripts/ui-asset.sh --check

echo "== one source for what both images carry"
recipe=$layer/recipes-livepeer/livepeer-edge/livepeer-edge_git.bb
# The Rust the recipe asks the build for is the workspace's, and its parse-time check is
# Python that compiles.
python3 - "$recipe" <<'PY'
import re, sys, tomllib
recipe = open(sys.argv[1]).read()
need = re.search(r'^LIVEPEER_EDGE_MIN_RUST = "([^"]+)"$', recipe, re.M).group(1)
with open("Cargo.toml", "rb") as f:
    workspace = tomllib.load(f)["workspace"]["package"]["rust-version"]
assert need == workspace, f"the recipe needs Rust {need}, Cargo.toml {workspace}"
skip = re.search(r'^SKIP_RECIPE\[livepeer-edge\] = "\$\{@(.*)\}"$', recipe, re.M).group(1)
compile(skip, "livepeer-edge_git.bb", "eval")
PY
for f in etc/systemd/system/livepeer-edge.service etc/systemd/system/livepeer-edge-reboot.path \
  etc/systemd/system/livepeer-edge-reboot.service etc/systemd/system.conf.d/watchdog.conf \
  usr/lib/sysusers.d/livepeer-edge.conf etc/udev/rules.d/70-livepeer-edge.rules \
  etc/modules-load.d/livepeer-edge.conf etc/livepeer-edge/config.toml; do
  [ -f "image/rootfs/$f" ] || { echo "image/rootfs/$f is gone" >&2; exit 1; }
  grep -q "\${S}/image/rootfs/$f" "$recipe" || { echo "$recipe does not install image/rootfs/$f" >&2; exit 1; }
  while IFS= read -r -d '' other; do
    if cmp -s "$other" "image/rootfs/$f"; then
      echo "$other copies image/rootfs/$f: install the image's own" >&2
      exit 1
    fi
  done < <(find yocto -type f -print0)
done
grep -q 'image/rauc/system.conf.in' image/build.sh
grep -q 'image/rauc:' $layer/recipes-core/rauc/rauc-conf.bbappend
# The template rendered as each Yocto image renders it is a configuration RAUC can read, its
# backend the one the layer installs.
for backend in grubenv-backend nvbootctrl-backend; do
  sed -e "s|@COMPATIBLE@|livepeer-edge-test|" -e "s|@BACKEND@|/usr/libexec/rauc/$backend|" \
    -e 's|@SLOT_A@|/dev/disk/by-partlabel/A|' -e 's|@SLOT_B@|/dev/disk/by-partlabel/B|' \
    image/rauc/system.conf.in > "$work/system.conf"
  python3 - "$work/system.conf" "$backend" <<'PY'
import configparser, sys
c = configparser.ConfigParser(interpolation=None)
c.read(sys.argv[1])
assert c["system"]["bootloader"] == "custom"
assert c["handlers"]["bootloader-custom-backend"].endswith("/" + sys.argv[2])
assert [c[f"slot.rootfs.{i}"]["bootname"] for i in (0, 1)] == ["A", "B"]
assert not [l for l in open(sys.argv[1]) if "@" in l and not l.startswith("#")]
PY
done
[ -f image/rauc/grubenv-backend ] && [ -f $layer/dynamic-layers/tegra/recipes-core/rauc/files/nvbootctrl-backend ]
grep -q 'LIVEPEER_EDGE_RAUC_BACKEND ??= "grubenv-backend"' $layer/conf/distro/livepeer-edge.conf
grep -q 'LIVEPEER_EDGE_RAUC_BACKEND:tegra = "nvbootctrl-backend"' \
  $layer/dynamic-layers/tegra/recipes-core/rauc/rauc-conf.bbappend
# The GRUB images share the boot menu, its slots' partition UUIDs and the ESP's mount.
boot=$layer/recipes-bsp/livepeer-edge-boot/livepeer-edge-boot_git.bb
grep -q "\${S}/image/grub.cfg" "$boot"
grep -q "\${S}/image/rauc/grubenv-backend create" "$boot"
for slot in A B; do
  uuid=$(sed -n "s/^ROOTFS_${slot}_UUID=//p" image/build.sh)
  grep -q "LIVEPEER_EDGE_ROOTFS_${slot}_UUID ??= \"$uuid\"" $layer/conf/distro/livepeer-edge.conf ||
    { echo "slot $slot's partition UUID differs from image/build.sh's ($uuid)" >&2; exit 1; }
  grep -q -- "--uuid \${LIVEPEER_EDGE_ROOTFS_${slot}_UUID}" $layer/wic/livepeer-edge-qemux86-64.wks.in
done
# GRUB's own parser on the boot menu: a syntax error there is a box that boots nothing.
grub-script-check image/grub.cfg
[ "$(grep -o '@[A-Z_]*@' image/grub.cfg | sort -u | tr '\n' ' ')" = "@ROOTFS_A_UUID@ @ROOTFS_B_UUID@ " ] ||
  { echo "image/grub.cfg has placeholders livepeer-edge-boot does not fill" >&2; exit 1; }
esp=$(grep '^PARTLABEL=esp ' image/rootfs/etc/fstab)
grep -qF "printf '$esp\\n'" $layer/recipes-core/images/livepeer-edge-image.bb ||
  { echo "the Yocto image mounts the ESP otherwise than image/rootfs/etc/fstab" >&2; exit 1; }

echo "== shellcheck"
backend=$layer/dynamic-layers/tegra/recipes-core/rauc/files/nvbootctrl-backend
shellcheck "$backend" image/rauc/grubenv-backend image/*.sh image/rootfs/etc/initramfs-tools/hooks/* scripts/ui-asset.sh scripts/test-yocto.sh

echo "== the nvbootctrl backend against stand-ins for nvbootctrl and efivar"
# The stand-ins take only the calls L4T R36 is known to answer as the backend makes them
# (as meta-tegra's verifier and the Jetson updaters in use make them) and keep the state in
# files: the running rootfs slot, the active boot chain, the slot last verified, and the
# UEFI variables in efivarfs's layout (NAME-GUID: four bytes of attributes, then the data).
mkdir -p "$work/state" "$work/efivars"
cat > "$work/nvbootctrl" <<'SH'
#!/bin/sh
state=$(dirname "$0")/state
case "$*" in
  "-t rootfs get-current-slot") cat "$state/current" ;;
  dump-slots-info)
    printf 'Current version: 36.5.0\nCapsule update status: 0\nCurrent bootloader slot: %s\nActive bootloader slot: %s\nnum_slots: 2\nslot: 0,             status: normal\nslot: 1,             status: normal\n' \
      "$(tr 01 AB < "$state/current")" "$(tr 01 AB < "$state/active")" ;;
  "set-active-boot-slot 0" | "set-active-boot-slot 1") echo "$2" > "$state/active" ;;
  verify) cp "$state/current" "$state/verified" ;;
  *) echo "not a call the backend makes: $*" >&2; exit 2 ;;
esac
SH
cat > "$work/efivar" <<'SH'
#!/bin/sh
[ "$1" = -w ] && [ "$2" = -f ] && [ "$4" = -n ] || { echo "efivar: $*" >&2; exit 2; }
guid=${5%-*}
name=${5##*-}
{ printf '\007\000\000\000'; cat "$3"; } > "$(dirname "$0")/efivars/$name-$guid"
SH
chmod +x "$work/nvbootctrl" "$work/efivar"
echo 0 > "$work/state/current"
echo 0 > "$work/state/active"
run() { NVBOOTCTRL="$work/nvbootctrl" EFIVAR="$work/efivar" EFIVARS="$work/efivars" "$backend" "$@"; }
status_b="$work/efivars/RootfsStatusSlotB-781e084c-a330-417c-b678-38e696380cb9"
[ "$(run get-current)" = A ]
[ "$(run get-primary)" = A ]
# A slot never flagged has no variable.
[ "$(run get-state B)" = good ]
# An install into B as RAUC makes it: B flagged unbootable while written, then made the
# boot chain to start, its flag cleared.
run set-state B bad
[ "$(run get-state B)" = bad ]
[ "$(od -An -tx1 "$status_b" | tr -s ' ')" = " 07 00 00 00 ff 00 00 00" ]
run set-primary B
[ "$(run get-primary)" = B ]
[ "$(run get-state B)" = good ]
[ ! -e "$work/state/verified" ] || { echo "a slot was verified before it ran" >&2; exit 1; }
# The box comes up in B; the node finds it healthy and RAUC marks it good: verified.
echo 1 > "$work/state/current"
[ "$(run get-current)" = B ]
run set-state B good
[ "$(cat "$work/state/verified")" = 1 ]
# Marking the other slot good clears its flag and verifies nothing.
rm "$work/state/verified"
run set-state A bad
[ "$(run get-state A)" = bad ]
run set-state A good
[ "$(run get-state A)" = good ]
[ ! -e "$work/state/verified" ] || { echo "marking slot A good verified the running B" >&2; exit 1; }
# Unknown slots and states change nothing.
if run set-primary C 2>/dev/null; then echo "slot C accepted" >&2; exit 1; fi
[ "$(cat "$work/state/active")" = 1 ] || { echo "an unknown slot changed the active one" >&2; exit 1; }
if run get-state C 2>/dev/null; then echo "slot C has a state" >&2; exit 1; fi
if run set-state A maybe 2>/dev/null; then echo "state 'maybe' accepted" >&2; exit 1; fi
[ "$(ls "$work/efivars")" = "$(printf 'RootfsStatusSlotA-%s\nRootfsStatusSlotB-%s' \
  781e084c-a330-417c-b678-38e696380cb9 781e084c-a330-417c-b678-38e696380cb9)" ] ||
  { echo "unexpected UEFI variables: $(ls "$work/efivars")" >&2; exit 1; }
echo "yocto checks passed"
