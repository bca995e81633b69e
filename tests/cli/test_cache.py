"""``kiln cache``: the compile cache's size by part, and clearing it."""

import pytest

from kiln.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder))
    return folder


def _write(path, size):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_an_empty_cache_says_so(cache, capsys):
    assert main(["cache"]) == 0
    assert f"{cache} is empty" in capsys.readouterr().out


def test_info_shows_the_size_by_part_and_clear_empties_it(cache, capsys):
    _write(cache / "fxgraph" / "ab" / "key" / "entry", 1000)
    _write(cache / "triton" / "0" / "hash" / "kernel.cubin", 3000)
    _write(cache / "xy" / "module.py", 500)
    assert main(["cache", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"kiln cache: {cache}: 4.4 KB")  # 4,500 bytes
    assert [line.split() for line in lines[1:]] == [
        ["2.9", "KB", "triton"], ["1000", "B", "fxgraph"], ["500", "B", "xy"],
    ]  # fmt: skip

    assert main(["cache", "clear"]) == 0
    assert "4.4 KB freed" in capsys.readouterr().out
    assert cache.is_dir() and not any(cache.iterdir())


def test_clear_leaves_a_folder_that_is_no_compile_cache_alone(cache):
    _write(cache / "thesis.tex", 10)  # TORCHINDUCTOR_CACHE_DIR pointing at a folder of one's own
    with pytest.raises(SystemExit, match="does not look like a compile cache"):
        main(["cache", "clear"])
    assert (cache / "thesis.tex").read_bytes() == b"x" * 10
