#!/bin/bash
# arm64_sysroot.sh DIR PACKAGE...: Debian's arm64 packages, and the libraries they
# need, unpacked into DIR (apt-get download + dpkg -x): a sysroot for building
# against (zstd) and for qemu-aarch64-static -L DIR.  Nothing is installed over the
# host's own packages; the arm64 architecture is added to dpkg's list for apt.
set -euo pipefail
dir=$(realpath -m "$1")
shift
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
fi
# The packages and the libraries they depend on, as arm64 packages: the runtime
# closure (development packages only where named; Multi-Arch: foreign ones like
# debconf are left out: nothing of theirs is loaded by a program).
wanted=$( (printf '%s\n' "$@"
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${@/%/:arm64}" 2>/dev/null |
        sed -n 's/^\([a-z0-9][^ <>]*\):arm64$/\1/p' | grep -v -- '-dev$') | sort -u)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dir"
cd "$work"
# One apt-get for them all (each start reads apt's caches: seconds); where one of them
# cannot be had, each is asked for alone and the missing ones left out.
mapfile -t packages <<< "$wanted"
if ! apt-get download -qq "${packages[@]/%/:arm64}" 2>/dev/null; then
    for p in "${packages[@]}"; do
        apt-get download -qq "$p:arm64" 2>/dev/null || true
    done
fi
for deb in *.deb; do
    dpkg -x "$deb" "$dir"
done
echo "$*" > "$dir/.installed"   # the packages asked for: the Makefile compares
