"""The C++ compiler of AOTInductor packages: one that links libstdc++ into shared objects builds
wrappers that torch's loader cannot run (on our H100 image it segfaulted in std::regex), so kiln
builds with another. Here the bad compiler is a script around g++ adding -static-libstdc++."""

import shutil
import sys

import pytest
import torch

from kiln.deploy import _aoti, _toolchain
from kiln.deploy._aoti import build_package, inductor_options, load_package
from kiln.deploy._aoti_probe import probe_packages

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not (shutil.which("g++") and shutil.which("readelf")),
    reason="needs g++ and readelf (Linux)",
)
CPU = torch.device("cpu")


@pytest.fixture
def static_gxx(tmp_path):
    """A compiler like the H100 image's: g++, but libstdc++ linked into shared objects."""
    script = tmp_path / "g++-static"
    script.write_text('#!/bin/sh\ncase " $* " in *" -shared "*) exec g++ "$@" -static-libstdc++ '
                      '-static-libgcc ;; esac\nexec g++ "$@"\n')  # fmt: skip
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def inductor_uses():
    """Make Inductor's configured compiler the one given; kiln's choice is recomputed."""
    patches = []

    def use(compiler: str) -> None:
        patches.append(torch._inductor.config.patch({"cpp.cxx": (compiler,)}))
        patches[-1].__enter__()
        _toolchain.package_compiler.cache_clear()

    yield use
    for patch in reversed(patches):
        patch.__exit__(None, None, None)
    _toolchain.package_compiler.cache_clear()


def test_the_probe_tells_a_static_libstdcxx_compiler_from_a_dynamic_one(static_gxx):
    assert _toolchain.links_libstdcxx_dynamically("g++") is True
    assert _toolchain.links_libstdcxx_dynamically(static_gxx) is False
    assert _toolchain.links_libstdcxx_dynamically("no-such-compiler++") is None


def test_kiln_keeps_a_good_compiler_and_replaces_a_static_one(static_gxx, inductor_uses):
    inductor_uses("g++")
    assert _toolchain.package_compiler() is None
    assert "cpp.cxx" not in inductor_options(CPU, 8, "none")
    inductor_uses(static_gxx)
    chosen = _toolchain.package_compiler()
    assert chosen is not None and chosen != static_gxx
    assert _toolchain.links_libstdcxx_dynamically(chosen) is True
    assert inductor_options(CPU, 8, "none")["cpp.cxx"] == chosen
    # a compiler the user names wins
    assert inductor_options(CPU, 8, "none", {"cpp.cxx": "g++"})["cpp.cxx"] == "g++"


def test_packages_built_when_inductor_has_a_static_compiler_load_and_match_eager(
    conv_net, static_gxx, inductor_uses, tmp_path, monkeypatch
):
    """The oracle both ways: with the bad compiler itself the wrapper does not run in a fresh
    process (probed there: it may crash), with kiln's options it loads and matches eager."""
    inductor_uses(static_gxx)
    x = torch.randn(4, 3, 8, 8)
    bad = inductor_options(CPU, 4, "none", {"cpp.cxx": static_gxx})
    bad_path = build_package(conv_net, x, tmp_path / "bad" / "batch_4.pt2", bad)
    assert probe_packages({4: bad_path}, CPU, {4: x}) is not None

    good_path = build_package(conv_net, x, tmp_path / "good" / "batch_4.pt2",
                              inductor_options(CPU, 4, "none"))  # fmt: skip
    assert probe_packages({4: good_path}, CPU, {4: x}) is None
    assert _aoti._model_names(good_path) == ["model"]
    with torch.no_grad():
        expected = conv_net(x)
        got = load_package(good_path, CPU)(x)  # torch's C++ loader, built directly
        monkeypatch.setattr(_aoti, "_model_names", lambda path: ["model", "another"])
        through_torch = load_package(good_path, CPU)(x)  # aoti_load_package's way
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(through_torch, got, rtol=0, atol=0)
