#!/bin/sh
# Makes .gpu/ (git ignores it), what tests/gpu/on_device.sh needs on a lent GPU machine,
# which reaches no package registry: this checkout's wheel, the wheels of its needs for
# the machine's CPython 3.12 (its torch is the image's), libunwind and sys/sdt.h.
# Run by `make gpu-kit`; then carry .gpu, build/libmemprof.so and build/nvidia-cuda-runtime.
set -eu
rm -rf .gpu && mkdir -p .gpu/include/sys
rm -rf build/lib build/bdist.*   # setuptools keeps modules since moved or removed there
.venv/bin/pip wheel -q --no-deps -w .gpu .
.venv/bin/pip download -q -d .gpu --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    cffi pycparser pyelftools zstandard cxxfilt pyderust graphviz regex click
cp /usr/lib/x86_64-linux-gnu/libunwind.so.8 .gpu/
cp /usr/include/x86_64-linux-gnu/sys/sdt.h /usr/include/x86_64-linux-gnu/sys/sdt-config.h \
    .gpu/include/sys/ 2>/dev/null ||
    cp /usr/include/sys/sdt.h /usr/include/sys/sdt-config.h .gpu/include/sys/
ls .gpu
