SUMMARY = "Livepeer Edge update bundle"
DESCRIPTION = "A signed RAUC bundle (verity) of the appliance image's root, installed by the \
               node's update command into the slot not running."
HOMEPAGE = "https://github.com/livepeer/livepeer-edge"
BUGTRACKER = "https://github.com/livepeer/livepeer-edge/issues"
SECTION = "images"
LICENSE = "MIT"
CVE_PRODUCT = "livepeer-edge"

# The bundle class fetches nothing of its own: the image is its only input.
SRC_URI = ""

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "${LIVEPEER_EDGE_RAUC_COMPATIBLE}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "Livepeer Edge ${DISTRO_VERSION} for ${MACHINE}"
RAUC_BUNDLE_FORMAT = "verity"

RAUC_BUNDLE_SLOTS = "rootfs"
# nooelint: oelint.vars.mispell.unknown
RAUC_SLOT_rootfs = "livepeer-edge-image"
# nooelint: oelint.vars.mispell.unknown
RAUC_SLOT_rootfs[fstype] = "ext4"

# Signed with the integrator's key, never one in the repository (yocto/README.md).
RAUC_KEY_FILE = "${LIVEPEER_EDGE_KEYS}/signing.key.pem"
RAUC_CERT_FILE = "${LIVEPEER_EDGE_KEYS}/signing.cert.pem"

# An update for the box, nothing for the build host.
BBCLASSEXTEND = ""
