"""kiln.tune: multi-objective hyperparameter search.

>>> from kiln import tune
>>> study = tune.Study({"x": tune.Float(0.0, 1.0)}, {"y": "min"}, sampler=tune.Sobol(seed=0))
>>> study.optimize(lambda trial: {"y": (trial.params["x"] - 0.3) ** 2}, trials=8)
>>> len(study.trials)
8
"""

from kiln.tune._bayes import Bayes
from kiln.tune._client import Client, RemoteStudy, connect
from kiln.tune._pareto import crowding_distance, hypervolume, nondominated_ranks, pareto_mask
from kiln.tune._plots import plot, plot_data
from kiln.tune._pruner import BasePruner, SuccessiveHalving
from kiln.tune._report_callback import ReportCallback
from kiln.tune._sampler import BaseSampler, Random, Sobol
from kiln.tune._space import Categorical, Float, Int, LinearConstraint, Space
from kiln.tune._storage import BaseStorage, InMemoryStorage
from kiln.tune._study import Study
from kiln.tune._trial import Trial, TrialPruned, TrialState

__all__ = [
    "BasePruner",
    "BaseSampler",
    "BaseStorage",
    "Bayes",
    "Categorical",
    "Client",
    "Float",
    "InMemoryStorage",
    "Int",
    "LinearConstraint",
    "Random",
    "RemoteStudy",
    "ReportCallback",
    "Sobol",
    "Space",
    "Study",
    "SuccessiveHalving",
    "Trial",
    "TrialPruned",
    "TrialState",
    "connect",
    "crowding_distance",
    "hypervolume",
    "nondominated_ranks",
    "pareto_mask",
    "plot",
    "plot_data",
]
