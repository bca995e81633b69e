"""The Engine contract: padding up to the next batch size, splitting above the largest."""

import pytest
import torch

from kiln.deploy import Engine


def _recording_engine(sizes=(1, 4)):
    calls = []

    def runner(batch):
        calls.append(len(batch))
        return batch.sum(dim=1, keepdim=True) * 2

    runners = dict.fromkeys(sizes, runner)
    return Engine(runners, (3,), torch.float32, torch.device("cpu")), calls


@pytest.mark.parametrize(("n", "expected_calls"), [(1, [1]), (3, [4]), (4, [4]), (9, [4, 4, 1])])
def test_pads_up_to_the_next_size_and_splits_above_the_largest(n, expected_calls):
    engine, calls = _recording_engine()
    x = torch.randn(n, 3)
    out = engine(x)
    assert calls == expected_calls
    torch.testing.assert_close(out, x.sum(dim=1, keepdim=True) * 2)


def test_wrong_shape_or_dtype_is_refused_with_what_was_expected():
    engine, _ = _recording_engine()
    with pytest.raises(ValueError, match=r"shape \(N, 3\) and dtype torch.float32.*\(2, 4\)"):
        engine(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"dtype torch\.float64"):
        engine(torch.randn(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("n", [1, 3, 4])  # a built size (the short path), padded, the largest
def test_outputs_are_fresh_tensors_not_the_runners_buffer(n):
    static = torch.zeros(4, 1)  # a CUDA graph's output buffer, overwritten by each call

    def runner(batch):
        static[: len(batch)] = batch.sum(dim=1, keepdim=True)
        return static[: len(batch)]

    engine = Engine(dict.fromkeys((1, 4), runner), (3,), torch.float32, torch.device("cpu"))
    first = engine(torch.ones(n, 3))
    engine(torch.full((n, 3), 5.0))
    torch.testing.assert_close(first, torch.full((n, 1), 3.0))
