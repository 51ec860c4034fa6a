# The boot menu (image/grub.cfg, from livepeer-edge-boot) finds the root slots on the disk GRUB
# was loaded from with regexp, which is not among GRUB's built-in modules by default.
GRUB_BUILDIN:append:livepeer-edge = " regexp"
