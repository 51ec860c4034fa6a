# meta-tegra's nv_update_verifier runs `nvbootctrl verify` at every boot: it would mark a
# freshly updated slot good before the node has found it healthy, and the firmware's
# rollback (an unverified slot gets one boot on Orin) would never happen. The node marks the
# slot good through RAUC once it is healthy, which verifies it (nvbootctrl-backend).
# Disabled rather than masked or removed: the package comes with MACHINE_EXTRA_RDEPENDS, and
# its postinstall expects the unit.
SYSTEMD_AUTO_ENABLE:${PN}:livepeer-edge = "disable"
