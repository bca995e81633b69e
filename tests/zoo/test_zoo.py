"""Every registered zoo model builds, runs, summarizes and survives save/load."""

import pytest
import torch

import kiln
from kiln.zoo import create_model, get_entry, list_models, register_model

NAMES = [entry.name for entry in list_models()]


@pytest.mark.parametrize("name", NAMES)
def test_zoo_model_runs_and_round_trips(name, tmp_path):
    model = create_model(name, **get_entry(name).test_kwargs).eval()  # small, e.g. 64x64 ResNets
    shape = model.input_specs[0].shape
    x = torch.rand(2, *shape)
    out = model(x)
    assert out.shape[0] == 2 and torch.isfinite(out).all()
    model.save(tmp_path / f"{name}.kiln")
    assert torch.equal(kiln.load_model(tmp_path / f"{name}.kiln").eval()(x), out)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_recipe_names_a_dataset_and_compiles(name):
    entry = get_entry(name)
    assert entry.dataset == "synthetic" or hasattr(kiln.datasets, entry.dataset)
    assert {"loss", "epochs", "batch_size"} <= set(entry.recipe)


def test_lenet5_has_the_classic_size():
    assert create_model("lenet5").count_params() == 61_706


def test_unknown_name_lists_available_and_duplicates_are_refused():
    with pytest.raises(KeyError, match="lenet5"):
        get_entry("lenet6")
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", dataset="mnist")(lambda: None)
