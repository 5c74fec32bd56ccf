"""The pydantic models of a sweep spec: searched parameters, objectives and limits, sampler,
pruner, budget, the finalists' race, and the whole :class:`SweepSpec`.

Each model forbids unknown keys and is frozen. Reading ``sweeps/<study>.yaml`` and checking the
searched values against the training config is :mod:`cifar_hpo.sweep.spec`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cifar_hpo.config import ConfigError, TrainConfig, nest


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One searched parameter.

    Attributes:
        type: ``float``, ``int`` or ``categorical``.
        low, high: inclusive range for float/int (``low < high``; ``low > 0`` when ``log``).
        log: sample on a log scale.
        step: discretization step for float/int.
        choices: values for ``categorical``.
        when: only suggest when every named earlier parameter (or base value) has one of the
            listed values, e.g. ``{model.name: [resnet20, airbench]}``.
    """

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError("categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ConfigError("categorical takes 'choices', not low/high/log")
            return self
        if self.choices is not None:
            raise ConfigError(f"{self.type} takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ConfigError(f"{self.type} needs both 'low' and 'high'")
        if not self.low < self.high:
            raise ConfigError(f"empty or inverted range: low={self.low} must be < high={self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"log range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ConfigError("'step' cannot be combined with log=true")
        if self.step is not None and self.step <= 0:
            raise ConfigError(f"'step' must be > 0, got {self.step}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"int range needs whole numbers, got low={self.low} high={self.high}")
        return self

    @field_validator("when")
    @classmethod
    def _listify(cls, when: dict[str, Any]) -> dict[str, Any]:
        return {k: v if isinstance(v, list) else [v] for k, v in when.items()}

    def candidates(self) -> list[Any]:
        """Values that exercise validation: the choices, or both ends of the range."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


#: validation metrics (the per-epoch values pruners see): name -> direction
VALIDATION_METRICS = {
    "val_acc": "maximize",
    "val_loss": "minimize",
    "val_f1_macro": "maximize",
    "val_top5": "maximize",
}
#: measures of a trial besides validation metrics, all minimized: parameters, forward MACs per
#: image, batch-1 CPU latency (ms, :func:`cifar_hpo.latency.measure_latency_ms`), training
#: seconds (validation included), training FLOPs (MACs x 2 x 3 per training image)
COST_MEASURES = ("params", "macs", "latency_ms", "train_seconds", "train_flops")
#: measures known from the config alone: a constraint on them is checked before training
CONFIG_MEASURES = ("params", "macs")
TIME_TO_ACC = "time_to_acc@"
ALLOWED_METRICS = (
    f"{', '.join(VALIDATION_METRICS)}, {', '.join(COST_MEASURES)}, {TIME_TO_ACC}X (0 < X < 1)"
)


def metric_direction(name: str) -> str:
    """``maximize`` or ``minimize`` for an objective metric name.

    Raises:
        ValueError: unknown name (lists the allowed ones).
    """
    if name in VALIDATION_METRICS:
        return VALIDATION_METRICS[name]
    if name in COST_MEASURES:
        return "minimize"
    if name.startswith(TIME_TO_ACC):
        try:
            target = float(name.removeprefix(TIME_TO_ACC))
        except ValueError:
            target = float("nan")
        if 0.0 < target < 1.0:
            return "minimize"
        raise ConfigError(f"{name!r}: the target accuracy X of {TIME_TO_ACC}X must be in (0, 1)")
    raise ConfigError(f"unknown metric {name!r}; allowed: {ALLOWED_METRICS}")


class ObjectiveSpec(_Strict):
    """One objective: a validation metric (test data never drives the search) or a cost.

    ``direction`` defaults to the metric's own (accuracy-like metrics are maximized, loss and
    costs minimized); giving the other one is an error.
    """

    metric: str = "val_acc"
    direction: Literal["maximize", "minimize"] = "maximize"

    @model_validator(mode="before")
    @classmethod
    def _direction(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        metric = values.get("metric", "val_acc")
        wanted = metric_direction(str(metric))
        given = values.get("direction")
        if given is not None and given != wanted:
            raise ConfigError(
                f"objective {metric} must be {'minimized' if wanted == 'minimize' else 'maximized'}"
            )
        return {**values, "direction": wanted}


class LimitSpec(_Strict):
    """An upper and/or lower bound on a measure (constraint or export rule)."""

    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _some(self) -> LimitSpec:
        if self.max is None and self.min is None:
            raise ConfigError("a limit needs 'max' and/or 'min'")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ConfigError(f"empty limit: min={self.min} > max={self.max}")
        return self

    def violation(self, value: float) -> float:
        """Optuna's constraint value (``trial.set_constraint``): how far ``value`` lies outside
        the limit relative to the bound (> 0: violated), or how far inside it (<= 0)."""
        gaps = []
        if self.max is not None:
            gaps.append((value - self.max) / max(abs(self.max), 1e-12))
        if self.min is not None:
            gaps.append((self.min - value) / max(abs(self.min), 1e-12))
        return max(gaps)

    def describe(self, name: str) -> str:
        """``params <= 200,000`` (and/or ``>=``)."""
        parts = []
        if self.max is not None:
            parts.append(f"{name} <= {self.max:,.6g}")
        if self.min is not None:
            parts.append(f"{name} >= {self.min:,.6g}")
        return " and ".join(parts)

    def holds(self, value: float | None) -> bool:
        """Whether ``value`` (None: not measured) is within the limit."""
        return value is not None and self.violation(value) <= 0


def _limits_keys(limits: dict[str, LimitSpec], what: str) -> dict[str, LimitSpec]:
    for name in limits:
        try:
            metric_direction(name)
        except ValueError as err:
            raise ConfigError(f"{what}: {err}") from None
    return limits


class SamplerSpec(_Strict):
    """Optuna sampler: ``tpe`` (default), ``random``, ``grid``, ``cmaes``, ``gp``, ``qmc`` or
    ``nsga2``. Several objectives: all but ``cmaes``."""

    name: Literal["tpe", "random", "grid", "cmaes", "gp", "qmc", "nsga2"] = "tpe"
    seed: int | None = 0
    n_startup_trials: int = Field(10, ge=0)


class PrunerSpec(_Strict):
    """Optuna pruner over per-epoch validation reports.

    ``median`` (MedianPruner: n_startup_trials, n_warmup_steps), ``successive_halving``
    and ``hyperband`` (min_resource, reduction_factor; resource = epochs), ``none``.
    """

    name: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(5, ge=0)
    n_warmup_steps: int = Field(1, ge=0)
    min_resource: int = Field(1, ge=1)
    reduction_factor: int = Field(3, ge=2)


class BudgetSpec(_Strict):
    """Per-trial budget: epochs (the schedule is fitted to them) and training subset share;
    optionally the study's time budget.

    Attributes:
        epochs: search fidelity, epochs per trial (the pruner's max resource).
        train_fraction: share of the training split per search epoch.
        minutes: the whole study's wall-time budget, search and refit (``--budget`` overrides
            it); None: run ``--trials``/``--timeout`` without a refit.
        refit_share: share of the budget kept for the refit of the best configuration.
        refit_epochs: the refit's epochs on the whole training split (capped by the time
            left); None: ``epochs``.
        refit_reference: also refit the first enqueued config (the study's reference recipe)
            with the champion's epochs, as the bar the champion is compared with; the refit
            time is then shared by the two refits (skipped when the reference is the champion).
        refit_holdout: keep the validation hold-out out of the refit's training, so the refit
            reports a validation accuracy; false: the refit trains on all of the training
            split (50,000 CIFAR images, as a recipe is published) and reports test only.
        refit_min_epochs: the refit's minimum epochs (the reference recipe's own): on a slow
            machine the plan raises the refit share (up to 60 % of the budget) until they fit,
            so the champion never trains less than the recipe it must beat; None: no minimum.
        fidelity: how the search decides at low fidelity (:mod:`cifar_hpo.sweep.fidelity`):
            ``mid-schedule`` (the pruner compares trials at epochs inside their schedules) or
            ``complete`` (every trial trains a complete short schedule and is ranked where it
            ends, no mid-schedule pruning; the top configurations are raced as finalists).
        search_test: score the test split after every completed search trial (the
            leaderboard's test column; never used for selection). False saves one test pass
            per trial where the champion's test score comes from its refit or the race: on a
            2-core AVX512-BF16 EPYC a 2-epoch airbench94 trial of the baseline study spent ~45
            of its ~166 s on the 10,000 test images with TTA.
    """

    epochs: int = Field(4, ge=1)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)
    minutes: float | None = Field(None, gt=0.0)
    refit_share: float = Field(0.25, ge=0.0, lt=1.0)
    refit_epochs: float | None = Field(None, gt=0.0)
    refit_reference: bool = False
    refit_holdout: bool = True
    refit_min_epochs: float | None = Field(None, gt=0.0)
    fidelity: Literal["mid-schedule", "complete"] = "mid-schedule"
    search_test: bool = True

    @model_validator(mode="after")
    def _check_refit_epochs(self) -> BudgetSpec:
        wanted = self.refit_epochs or self.epochs
        if self.refit_min_epochs is not None and self.refit_min_epochs > wanted:
            raise ConfigError(
                f"refit_min_epochs {self.refit_min_epochs:g} is above the refit's epochs "
                f"{wanted:g}; expected refit_min_epochs <= refit_epochs"
            )
        return self


class RefitSpec(_Strict):
    """The finalists' race after the search (:mod:`cifar_hpo.sweep.finalists`).

    Attributes:
        finalists: the top configurations of the search retrained at the refit fidelity (the
            plan lowers it to what the budget holds).
        seeds: random seeds per finalist, and for the reference recipe beside them (the plan
            lowers it to what the budget holds); the champion is the finalist with the best mean.
        alpha: significance level a challenger must beat the reference recipe at to become
            ``champion`` (otherwise the reference's refit is the champion).
    """

    finalists: int = Field(3, ge=1)
    seeds: int = Field(2, ge=1)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)


class SweepSpec(_Strict):
    """A whole study definition; see the module docstring for the YAML layout."""

    description: str = ""
    objective: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec()])
    constraints: dict[str, LimitSpec] = Field(default_factory=dict)
    rules: dict[str, dict[str, LimitSpec]] = Field(default_factory=dict)
    base: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    budget: BudgetSpec = BudgetSpec()
    refit: RefitSpec = RefitSpec()
    top_k_models: int = Field(3, ge=0)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("objective", mode="before")
    @classmethod
    def _listify_objective(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("constraints")
    @classmethod
    def _known_constraints(cls, value: dict[str, LimitSpec]) -> dict[str, LimitSpec]:
        return _limits_keys(value, "constraint")

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, dict[str, LimitSpec]]) -> dict[str, dict]:
        for alias, limits in value.items():
            if not alias or not all(ch.isalnum() or ch in "-_" for ch in alias):
                raise ConfigError(f"rule name {alias!r}: letters, digits, '-' and '_' only")
            if alias == "champion":
                raise ConfigError("rule name 'champion' is taken by the study's best trial")
            if not limits:
                raise ConfigError(f"rule {alias!r} needs at least one limit")
            _limits_keys(limits, f"rule {alias}")
        return value

    @model_validator(mode="after")
    def _objectives(self) -> SweepSpec:
        names = [o.metric for o in self.objective]
        if not names:
            raise ConfigError("objective: give at least one metric")
        if len(set(names)) != len(names):
            raise ConfigError(f"objective: a metric is listed twice: {names}")
        if len(names) > 1:
            if self.sampler.name == "cmaes":
                raise ConfigError(
                    "sampler cmaes optimizes one objective; for several use tpe, nsga2, gp, "
                    "random, qmc or grid"
                )
            if self.pruner.name != "none":
                raise ConfigError(
                    f"pruner {self.pruner.name} needs a single objective (Optuna cannot prune "
                    "multi-objective trials); use pruner: {name: none}"
                )
        elif names[0] not in VALIDATION_METRICS and self.pruner.name != "none":
            raise ConfigError(
                f"pruner {self.pruner.name} needs a per-epoch validation metric as the objective "
                f"({', '.join(VALIDATION_METRICS)}), not {names[0]}; use pruner: {{name: none}}"
            )
        return self

    @property
    def primary(self) -> ObjectiveSpec:
        """The first objective: it ranks trials for the ``champion`` alias and the refit."""
        return self.objective[0]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objective) > 1

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objective]

    @property
    def directions(self) -> list[str]:
        return [str(o.direction) for o in self.objective]

    def base_config(self) -> TrainConfig:
        """The base config with the budget applied (epochs, ``data.train_fraction``)."""
        values = nest(self.base)
        values["epochs"] = self.budget.epochs
        values.setdefault("data", {})["train_fraction"] = self.budget.train_fraction
        return TrainConfig.from_dict(values)
