#!/usr/bin/env bash
# System packages the test suite uses: Debian's PyTorch (CPU, gloo) for /usr/bin/python3, and Chromium for the
# dashboard test. Idempotent: installs only what is missing. Needs root (or sudo) the first time.
set -euo pipefail
need=()
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || need+=(python3-torch)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
