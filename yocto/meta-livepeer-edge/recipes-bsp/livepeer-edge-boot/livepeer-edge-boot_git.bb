SUMMARY = "Boot menu and GRUB environment of the Livepeer Edge GRUB images"
DESCRIPTION = "The development image's boot menu (image/grub.cfg: RAUC's slot logic over \
               grubenv) with this distribution's root slot UUIDs, and the first grubenv (slot \
               A good and first) made by the RAUC backend that later rewrites it. Deployed for \
               wic, which puts both on the ESP."
HOMEPAGE = "https://github.com/livepeer/livepeer-edge"
BUGTRACKER = "https://github.com/livepeer/livepeer-edge/issues"
SECTION = "bootloaders"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=10;endline=10;md5=86b31c7756a1a7962f28b62856ed4f05"
CVE_PRODUCT = "livepeer-edge"

PV = "0.1.0+git"

# The files the development image is built from, at the node's commit (livepeer-edge_git.bb).
SRC_URI = "git://github.com/livepeer/livepeer-edge.git;protocol=https;branch=main"
SRCREV = "${LIVEPEER_EDGE_SRCREV}"
LIVEPEER_EDGE_SRCREV ??= "${AUTOREV}"

S = "${WORKDIR}/git"

inherit deploy nopackages

COMPATIBLE_HOST = "(x86_64|i.86).*-linux"

do_configure[noexec] = "1"

do_compile() {
    sed -e 's/@ROOTFS_A_UUID@/${LIVEPEER_EDGE_ROOTFS_A_UUID}/' \
        -e 's/@ROOTFS_B_UUID@/${LIVEPEER_EDGE_ROOTFS_B_UUID}/' \
        ${S}/image/grub.cfg > ${B}/livepeer-edge-grub.cfg
    rm -f ${B}/livepeer-edge-grubenv
    GRUBENV=${B}/livepeer-edge-grubenv sh ${S}/image/rauc/grubenv-backend create
}

do_deploy() {
    install -m 0644 ${B}/livepeer-edge-grub.cfg ${B}/livepeer-edge-grubenv ${DEPLOYDIR}/
}

addtask deploy after do_compile before do_build

# Files for the target's boot partition: nothing to build for the build host.
BBCLASSEXTEND = ""
