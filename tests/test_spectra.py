"""analysis.spectra: Jacobian spectra at criticality, measured against free-probability theory."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from analysis import figures, theory  # noqa: E402
from analysis.spectra import CASES, critical_spectra  # noqa: E402


@pytest.fixture(scope="module")
def spectra():
    return critical_spectra(depth=16, width=128, seed=1)


def test_the_cases_sit_where_they_say(spectra):
    tanh, relu = CASES
    assert float(theory.chi1("tanh", tanh.sigma_w2, tanh.sigma_b2)) == pytest.approx(1.0, abs=1e-9)  # critical
    assert relu.sigma_w2 == 2.0
    _, predicted = spectra
    assert predicted.q_star.iloc[0] == pytest.approx(float(theory.fixed_point("tanh", tanh.sigma_w2, tanh.sigma_b2)))


def test_one_squared_singular_value_per_unit_and_theory_per_ensemble(spectra):
    measured, predicted = spectra
    assert measured.groupby(["case", "weights"]).size().eq(128).all()
    assert (measured["lambda"] >= 0).all()
    np.testing.assert_allclose(predicted["mean"], 1.0, rtol=1e-9)  # chi1 = 1 at both points


def test_orthogonal_tanh_is_near_isometry_and_gaussian_is_not(spectra):
    # Theory at depth 16: orthogonal tanh variance 16 (mu2/mu1^2 - 1) ~ 0.7, Gaussian ~ 16 more.  A single
    # 128-wide net's spectrum is one sample, so compare orders of magnitude, not digits.
    _, predicted = spectra
    tanh = predicted[predicted.case == CASES[0].label].set_index("weights")
    assert tanh.loc["orthogonal", "sample_variance"] < 0.25 * tanh.loc["gaussian", "sample_variance"]
    for ensemble in ("gaussian", "orthogonal"):
        ratio = tanh.loc[ensemble, "sample_variance"] / tanh.loc[ensemble, "variance"]
        assert 0.25 < ratio < 4.0, ensemble


def test_the_figure_has_a_panel_per_case_with_theory_in_the_legend(spectra):
    figures.apply_style()
    figure = figures.spectra_figure(*spectra, title="t")
    axes = figure.axes
    assert len(axes) == 2
    texts = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert any(t.startswith("orthogonal: variance") and "(theory" in t for t in texts)
    matplotlib.pyplot.close(figure)
