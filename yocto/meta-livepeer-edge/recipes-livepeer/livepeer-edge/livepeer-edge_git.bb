SUMMARY = "Livepeer Edge: a venue's box on the Livepeer network"
DESCRIPTION = "The node: camera and network ingest, hardware encoding, on-device inference, \
               Livepeer probabilistic micropayments, a web UI's API and MQTT fleet control."
HOMEPAGE = "https://github.com/livepeer/livepeer-edge"
BUGTRACKER = "https://github.com/livepeer/livepeer-edge/issues"
SECTION = "multimedia"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=10;endline=10;md5=86b31c7756a1a7962f28b62856ed4f05"
CVE_PRODUCT = "livepeer-edge"

# GStreamer through gstreamer-rs; V4L2's bindings are generated with libclang (bindgen).
DEPENDS += "clang-native gstreamer1.0 gstreamer1.0-plugins-bad gstreamer1.0-plugins-base"

PV = "0.1.0+git"

# The integrator pins the commit (LIVEPEER_EDGE_SRCREV, yocto/README.md); the crate list is
# generated from the workspace's Cargo.lock by scripts/yocto-crates.py.
SRC_URI = "git://github.com/livepeer/livepeer-edge.git;protocol=https;branch=main"
SRCREV = "${LIVEPEER_EDGE_SRCREV}"
LIVEPEER_EDGE_SRCREV ??= "${AUTOREV}"

S = "${WORKDIR}/git"

inherit cargo cargo-update-recipe-crates pkgconfig systemd

require ${BPN}-crates.inc

# The workspace is edition 2024 and needs this Rust (Cargo.toml's rust-version; the test
# suite checks the two agree); scarthgap's own is 1.75. Without a newer toolchain the recipe
# is skipped with the reason (base.bbclass reads SKIP_RECIPE), rather than failing in
# do_compile after hours of building.
LIVEPEER_EDGE_MIN_RUST = "1.95"
SKIP_RECIPE[livepeer-edge] = "${@'' if bb.utils.vercmp_string_op((d.getVar('RUSTVERSION') or '0').rstrip('%'), d.getVar('LIVEPEER_EDGE_MIN_RUST'), '>=') else 'it needs Rust >= ' + d.getVar('LIVEPEER_EDGE_MIN_RUST') + ': add meta-lts-mixins on its scarthgap/rust branch (yocto/BUILDING.md)'}"

# The workspace's binary crate; the lock file is the workspace's.
CARGO_SRC_DIR = "appliance"
CARGO_LOCK_SRC_DIR = "${S}"

export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"

# The files the development image carries, from the same source tree (image/rootfs/ in the
# repository): one unit, one user, one configuration for both images.
do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/image/rootfs/etc/systemd/system/livepeer-edge.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/image/rootfs/etc/systemd/system/livepeer-edge-reboot.path ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/image/rootfs/etc/systemd/system/livepeer-edge-reboot.service ${D}${systemd_system_unitdir}/
    install -D -m 0644 ${S}/image/rootfs/etc/systemd/system.conf.d/watchdog.conf \
        ${D}${systemd_unitdir}/system.conf.d/livepeer-edge-watchdog.conf
    install -D -m 0644 ${S}/image/rootfs/usr/lib/sysusers.d/livepeer-edge.conf \
        ${D}${nonarch_libdir}/sysusers.d/livepeer-edge.conf
    install -D -m 0644 ${S}/image/rootfs/etc/udev/rules.d/70-livepeer-edge.rules \
        ${D}${nonarch_base_libdir}/udev/rules.d/70-livepeer-edge.rules
    install -D -m 0644 ${S}/image/rootfs/etc/modules-load.d/livepeer-edge.conf \
        ${D}${nonarch_libdir}/modules-load.d/livepeer-edge.conf
    install -D -m 0644 ${S}/image/rootfs/etc/livepeer-edge/config.toml \
        ${D}${sysconfdir}/livepeer-edge/config.toml
    printf 'VERSION=%s\n' "${PV}" > ${D}${sysconfdir}/livepeer-edge/release
}

SYSTEMD_SERVICE:${PN} = "livepeer-edge.service livepeer-edge-reboot.path"

FILES:${PN} += "\
    ${nonarch_base_libdir}/udev/rules.d \
    ${nonarch_libdir}/modules-load.d \
    ${nonarch_libdir}/sysusers.d \
    ${systemd_unitdir}/system.conf.d \
"
CONFFILES:${PN} = "${sysconfdir}/livepeer-edge/config.toml"

RDEPENDS:${PN} = "\
    gstreamer1.0-libav \
    gstreamer1.0-plugins-bad-mpegtsdemux \
    gstreamer1.0-plugins-bad-mpegtsmux \
    gstreamer1.0-plugins-bad-srt \
    gstreamer1.0-plugins-bad-videoparsersbad \
    gstreamer1.0-plugins-bad-webrtc \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-audioconvert \
    gstreamer1.0-plugins-base-audioresample \
    gstreamer1.0-plugins-base-playback \
    gstreamer1.0-plugins-base-typefindfunctions \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-good-isomp4 \
    gstreamer1.0-plugins-good-multifile \
    gstreamer1.0-plugins-good-rtp \
    gstreamer1.0-plugins-good-rtpmanager \
    gstreamer1.0-plugins-good-rtsp \
    gstreamer1.0-plugins-good-udp \
    gstreamer1.0-plugins-good-video4linux2 \
    gstreamer1.0-plugins-ugly-x264 \
    i2c-tools \
    livepeer-edge-ui \
    mosquitto-clients \
    rauc \
"

# A native node is of no use: it runs on the box.
BBCLASSEXTEND = ""
