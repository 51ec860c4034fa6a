SUMMARY = "Livepeer Edge web UI"
DESCRIPTION = "The node's browser interface, prebuilt by the project (scripts/ui-asset.sh) \
               and published with each release, so the image build needs no Node.js toolchain."
HOMEPAGE = "https://github.com/livepeer/livepeer-edge"
BUGTRACKER = "https://github.com/livepeer/livepeer-edge/issues"
SECTION = "multimedia"
CVE_PRODUCT = "livepeer-edge"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://COPYING;md5=${LIVEPEER_EDGE_UI_COPYING_MD5}"

# The asset is reproducible (sorted, owner and time fixed, gzip without a name): the same
# commit gives the same checksum, which the project's test suite holds to this recipe.
SRC_URI = "https://github.com/livepeer/livepeer-edge/releases/download/v${PV}/livepeer-edge-ui-${PV}.tar.gz"
require livepeer-edge-ui-checksum.inc

S = "${WORKDIR}/livepeer-edge-ui"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/livepeer-edge/ui
    cp -R --no-dereference --preserve=mode,links ${S}/. ${D}${datadir}/livepeer-edge/ui/
}

FILES:${PN} += "${datadir}/livepeer-edge/ui"

# Files for the browser: nothing to build for the build host.
BBCLASSEXTEND = ""
