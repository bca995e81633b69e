"""kiln._capture: a CUDA graph capture runs with Python's garbage collector held off."""

import gc
import weakref

import pytest

from kiln._capture import no_garbage_collection


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_garbage_is_collected_before_and_none_during_the_block():
    garbage = _Cycle()
    alive = weakref.ref(garbage)
    del garbage
    assert alive() is not None  # a cycle: only the collector frees it
    with no_garbage_collection():
        assert alive() is None
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_after_an_error_and_stays_off_if_it_was_off():
    with pytest.raises(RuntimeError), no_garbage_collection():
        raise RuntimeError("capture failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with no_garbage_collection():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
