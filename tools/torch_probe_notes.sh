#!/usr/bin/env bash
# The USDT notes of PyTorch's CUDA caching allocator, for tests/sampler/unit/test_usdt.c:
# the bytes of libc10_cuda.so's .note.stapsdt section, from a torch wheel (fetched with
# `pip download --no-deps torch==X`, never installed) or from the library itself.
#   tools/torch_probe_notes.sh torch-2.14.1-...whl tests/data/usdt/torch-2.14.1.note
set -euo pipefail
source=$1 out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
case $source in
*.whl) unzip -p "$source" torch/lib/libc10_cuda.so >"$tmp/lib" ;;
*) cp "$source" "$tmp/lib" ;;
esac
objcopy --dump-section .note.stapsdt="$out" "$tmp/lib" "$tmp/copy"
readelf -n "$tmp/lib" | grep -A4 'stapsdt' | grep -E 'Name|Location|Arguments'
