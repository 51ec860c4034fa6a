# In the livepeer-edge distribution: RAUC's system configuration rendered from the template
# the development image renders (image/rauc/system.conf.in in the repository this layer lives
# in), the machine's bootloader backend, and the integrator's CA, which bundles are checked
# against.
FILESEXTRAPATHS:prepend:livepeer-edge := "${THISDIR}/../../../../image/rauc:"

SRC_URI:remove:livepeer-edge = "file://system.conf"
SRC_URI:append:livepeer-edge = " file://system.conf.in file://${LIVEPEER_EDGE_RAUC_BACKEND}"

RAUC_KEYRING_FILE:livepeer-edge = "ca.cert.pem"
# nooelint: oelint.vars.mispell
RAUC_KEYRING_URI:livepeer-edge = "file://${LIVEPEER_EDGE_KEYS}/ca.cert.pem"

do_configure:prepend:livepeer-edge() {
    if [ -z "${LIVEPEER_EDGE_KEYS}" ]; then
        bbfatal "Set LIVEPEER_EDGE_KEYS to the directory holding the update CA (ca.cert.pem); see yocto/README.md"
    fi
    sed -e 's|@COMPATIBLE@|${LIVEPEER_EDGE_RAUC_COMPATIBLE}|' \
        -e 's|@BACKEND@|${libexecdir}/rauc/${LIVEPEER_EDGE_RAUC_BACKEND}|' \
        -e 's|@SLOT_A@|${LIVEPEER_EDGE_RAUC_SLOT_A}|' \
        -e 's|@SLOT_B@|${LIVEPEER_EDGE_RAUC_SLOT_B}|' \
        ${WORKDIR}/system.conf.in > ${WORKDIR}/system.conf
}

do_install:append:livepeer-edge() {
    install -D -m 0755 ${WORKDIR}/${LIVEPEER_EDGE_RAUC_BACKEND} ${D}${libexecdir}/rauc/${LIVEPEER_EDGE_RAUC_BACKEND}
}

FILES:${PN}:append:livepeer-edge = " ${libexecdir}/rauc/${LIVEPEER_EDGE_RAUC_BACKEND}"
RDEPENDS:${PN}:append:livepeer-edge = " ${LIVEPEER_EDGE_RAUC_BACKEND_RDEPENDS}"
