"""Fixtures for kiln.tune: fast settings for the Bayes sampler."""

from kiln.tune import Bayes


def fast_bayes(seed: int = 0, n_startup: int = 4) -> Bayes:
    return Bayes(seed=seed, n_startup=n_startup, num_restarts=2, raw_samples=64, mc_samples=32)
