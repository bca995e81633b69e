import pytest
import torch

from kiln.data import make_loader


@pytest.mark.parametrize("resident", [True, False])
def test_ranks_together_see_the_single_process_batches(resident):
    x = torch.arange(103).float()[:, None]
    single = make_loader((x,), 12, shuffle=True, seed=5, resident=resident)
    shards = [
        make_loader((x,), 4, shuffle=True, seed=5, rank=r, world_size=3, resident=resident)
        for r in range(3)
    ]
    assert [len(s) for s in shards] == [8, 8, 8]  # 103 // 12: the last partial batch is dropped
    for epoch in (0, 1):
        per_rank = [[b[0] for b in s.epoch(epoch)] for s in shards]
        for step, (full,) in enumerate(single.epoch(epoch)):
            if step == 8:
                break
            torch.testing.assert_close(torch.cat([r[step] for r in per_rank]), full)


def test_sharding_errors_are_clear():
    with pytest.raises(ValueError, match="rank must be in"):
        make_loader((torch.zeros(10, 1),), 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        make_loader((torch.zeros(10, 1),), 4, rank=0, world_size=3)
