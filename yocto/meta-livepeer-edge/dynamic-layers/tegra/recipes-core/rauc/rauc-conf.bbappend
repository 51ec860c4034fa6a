# On Jetson the root slots are L4T's redundant rootfs partitions (APP, APP_b), switched by
# NVIDIA's boot control through RAUC's custom bootloader backend.
FILESEXTRAPATHS:prepend:tegra := "${THISDIR}/files:"

SRC_URI:append:tegra = " file://nvbootctrl-backend"

LIVEPEER_EDGE_RAUC_BOOTLOADER:tegra = "custom"
LIVEPEER_EDGE_RAUC_BOOTLOADER_SETTING:tegra = ""
LIVEPEER_EDGE_RAUC_BOOTLOADER_HANDLER:tegra = "bootloader-custom-backend=${libexecdir}/rauc/nvbootctrl-backend"
LIVEPEER_EDGE_RAUC_SLOT_A:tegra = "/dev/disk/by-partlabel/APP"
LIVEPEER_EDGE_RAUC_SLOT_B:tegra = "/dev/disk/by-partlabel/APP_b"

do_install:append:tegra() {
    install -D -m 0755 ${WORKDIR}/nvbootctrl-backend ${D}${libexecdir}/rauc/nvbootctrl-backend
}

FILES:${PN}:append:tegra = " ${libexecdir}/rauc/nvbootctrl-backend"
RDEPENDS:${PN}:append:tegra = " tegra-redundant-boot-base"
