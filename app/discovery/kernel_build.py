"""Builds the nearby-search kernel into the extension module ``app.discovery._nearby``.

Run at install time, never on import: ``make`` runs ``python setup.py build_ext
--inplace`` after installing the lock file (setup.py names this file in
``cffi_modules``). cffi's API mode compiles a wrapper around nearby.c against the very
header the Python side declares (``cdef`` of nearby.h), so a field that differs in name or
type between the two is a compile error, not a silent mis-read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
HEADER = HERE / "nearby.h"
SOURCE = HERE / "nearby.c"
MODULE = "app.discovery._nearby"

ffibuilder = FFI()
ffibuilder.cdef(HEADER.read_text())
ffibuilder.set_source(
    MODULE,
    '#include <stdint.h>\n#include "nearby.h"\n',
    sources=[os.path.relpath(SOURCE)],  # setuptools wants paths relative to setup.py
    include_dirs=[str(HERE)],
    depends=[str(HEADER)],
    libraries=["m"],
    # Python's own CFLAGS add -fwrapv (for CPython's C), which the kernel does not need:
    # with it a search + render cost ~5 % more CPU than the old `cc -O2` build, without it
    # the same (in-process A/B, CPU time, bench/README.md).
    extra_compile_args=["-O2", "-fno-wrapv", "-Werror=incompatible-pointer-types"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parents[1] / "build" / "kernel"), verbose=True)
