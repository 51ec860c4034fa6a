#!/usr/bin/env bash
# Boots the development image under QEMU, on a copy-on-write overlay so the built disk stays
# as built: the node's HTTP on http://127.0.0.1:${HTTP_PORT:-8080}/, RTMP on :${RTMP_PORT:-1935},
# its Livepeer network port on :${NET_PORT:-8935}, the serial console on this terminal. Extra
# arguments go to QEMU.
# VM_STATE (default target/image/vm) keeps the overlay and the firmware's variables between runs,
# and holds the sockets of QEMU's monitor (qmp.sock: reset, keys) and of the guest agent
# (qga.sock: commands inside the guest).
# VM_DISK_SIZE (default 16G) is the size of the box's disk, at least the image's.
# VM_GUESTFWD: services on the host's loopback the guest may reach, space-separated
# "<guest port>=<host port>" pairs, at 10.0.2.100:<guest port> (the guest reaches nothing else).
set -euo pipefail
cd "$(dirname "$0")/.."
disk=${IMAGE_DISK:-target/image/disk.img}
state=${VM_STATE:-target/image/vm}
[ -f "$disk" ] || { echo "no image: run image/build.sh first" >&2; exit 1; }
mkdir -p "$state"
# The overlay is a larger medium than the image (VM_DISK_SIZE), as a box's disk is: the data
# partition grows into it at the first boot.
[ -f "$state/overlay.qcow2" ] ||
  qemu-img create -q -f qcow2 -b "$(realpath "$disk")" -F raw "$state/overlay.qcow2" "${VM_DISK_SIZE:-16G}"
[ -f "$state/OVMF_VARS.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$state/OVMF_VARS.fd"
forwards=""
for pair in ${VM_GUESTFWD:-}; do
  forwards+=",guestfwd=tcp:10.0.2.100:${pair%%=*}-cmd:socat - TCP:127.0.0.1:${pair#*=}"
done
# KVM here cannot run OVMF: software emulation, every core.
exec qemu-system-x86_64 -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
  -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
  -drive if=pflash,format=raw,file="$state/OVMF_VARS.fd" \
  -drive if=virtio,format=qcow2,file="$state/overlay.qcow2" \
  -netdev "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:${HTTP_PORT:-8080}-:80,hostfwd=tcp:127.0.0.1:${RTMP_PORT:-1935}-:1935,hostfwd=tcp:127.0.0.1:${NET_PORT:-8935}-:8935$forwards" \
  -device virtio-net-pci,netdev=net0 \
  -device i6300esb -action watchdog=reset \
  -qmp "unix:$state/qmp.sock,server=on,wait=off" \
  -chardev "socket,id=qga0,path=$state/qga.sock,server=on,wait=off" \
  -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
  -nographic "$@"
