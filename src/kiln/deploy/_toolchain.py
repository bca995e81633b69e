"""The C++ compiler AOTInductor builds a package's wrapper library with.

torch's package loader runs C++ of the wrapper (``std::regex`` parses the device name) against
the process's libstdc++. A compiler that links its own copy of libstdc++ into shared objects
gives the wrapper a second set of locale tables, and the load dies in that regex with a
segmentation fault. It happened on our H100 image (2026-11-27), whose ``g++`` is a script
around a relocated GCC that finds only the static library; the distribution's ``/usr/bin/g++``
beside it links libstdc++ dynamically, and its packages load and match eager outputs. So before
a build kiln compiles a few lines into a shared object with Inductor's compiler and reads the
object's dynamic section: where libstdc++ is not among its needed libraries, it takes the first
other compiler on the machine whose objects need it.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger("kiln.deploy")

_SOURCE = """#include <regex>
#include <string>
extern "C" int kiln_probe(const char* s) {
    return std::regex_match(std::string(s), std::regex("a+"));
}
"""

# other C++ compilers to try, in order, where Inductor's links libstdc++ statically
_FALLBACKS = ("/usr/bin/g++", "/usr/bin/c++", "/usr/bin/clang++", "g++", "c++", "clang++")


def inductor_compiler() -> str | None:
    """The C++ compiler Inductor would use here (None where it cannot tell)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return str(get_cpp_compiler())
    except Exception:  # no compiler at all, or an Inductor without this function
        return None


def links_libstdcxx_dynamically(compiler: str) -> bool | None:
    """Whether shared objects ``compiler`` builds load libstdc++ as a shared library: True,
    False (a copy linked in), or None where the probe cannot run (no compiler or readelf)."""
    readelf = shutil.which("readelf")
    if readelf is None or shutil.which(compiler) is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kiln-cxx-") as tmp:
        source, shared = Path(tmp) / "probe.cpp", Path(tmp) / "probe.so"
        source.write_text(_SOURCE)
        try:
            built = subprocess.run(
                [compiler, "-shared", "-fPIC", "-O0", str(source), "-o", str(shared)],
                capture_output=True, timeout=120,
            )  # fmt: skip
            if built.returncode != 0:
                return None
            dynamic = subprocess.run([readelf, "-d", str(shared)], capture_output=True,
                                     text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
    needed = [line for line in dynamic.stdout.splitlines() if "(NEEDED)" in line]
    return any("libstdc++" in line or "libc++" in line for line in needed)


@functools.cache
def package_compiler() -> str | None:
    """A compiler for AOTInductor packages when Inductor's own would link libstdc++ into them
    (see the module notes); None to keep Inductor's choice."""
    current = inductor_compiler()
    if current is None or links_libstdcxx_dynamically(current) is not False:
        return None
    resolved = os.path.realpath(shutil.which(current) or current)
    for candidate in _FALLBACKS:
        found = shutil.which(candidate)
        if found is None or os.path.realpath(found) == resolved:
            continue
        if links_libstdcxx_dynamically(found):
            log.info("kiln.deploy: %s links libstdc++ statically into shared objects, which "
                     "crashes torch's package loader; building packages with %s",
                     current, found)  # fmt: skip
            return found
    log.warning("kiln.deploy: %s links libstdc++ statically into shared objects, which can "
                "crash torch's package loader, and no other C++ compiler here links it "
                "dynamically; the probe process will tell", current)  # fmt: skip
    return None
