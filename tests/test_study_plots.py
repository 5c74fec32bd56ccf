"""Optuna's plots of a study as PNG files (cifar_hpo.sweep.report.study_plots)."""

from __future__ import annotations

import warnings

import matplotlib.image
import optuna

from cifar_hpo.sweep.report import MAX_LEGEND_ENTRIES, drop_crowded_legend, study_plots


def reporting_study(n_trials: int) -> optuna.Study:
    """A study whose trials report 3 intermediate values over two parameters."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optim.lr", 1e-4, 0.3, log=True)
        trial.suggest_categorical("optim.name", ["sgd", "adam"])
        for epoch in range(3):
            trial.report(lr * (epoch + 1), epoch)
        return lr

    study.optimize(objective, n_trials=n_trials)
    return study


def test_a_study_of_many_trials_plots_without_a_legend_that_breaks_the_layout(tmp_path):
    """Optuna's intermediate-values plot names every trial in its legend: at 95 trials (as
    seed000's 60-minute sweep ran) the legend outgrew the figure and every sweep printed
    matplotlib's 'Tight layout not applied' UserWarning."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = reporting_study(4 * MAX_LEGEND_ENTRIES + 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        written = study_plots(study, tmp_path)
    names = {p.stem for p in written}
    assert {"optimization_history", "intermediate_values", "parallel_coordinate"} <= names
    height, width, _ = matplotlib.image.imread(tmp_path / "intermediate_values.png").shape
    assert (width, height) == (900, 500)  # 9 x 5 inches at 100 dpi


def test_a_small_study_keeps_its_legend(tmp_path):
    study = reporting_study(3)
    ax = optuna.visualization.matplotlib.plot_intermediate_values(study)
    drop_crowded_legend(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Trial0", "Trial1", "Trial2"]
