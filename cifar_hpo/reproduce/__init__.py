"""``make reproduce-readme-table``: the source projects' recipes retrained and tabulated.

Recipes are data (``sweeps/recipes.yaml``); :func:`reproduce` trains them one after another
through :func:`cifar_hpo.engine.train` with MLflow tracking (experiment ``readme-table``), adds
the best configuration of the ``baseline`` study, and rewrites the README's results table and
plots from what MLflow holds. A :class:`Budget` scales every recipe to the time available::

    from cifar_hpo.reproduce import Budget, reproduce

    reproduce(Budget.from_options(epochs=2), readme="README.md")
"""

from cifar_hpo.reproduce.recipes import (
    RECIPES_FILE,
    Budget,
    PlannedRun,
    Recipe,
    RecipeBook,
    fit_schedule,
    load_recipes,
    plan_runs,
)
from cifar_hpo.reproduce.run import ReproduceOutcome, reproduce, write_table
from cifar_hpo.reproduce.table import EXPERIMENT, MARKER, collect, markers, render, rewrite_readme

__all__ = [
    "EXPERIMENT",
    "MARKER",
    "RECIPES_FILE",
    "Budget",
    "PlannedRun",
    "Recipe",
    "RecipeBook",
    "ReproduceOutcome",
    "collect",
    "fit_schedule",
    "load_recipes",
    "markers",
    "plan_runs",
    "render",
    "reproduce",
    "rewrite_readme",
    "write_table",
]
