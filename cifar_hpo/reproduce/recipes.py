"""Source projects' recipes as data (``sweeps/recipes.yaml``), budgets, and the configs they
resolve to.

A recipe is a dotted-name config (the one vocabulary of :mod:`cifar_hpo.config`) plus where it
comes from, the source's own epoch count and reported figure, and its default CPU budget. A
:class:`Budget` decides how many epochs (and which share of the training split) each recipe
runs; :func:`fit_schedule` then rescales the epoch-denominated schedule settings so that the
schedule spans the epochs actually run instead of being cut off.

The whole file is validated when it is loaded, before anything trains: unknown keys, wrong
types, unknown models or policies fail with one line naming the recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cifar_hpo.config import ConfigError, TrainConfig, load_yaml, with_overrides

RECIPES_FILE = Path("sweeps/recipes.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reported(_Strict):
    """A figure the source reports, shown beside ours.

    Attributes:
        metric: what it measured: ``test_acc`` (final test top-1), ``best_val_acc``,
            ``best_val_loss`` or ``val_acc`` (final validation top-1); fractions in [0, 1],
            losses in nats.
        value: the figure.
        text: how the table shows it, e.g. ``"81.33 % test"``.
    """

    metric: Literal["test_acc", "best_val_acc", "best_val_loss", "val_acc"]
    value: float
    text: str


class BudgetCap(_Strict):
    """A recipe's default CPU budget: epochs (fractions allowed) and share of the training
    split."""

    epochs: int | float = Field(gt=0)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)


class Recipe(_Strict):
    """One row of the README table; see ``sweeps/recipes.yaml`` for the fields."""

    name: str = Field(min_length=1)
    project: str
    epochs: int | float = Field(gt=0)
    cpu: BudgetCap
    reported: Reported | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    study: str | None = None

    @model_validator(mode="after")
    def _study_or_config(self) -> Recipe:
        if self.study is None and not self.config:
            raise ConfigError("needs a 'config' (or a 'study' to take it from)")
        return self


class RecipeBook(_Strict):
    """The whole recipes file: shared ``defaults`` and the ordered ``recipes``."""

    defaults: dict[str, Any] = Field(default_factory=dict)
    recipes: list[Recipe]

    @model_validator(mode="after")
    def _unique_names(self) -> RecipeBook:
        seen: set[str] = set()
        for r in self.recipes:
            if r.name in seen:
                raise ConfigError(f"recipe name {r.name!r} is used twice")
            seen.add(r.name)
        return self

    def names(self) -> list[str]:
        """Recipe names in file order."""
        return [r.name for r in self.recipes]

    def base_config(self, recipe: Recipe, overrides: Mapping[str, Any] = ()) -> TrainConfig:
        """``defaults`` + the recipe's ``config`` + ``overrides`` (not for study recipes).

        Raises:
            ConfigError: an invalid value, naming the recipe.
        """
        try:
            config = with_overrides(TrainConfig.from_dict(self.defaults), recipe.config)
            return with_overrides(config, dict(overrides)) if overrides else config
        except ConfigError as err:
            raise ConfigError(f"recipe {recipe.name!r}: {err}") from None


def recipe_config(name: str, path: str | Path = RECIPES_FILE) -> TrainConfig:
    """The full config of recipe ``name`` (``defaults`` + its ``config``), for
    ``cifar-hpo train --recipe NAME``.

    Raises:
        ConfigError: an unknown name (listing the recipes), or a recipe that takes its config
            from a study (train those with ``cifar-hpo reproduce --only NAME``).
    """
    book = load_recipes(path)
    recipe = next((r for r in book.recipes if r.name == name), None)
    if recipe is None:
        raise ConfigError(f"unknown recipe {name!r}; recipes: {', '.join(book.names())}")
    if recipe.study is not None:
        raise ConfigError(
            f"recipe {name!r} takes its config from study {recipe.study!r}; "
            f"train it with: cifar-hpo reproduce --only {name}"
        )
    return book.base_config(recipe)


def load_recipes(path: str | Path = RECIPES_FILE) -> RecipeBook:
    """Read and validate a recipes file; every non-study recipe's config is built once.

    Raises:
        ConfigError: missing file, bad YAML, unknown keys or invalid values (one line).
    """
    values = load_yaml(path)
    try:
        book = RecipeBook.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(p) for p in e["loc"])
        if loc.startswith("recipes."):  # name the recipe rather than its index
            parts = loc.split(".")
            try:
                name = values["recipes"][int(parts[1])].get("name", parts[1])
                loc = ".".join([f"recipes[{name}]", *parts[2:]])
            except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                pass
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"{path}: {loc}: {msg}") from None
    for recipe in book.recipes:
        if recipe.study is None:
            try:
                book.base_config(recipe)
            except ConfigError as err:
                raise ConfigError(f"{path}: {err}") from None
    return book


@dataclass(frozen=True)
class Budget:
    """How long every recipe trains.

    Attributes:
        kind: ``cpu`` (each recipe's ``cpu`` cap), ``full`` (the sources' own epoch counts on
            the whole training split) or ``epochs`` (every recipe ``epochs`` epochs).
        epochs: the epoch count for ``kind="epochs"``.
        train_fraction: overrides the share of the training split for every recipe.
    """

    kind: Literal["cpu", "full", "epochs"] = "cpu"
    epochs: int | None = None
    train_fraction: float | None = None

    @classmethod
    def from_options(
        cls, epochs: int | None = None, full: bool = False, train_fraction: float | None = None
    ) -> Budget:
        """The budget the CLI/Makefile options describe.

        Raises:
            ConfigError: ``full`` together with ``epochs``, or values out of range.
        """
        if full and epochs is not None:
            raise ConfigError("give either --full or --epochs N, not both")
        if epochs is not None and epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {epochs}")
        if train_fraction is not None and not 0.0 < train_fraction <= 1.0:
            raise ConfigError(f"--train-fraction must be in (0, 1], got {train_fraction}")
        kind = "full" if full else "epochs" if epochs is not None else "cpu"
        return cls(kind=kind, epochs=epochs, train_fraction=train_fraction)

    def for_recipe(self, recipe: Recipe) -> tuple[int, float]:
        """(epochs, data.train_fraction) this budget gives ``recipe``."""
        if self.kind == "full":
            epochs, fraction = recipe.epochs, 1.0
        elif self.kind == "epochs":
            epochs, fraction = int(self.epochs or 1), 1.0
        else:
            epochs, fraction = recipe.cpu.epochs, recipe.cpu.train_fraction
        if self.train_fraction is not None:
            fraction = self.train_fraction
        return epochs, fraction

    @property
    def label(self) -> str:
        """Short name, e.g. ``cpu``, ``full``, ``epochs=3`` or ``epochs=3,train_fraction=0.1``."""
        label = {"cpu": "cpu", "full": "full", "epochs": f"epochs={self.epochs}"}[self.kind]
        if self.train_fraction is not None:
            label += f",train_fraction={self.train_fraction:g}"
        return label

    def describe(self, recipes_file: str | Path = RECIPES_FILE) -> str:
        """One sentence for the README footer."""
        share = (
            "the whole training split"
            if self.train_fraction is None
            else f"{100 * self.train_fraction:g} % of the training split"
        )
        if self.kind == "cpu":
            text = (
                "default CPU budget: each recipe's `cpu:` epochs and training share from "
                f"`{recipes_file}`"
            )
            if self.train_fraction is not None:
                text += f", but {share} for every recipe"
        elif self.kind == "full":
            text = f"FULL: the sources' own epoch counts on {share}"
        else:
            unit = "epoch" if self.epochs == 1 else "epochs"
            text = f"EPOCHS={self.epochs}: every recipe {self.epochs} {unit} on {share}"
        return text + "; every schedule is fitted to the epochs run"


def fit_schedule(
    config: TrainConfig, source_epochs: int, epochs: int, train_fraction: float
) -> TrainConfig:
    """``config`` set to ``epochs`` on ``train_fraction`` of the training split, with the
    epoch-denominated settings scaled by ``epochs / source_epochs``.

    OneCycle and cosine already span ``config.epochs`` (the engine fits them), so only these
    change: plateau patience (rounded, >= 0), StepLR ``step_size`` (rounded, >= 1), cosine
    ``warmup_epochs`` and early-stopping patience (rounded, >= 1, so it stays enabled).
    """
    ratio = epochs / source_epochs
    updates: dict[str, Any] = {"epochs": epochs, "data.train_fraction": train_fraction}
    s = config.schedule
    if ratio != 1.0:
        if s.name == "plateau":
            updates["schedule.plateau_patience"] = max(0, round(s.plateau_patience * ratio))
        elif s.name == "step":
            updates["schedule.step_size"] = max(1, round(s.step_size * ratio))
        elif s.name == "cosine" and s.warmup_epochs > 0:
            updates["schedule.warmup_epochs"] = s.warmup_epochs * ratio
        if config.early_stopping.patience > 0:
            updates["early_stopping.patience"] = max(
                1, round(config.early_stopping.patience * ratio)
            )
    return with_overrides(config, updates)


@dataclass
class PlannedRun:
    """A recipe resolved under a budget: the config to train, or why it is skipped.

    Attributes:
        recipe: the recipe.
        order: its position in the table (file order).
        config: the config to train (None when skipped).
        epochs: epochs the budget gives it.
        train_fraction: training share the budget gives it.
        skip: one line saying why it does not train ("" when it does).
        reported: the source's figure (for study recipes: the study's best value).
        source: extra tags describing the source (e.g. the study trial).
    """

    recipe: Recipe
    order: int
    config: TrainConfig | None
    epochs: int
    train_fraction: float
    skip: str = ""
    reported: Reported | None = None
    source: dict[str, str] = field(default_factory=dict)


def plan_runs(
    book: RecipeBook,
    budget: Budget,
    *,
    only: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    storage: str | None = None,
    sweeps_dir: str | Path = "sweeps",
) -> list[PlannedRun]:
    """Resolve every (or every ``only``) recipe under ``budget``.

    Study recipes read the study's best trial (:func:`cifar_hpo.sweep.best.find_best`) and apply
    its params to the study spec's base config; a missing study or one without a completed
    trial becomes a skipped run with the reason, not an error.

    Raises:
        ConfigError: an unknown name in ``only`` or an invalid override.
    """
    only = list(only)
    unknown = [n for n in only if n not in book.names()]
    if unknown:
        raise ConfigError(f"unknown recipe {unknown[0]!r}; recipes: {', '.join(book.names())}")
    overrides = dict(overrides or {})
    plans = []
    for order, recipe in enumerate(book.recipes):
        if only and recipe.name not in only:
            continue
        epochs, fraction = budget.for_recipe(recipe)
        plan = PlannedRun(recipe, order, None, epochs, fraction, reported=recipe.reported)
        if recipe.study is not None:
            base, plan.skip, plan.reported, plan.source = _study_config(recipe, storage, sweeps_dir)
            if base is not None:
                try:
                    base = with_overrides(base, {**recipe.config, **overrides})
                except ConfigError as err:
                    raise ConfigError(f"recipe {recipe.name!r}: {err}") from None
        else:
            base = book.base_config(recipe, overrides)
        if base is not None:
            plan.config = fit_schedule(base, recipe.epochs, epochs, fraction)
        plans.append(plan)
    return plans


def _study_config(
    recipe: Recipe, storage: str | None, sweeps_dir: str | Path
) -> tuple[TrainConfig | None, str, Reported | None, dict[str, str]]:
    """(config, skip reason, reported, source tags) of a study recipe's best trial."""
    from cifar_hpo.sweep.best import find_best
    from cifar_hpo.sweep.spec import SweepSpecError, load_spec

    study = str(recipe.study)
    try:
        best = find_best(study, storage)
    except SweepSpecError as err:
        reason = f"{err}; run `cifar-hpo sweep --study {study} --trials N` first"
        return None, reason, recipe.reported, {}
    try:
        spec = load_spec(study, sweeps_dir)
        config = with_overrides(spec.base_config(), best.params)
    except ConfigError as err:  # SweepSpecError is a ConfigError
        return None, f"best trial {best.number} of study {study!r}: {err}", recipe.reported, {}
    b = spec.budget
    reported = recipe.reported or Reported(
        metric="val_acc",
        value=best.value,
        text=f"{100 * best.value:.2f} % val (trial {best.number}, "
        f"{b.epochs} ep on {100 * b.train_fraction:g} %)",
    )
    if spec.primary.metric != "val_acc" and recipe.reported is None:
        reported = None  # only accuracy objectives compare with our columns
    source = {"cifar_hpo.study": study, "cifar_hpo.study_trial": str(best.number)}
    if best.run_id:
        source["cifar_hpo.study_run_id"] = best.run_id
    return config, "", reported, source
