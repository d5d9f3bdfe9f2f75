"""Evaluation: retrieval metrics (trec_eval definitions), BEIR / SQuAD loaders, the grid runner and reports.
Generation metrics live in ``aisd.evals.generation_metrics``."""

from aisd.evals.beir import BeirDataset, load_beir, load_dataset, load_squad_as_beir
from aisd.evals.retrieval_metrics import EvalResult, evaluate
from aisd.evals.runner import ConfigResult, run_grid

__all__ = ["BeirDataset", "ConfigResult", "EvalResult", "evaluate", "load_beir", "load_dataset",
           "load_squad_as_beir", "run_grid"]
