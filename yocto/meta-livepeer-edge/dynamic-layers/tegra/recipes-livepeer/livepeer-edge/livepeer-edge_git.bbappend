# On Jetson: NVENC through nvv4l2h264enc (NX and AGX; the Orin Nano has no hardware encoder
# and the node falls back to x264, saying so), and ONNX Runtime with the TensorRT and CUDA
# providers, which the node loads at start. meta-tegra-community carries onnxruntime from its
# whinlatter branch on, not on scarthgap: until it is backported (yocto/BUILDING.md) it is
# recommended, not required, and the node reports inference as unavailable without it.
RDEPENDS:${PN}:append:tegra = " \
    gstreamer1.0-plugins-nvvideo4linux2 \
    gstreamer1.0-plugins-nvvidconv \
"
RRECOMMENDS:${PN}:append:tegra = " onnxruntime"

do_install:append:tegra() {
    printf '\n[ai]\nonnxruntime_path = "%s"\n' "${libdir}/libonnxruntime.so" \
        >> ${D}${sysconfdir}/livepeer-edge/config.toml
}
