SUMMARY = "Livepeer Edge appliance image"
DESCRIPTION = "A read-only root running the Livepeer Edge node under systemd, its state on a \
               separate data partition, updated by RAUC between two root slots."
HOMEPAGE = "https://github.com/livepeer/livepeer-edge"
BUGTRACKER = "https://github.com/livepeer/livepeer-edge/issues"
SECTION = "images"
LICENSE = "MIT"
CVE_PRODUCT = "livepeer-edge"

inherit core-image

IMAGE_FEATURES += "read-only-rootfs"
IMAGE_FSTYPES += "ext4"

IMAGE_INSTALL:append = " \
    livepeer-edge \
    livepeer-edge-ui \
    rauc \
    rauc-conf \
    kernel-module-i2c-dev \
"

# The data partition holds the node's state at the same path as on the development image,
# mounted before the node starts (the unit requires it): LIVEPEER_EDGE_DATA_PARTLABEL, set by
# the distribution ("data"; the flash layout's user-data partition "UDA" on Jetson).

ROOTFS_POSTPROCESS_COMMAND += "livepeer_edge_data_mount;"

livepeer_edge_data_mount[doc] = "Mounts the data partition at the node's data directory"
livepeer_edge_data_mount() {
    install -d ${IMAGE_ROOTFS}${LIVEPEER_EDGE_DATA_DIR}
    printf 'PARTLABEL=%s ${LIVEPEER_EDGE_DATA_DIR} ext4 defaults,noatime,data=ordered,barrier=1,commit=5,errors=remount-ro 0 2\n' \
        "${LIVEPEER_EDGE_DATA_PARTLABEL}" >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
}

# The development machine's disk: ESP, two root slots, the data partition. GRUB boots the
# development image's menu, which loads each slot's own kernel (/vmlinuz) and reads grubenv on
# the ESP, both made by livepeer-edge-boot; the ESP is mounted as on the development image
# (image/rootfs/etc/fstab), only while RAUC's backend writes grubenv.
WKS_FILE:qemux86-64 = "livepeer-edge-qemux86-64.wks.in"
WKS_FILE_DEPENDS:append:qemux86-64 = " livepeer-edge-boot"
IMAGE_FSTYPES:append:qemux86-64 = " wic"
IMAGE_EFI_BOOT_FILES:qemux86-64 = "livepeer-edge-grubenv;EFI/BOOT/grubenv"
IMAGE_INSTALL:append:qemux86-64 = " kernel-image"
ROOTFS_POSTPROCESS_COMMAND:append:qemux86-64 = " livepeer_edge_grub_slot;"

livepeer_edge_grub_slot[doc] = "Links the slot's kernel where the boot menu loads it and mounts the ESP"
livepeer_edge_grub_slot() {
    ln -sf boot/${KERNEL_IMAGETYPE} ${IMAGE_ROOTFS}/vmlinuz
    install -d ${IMAGE_ROOTFS}/boot/efi
    printf 'PARTLABEL=esp /boot/efi vfat umask=0077,flush,noauto,x-systemd.automount,x-systemd.idle-timeout=10s 0 0\n' \
        >> ${IMAGE_ROOTFS}${sysconfdir}/fstab
}
