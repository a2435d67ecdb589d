#!/usr/bin/env bash
# Installs the Debian packages MaxQ links against, if any are missing:
#   libdnnl-dev (oneDNN: convolution), libopenblas-dev (OpenBLAS: matrix products),
#   libjpeg62-turbo-dev (libjpeg-turbo) and libpng-dev (image decoding); libopenmpi-dev and
#   openmpi-bin (Open MPI: data-parallel training under mpirun); binutils (objdump, for
#   Scripts/check_baseline_isa.sh).
# Uses apt-get as root, or through sudo otherwise. Does nothing when all are present.
set -euo pipefail

packages=(libdnnl-dev libopenblas-dev libjpeg62-turbo-dev libpng-dev libopenmpi-dev openmpi-bin binutils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: native dependencies present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "setup: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
fi
echo "setup: installing ${missing[*]} with apt-get"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
