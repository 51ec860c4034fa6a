# On Jetson the root slots are L4T's redundant rootfs partitions (APP, APP_b), switched by
# NVIDIA's boot control through RAUC's custom bootloader backend (installed by the layer's
# rauc-conf append).
FILESEXTRAPATHS:prepend:tegra := "${THISDIR}/files:"

LIVEPEER_EDGE_RAUC_BACKEND:tegra = "nvbootctrl-backend"
LIVEPEER_EDGE_RAUC_SLOT_A:tegra = "/dev/disk/by-partlabel/APP"
LIVEPEER_EDGE_RAUC_SLOT_B:tegra = "/dev/disk/by-partlabel/APP_b"
LIVEPEER_EDGE_RAUC_BACKEND_RDEPENDS:tegra = "tegra-redundant-boot-base efivar"
