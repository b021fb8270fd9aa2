"""analysis.theory against independent computations: adaptive quadrature, closed forms, Monte Carlo.

Nothing here compares the module with itself: every expected value comes from
``scipy.integrate.quad`` (nested for 2-D expectations), ``scipy.optimize.brentq`` on a map
written in this file, a closed form written in this file, or a seeded Monte Carlo whose
tolerance follows from its sample size.
"""

from __future__ import annotations

import ast
import doctest
import math
import pathlib

import numpy as np
import pytest
from scipy import integrate, optimize, special

import analysis
from analysis import _finite_width, _gauss, _predict, theory as T
from analysis._gauss import half_line_rule
from conftest import Z_TOL
from fastinit.activations import ACTIVATIONS, SELU_ALPHA, SELU_LAMBDA

# Named tolerances, by kind of comparison (style guide item 8):
# our Gauss rules (~1e-14) against adaptive quad asked for 1e-12 relative;
QUAD_RTOL = 1e-10
# two closed forms, or a closed form against the Gauss rules: a few roundings;
CLOSED_RTOL = 1e-12
# the 2-D polar rule (~1e-12 at q <= 2) against nested adaptive quad asked for 1e-11;
NESTED_RTOL = 1e-8
# a root from our solver against brentq on an independent map (both converge to ~1e-14,
# the maps agree to QUAD_RTOL, amplified by 1 / |1 - slope of the map| <= ~10 here);
ROOT_RTOL = 1e-9

QS = (1e-3, 0.3, 1.0, 4.0, 50.0)


# ----------------------------------------------------------------------------- references
def quad_expect(f, q):
    """E[f(u)], u ~ N(0, q), by adaptive quadrature split at the kink 0 and at |u| = 1.

    The integration domain stops at 12 standard deviations (mass beyond: 4e-33).
    """
    s = math.sqrt(q)
    if s == 0.0:
        return float(f(0.0))
    edge = 12.0 * s
    cuts = sorted({-edge, -min(1.0, edge), 0.0, min(1.0, edge), edge})

    def density(u):
        return float(f(u)) * math.exp(-0.5 * u * u / q) / (s * math.sqrt(2.0 * math.pi))

    return sum(integrate.quad(density, a, b, epsabs=0.0, epsrel=1e-12, limit=200)[0]
               for a, b in zip(cuts[:-1], cuts[1:]))


def quad_expect2(f, g, q, c):
    """E[f(u1) g(u2)], u ~ N(0, q [[1, c], [c, 1]]), by nested quad split at both kinks."""
    s = math.sqrt(1.0 - c * c)
    root = math.sqrt(q)
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731

    def inner(z1):
        kink = min(max(-c * z1 / s, -12.0), 12.0)  # u2 = 0 at z2 = -c z1 / s
        return sum(integrate.quad(lambda z2: g(root * (c * z1 + s * z2)) * pdf(z2), a, b,
                                  epsabs=0.0, epsrel=1e-11, limit=200)[0]
                   for a, b in ((-12.0, kink), (kink, 12.0)) if b > a)

    return sum(integrate.quad(lambda z1: f(root * z1) * inner(z1) * pdf(z1), a, b,
                              epsabs=0.0, epsrel=1e-11, limit=200)[0] for a, b in ((-12.0, 0.0), (0.0, 12.0)))


def scalar(spec, derivative=False, param=None):
    """phi or phi' of a registry entry as a Python float function (the registry is tested elsewhere)."""
    fn = spec.dphi_np if derivative else spec.phi_np
    return lambda u: float(fn(u, param))


def tanh_expect(f, q):
    return quad_expect(f, q)


def selu(u):
    return SELU_LAMBDA * (u if u > 0.0 else SELU_ALPHA * math.expm1(u))


def erf_length(q, sw, sb):
    """Williams' closed form: q' = sw (2/pi) asin(2q / (1 + 2q)) + sb."""
    return sw * 2.0 / math.pi * math.asin(2.0 * q / (1.0 + 2.0 * q)) + sb


def tanh_length(q, sw, sb):
    return sw * quad_expect(lambda u: math.tanh(u) ** 2, q) + sb


def sech4(u):
    return 1.0 / math.cosh(u) ** 4 if abs(u) < 300.0 else 0.0


# ----------------------------------------------------------------------------- quadrature
def test_graded_half_line_rule_integrates_gaussian_moments():
    # int_0^inf x^j exp(-x^2/2) dx = 2^((j-1)/2) Gamma((j+1)/2), for both weights; the error
    # grows with the degree (x^8: 2e-12), which is why moments stop at phi^4.
    for power in (0, 1):
        for k in (2, 6, 20):
            x, w = half_line_rule(k, power)
            for j in range(0, 9 - power):
                exact = 2.0 ** ((j + power - 1) / 2.0) * special.gamma((j + power + 1) / 2.0)
                assert np.sum(w * x**j) == pytest.approx(exact, rel=5e-12)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_moments_match_adaptive_quadrature(name):
    spec = ACTIVATIONS[name]
    phi, dphi = scalar(spec), scalar(spec, derivative=True)
    integrands = {"phi": phi, "phi2": lambda u: phi(u) ** 2, "dphi2": lambda u: dphi(u) ** 2}
    for moment, f in integrands.items():
        got = T.gaussian_moment(name, np.array(QS), moment, method="quadrature")
        for q, value in zip(QS, got):
            expected = quad_expect(f, q)
            scale = quad_expect(lambda u: abs(f(u)), q)  # E[phi] may be ~0: compare to E[|phi|]
            assert abs(value - expected) <= QUAD_RTOL * scale, (moment, q)


def test_moments_with_activation_parameters_match_quadrature():
    for name, params in (("leaky_relu", {"slope": 0.2}), ("elu", {"alpha": 0.5})):
        spec = ACTIVATIONS[name]
        param = next(iter(params.values()))
        phi = scalar(spec, param=param)
        got = T.gaussian_moment(name, 0.7, "phi2", activation_params=params, method="quadrature")
        assert got == pytest.approx(quad_expect(lambda u: phi(u) ** 2, 0.7), rel=QUAD_RTOL)


def test_closed_forms_match_formulas_and_quadrature():
    q = np.array([0.01, 0.5, 2.0, 30.0])
    for name, slope in (("relu", 0.0), ("leaky_relu", 0.01), ("linear", 1.0)):
        expected = {"phi": (1.0 - slope) * np.sqrt(q / (2.0 * math.pi)), "phi2": (1.0 + slope**2) * q / 2.0,
                    "dphi2": np.full_like(q, (1.0 + slope**2) / 2.0), "phi4": 1.5 * (1.0 + slope**4) * q**2,
                    "dphi4": np.full_like(q, (1.0 + slope**4) / 2.0)}
        for moment, value in expected.items():
            closed = T.gaussian_moment(name, q, moment, method="closed_form")
            np.testing.assert_allclose(closed, value, rtol=CLOSED_RTOL, atol=1e-300)
            np.testing.assert_allclose(T.gaussian_moment(name, q, moment, method="quadrature"), value,
                                       rtol=CLOSED_RTOL, atol=1e-15)
    erf = {"phi2": 2.0 / math.pi * np.arcsin(2.0 * q / (1.0 + 2.0 * q)),
           "dphi2": 4.0 / math.pi / np.sqrt(1.0 + 4.0 * q)}
    for moment, value in erf.items():
        np.testing.assert_allclose(T.gaussian_moment("erf", q, moment, method="closed_form"), value, rtol=CLOSED_RTOL)
        np.testing.assert_allclose(T.gaussian_moment("erf", q, moment, method="quadrature"), value, rtol=1e-13)


def test_moment_at_zero_variance_is_the_kernels_point_value():
    # relu'(0) = 0 as in PyTorch (what the kernels compute for an all-zero layer) ...
    assert T.gaussian_moment("relu", 0.0, "dphi2") == 0.0
    assert T.gaussian_moment("sigmoid", 0.0, "phi2") == pytest.approx(0.25, rel=1e-15)
    # ... while chi1 takes the limit q -> 0+.
    assert T.chi1("relu", 1.0, q=0.0) == 0.5


# ----------------------------------------------------------------------------- mean field
def test_relu_length_map_and_chi1_closed_forms():
    q = np.array([0.0, 0.3, 2.0, 7.0])[:, None]
    sw, sb = np.array([0.5, 2.0, 3.0]), 0.25
    np.testing.assert_allclose(T.length_map(q, "relu", sw, sb), sw / 2.0 * q + sb, rtol=CLOSED_RTOL)
    np.testing.assert_allclose(T.length_map(q, "relu", sw, sb, method="quadrature"), sw / 2.0 * q + sb,
                               rtol=CLOSED_RTOL)
    np.testing.assert_allclose(T.chi1("relu", sw, sb), sw / 2.0, rtol=CLOSED_RTOL)
    # q* = sb / (1 - sw/2) below the critical sw = 2, no finite fixed point above it.
    np.testing.assert_allclose(T.fixed_point("relu", sw, sb), [0.25 / 0.75, np.inf, np.inf])


@pytest.mark.parametrize("method", ["auto", "quadrature"])
def test_relu_correlation_map_is_the_arc_cosine_kernel(method):
    c = np.linspace(-1.0, 1.0, 21)
    expected = (np.sqrt(1.0 - c**2) + (math.pi - np.arccos(c)) * c) / math.pi
    np.testing.assert_allclose(T.correlation_map(c, 1.7, "relu", 2.0, method=method), expected,
                               rtol=CLOSED_RTOL, atol=1e-14)


def test_erf_fixed_point_and_chi1_closed_forms():
    for sw, sb in ((0.8, 0.0), (1.5, 0.1), (3.0, 0.5), (6.0, 2.0)):
        q_star = float(T.fixed_point("erf", sw, sb))
        if q_star == 0.0:
            assert sw * 4.0 / math.pi <= 1.0  # slope of the map at 0
        else:
            reference = optimize.brentq(lambda q: erf_length(q, sw, sb) - q, 1e-12, sw + sb + 1.0, xtol=1e-300,
                                        rtol=1e-15)
            assert q_star == pytest.approx(reference, rel=ROOT_RTOL)
        expected = sw * (4.0 / math.pi) / math.sqrt(1.0 + 4.0 * q_star)
        assert float(T.chi1("erf", sw, sb)) == pytest.approx(expected, rel=CLOSED_RTOL)
        assert float(T.chi1("erf", sw, sb)) == pytest.approx(
            sw * (4.0 / math.pi) / math.sqrt(1.0 + 4.0 * (q_star if q_star else 0.0)), rel=1e-12)


def test_erf_correlation_map_and_its_fixed_point_closed_forms():
    sw, sb = 3.0, 0.1
    q_star = optimize.brentq(lambda q: erf_length(q, sw, sb) - q, 1e-6, 10.0, xtol=1e-300, rtol=1e-15)
    c = np.linspace(-0.9, 0.9, 7)
    expected = (sw * 2.0 / math.pi * np.arcsin(2.0 * q_star * c / (1.0 + 2.0 * q_star)) + sb) / q_star
    np.testing.assert_allclose(T.correlation_map(c, q_star, "erf", sw, sb, method="quadrature"), expected,
                               rtol=1e-10)

    def c_map(cc):
        return (sw * 2.0 / math.pi * math.asin(2.0 * q_star * cc / (1.0 + 2.0 * q_star)) + sb) / q_star - cc

    c_star = optimize.brentq(c_map, 0.0, 0.999, xtol=1e-15)
    assert float(T.correlation_fixed_point("erf", sw, sb)) == pytest.approx(c_star, abs=1e-10)
    assert float(T.correlation_fixed_point("erf", 0.9, 0.1)) == 1.0  # ordered phase


@pytest.mark.parametrize(("name", "phi", "q", "c", "sw", "sb"), [
    ("tanh", math.tanh, 1.3, 0.55, 1.7, 0.05),   # smooth
    ("selu", selu, 0.8, -0.35, 1.2, 0.0),        # kinked, no closed form
])
def test_correlation_map_matches_nested_quadrature(name, phi, q, c, sw, sb):
    cross = quad_expect2(phi, phi, q, c)
    second = quad_expect(lambda u: phi(u) ** 2, q)
    expected = (sw * cross + sb) / (sw * second + sb)
    assert float(T.correlation_map(c, q, name, sw, sb)) == pytest.approx(expected, rel=NESTED_RTOL)


def test_tanh_at_the_marginal_point_decays_like_one_over_2l():
    assert float(T.fixed_point("tanh", 1.0, 0.0)) == 0.0
    q, depth = 1.0, 2000
    for _ in range(depth):
        q = float(T.length_map(q, "tanh", 1.0, 0.0))
    # q_l = 1/(2l) (1 + O(log l / l)): at l = 2000 the correction is ~0.3%.
    assert depth * q == pytest.approx(0.5, rel=0.01)


def test_tanh_fixed_point_zero_below_one_and_positive_above():
    np.testing.assert_array_equal(T.fixed_point("tanh", [0.3, 0.9, 1.0], 0.0), 0.0)
    q_star = float(T.fixed_point("tanh", 1.5, 0.0))
    reference = optimize.brentq(lambda q: tanh_length(q, 1.5, 0.0) - q, 1e-3, 2.0, xtol=1e-300, rtol=1e-14)
    assert q_star == pytest.approx(reference, rel=ROOT_RTOL)


def test_selu_has_the_unit_fixed_point_under_lecun_weights():
    mean = quad_expect(selu, 1.0)
    second = quad_expect(lambda u: selu(u) ** 2, 1.0)
    assert abs(mean) < 1e-12 and second == pytest.approx(1.0, rel=1e-12)  # the published constants
    assert float(T.fixed_point("selu", 1.0, 0.0)) == pytest.approx(1.0, rel=1e-12)
    assert abs(float(T.gaussian_moment("selu", 1.0, "phi"))) < 1e-12


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_critical_line_has_chi1_one_at_its_own_fixed_point(name):
    sb = np.array([0.0, 0.05, 0.3, 1.0])
    sw = T.critical_sigma_w2(name, sb)
    assert sw[0] == pytest.approx(1.0 if name == "tanh" else math.pi / 4.0, rel=1e-10)  # 1 / phi'(0)^2
    for sw_i, sb_i in zip(sw[1:], sb[1:]):
        if name == "erf":
            q_star = optimize.brentq(lambda q: erf_length(q, sw_i, sb_i) - q, 1e-9, 50.0, xtol=1e-300, rtol=1e-15)
            chi = sw_i * 4.0 / math.pi / math.sqrt(1.0 + 4.0 * q_star)
        else:
            q_star = optimize.brentq(lambda q: tanh_length(q, sw_i, sb_i) - q, 1e-9, 50.0, xtol=1e-300, rtol=1e-14)
            chi = sw_i * quad_expect(sech4, q_star)
        assert chi == pytest.approx(1.0, rel=1e-9)


def test_critical_line_parametrisation_matches_its_definition():
    q = np.array([0.1, 1.0, 5.0])
    sw, sb = T.critical_line("tanh", q)
    for q_i, sw_i, sb_i in zip(q, sw, sb):
        assert sw_i * quad_expect(sech4, q_i) == pytest.approx(1.0, rel=QUAD_RTOL)
        assert tanh_length(q_i, sw_i, sb_i) == pytest.approx(q_i, rel=QUAD_RTOL)


def test_depth_scales_in_the_ordered_phase():
    sw = np.array([0.5, 1.0, 1.5])
    xi = T.depth_scales("relu", sw, 0.0)
    np.testing.assert_allclose(xi.xi_c, -1.0 / np.log(sw / 2.0), rtol=CLOSED_RTOL)
    np.testing.assert_allclose(xi.xi_q, -1.0 / np.log(sw / 2.0), rtol=CLOSED_RTOL)
    # tanh below the critical line: xi_c = -1 / ln(chi1), chi1 from an independent quad.
    sw, sb = 1.2, 0.3
    q_star = optimize.brentq(lambda q: tanh_length(q, sw, sb) - q, 1e-6, 5.0, xtol=1e-300, rtol=1e-14)
    chi = sw * quad_expect(sech4, q_star)
    assert chi < 1.0
    assert float(T.depth_scales("tanh", sw, sb).xi_c) == pytest.approx(-1.0 / math.log(chi), rel=1e-8)


# ----------------------------------------------------------------------------- rule factors
@pytest.mark.parametrize(("rule", "params", "activation", "forward", "backward"), [
    ("1/fan_in", None, "linear", 1.0, 1.0),
    ("lecun_normal", None, "linear", 1.0, 1.0),
    ("2/fan_in", None, "relu", 1.0, 1.0),
    ("he_normal", {"nonlinearity": "relu"}, "relu", 1.0, 1.0),
    ("2/(fan_in+fan_out)", None, "relu", 0.5, 0.5),
    ("xavier_uniform", None, "relu", 0.5, 0.5),
    ("uniform", None, "linear", 1.0 / 3.0, 1.0 / 3.0),
    ("torch_default", None, "relu", 1.0 / 6.0, 1.0 / 6.0),
    (0.0, None, "tanh", 0.0, 0.0),
])
def test_seed_note_factors_at_equal_widths(rule, params, activation, forward, backward):
    f = T.layer_factors(rule, activation, 128, 128, q=0.9, init_params=params)
    assert float(f.forward) == pytest.approx(forward, rel=CLOSED_RTOL)
    assert float(f.backward) == pytest.approx(backward, rel=CLOSED_RTOL)


def test_glorot_compromise_with_unequal_widths():
    n_in, n_out = np.array([64, 256, 100]), np.array([256, 64, 100])
    for rule in ("2/(fan_in+fan_out)", "xavier_normal", "keras_default"):
        f = T.layer_factors(rule, "linear", n_in, n_out)
        np.testing.assert_allclose(f.forward, 2.0 * n_in / (n_in + n_out), rtol=CLOSED_RTOL)
        np.testing.assert_allclose(f.backward, 2.0 * n_out / (n_in + n_out), rtol=CLOSED_RTOL)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_factors_of_every_activation_with_unequal_widths(name):
    spec = ACTIVATIONS[name]
    phi, dphi = scalar(spec), scalar(spec, derivative=True)
    fan_in, fan_out, q = 64, 256, 0.7
    f = T.layer_factors("2/(fan_in+fan_out)", name, fan_in, fan_out, q=q)
    variance = 2.0 / (fan_in + fan_out)
    assert float(f.forward) == pytest.approx(fan_in * variance * quad_expect(lambda u: phi(u) ** 2, q) / q,
                                             rel=QUAD_RTOL)
    assert float(f.backward) == pytest.approx(fan_out * variance * quad_expect(lambda u: dphi(u) ** 2, q),
                                              rel=QUAD_RTOL)


def test_factors_use_every_initializers_textbook_variance():
    fan_in, fan_out = 48, 80
    textbook = {  # docs/theory.md section 1
        "uniform": 1.0 / (3 * fan_in), "xavier_normal": 2.0 / (fan_in + fan_out), "he_uniform": 2.0 / fan_in,
        "lecun_uniform": 1.0 / fan_in, "orthogonal": 1.0 / max(fan_in, fan_out), "zeros": 0.0,
        "variance_scaling": 1.0 / fan_in, "flax_default": 1.0 / fan_in, "normal": 1.0,
    }
    params = {"he_uniform": {"nonlinearity": "relu"}}
    for init, variance in textbook.items():
        f = T.layer_factors(init, "linear", fan_in, fan_out, init_params=params.get(init))
        assert float(f.forward) == pytest.approx(fan_in * variance, rel=CLOSED_RTOL), init
        assert float(f.backward) == pytest.approx(fan_out * variance, rel=CLOSED_RTOL), init


# ----------------------------------------------------------------------------- predict
def test_predict_relu_he_is_flat_and_relu_xavier_halves():
    he = T.predict("he_normal", "relu", 300, 128, init_params={"nonlinearity": "relu"})
    assert list(he.columns[:2]) == ["layer", "width"]
    np.testing.assert_allclose(he.log10_fwd_var, math.log10(2.0), rtol=CLOSED_RTOL)  # h_0 ~ N(0, 1) has no relu
    np.testing.assert_allclose(he.log10_grad_var, math.log10(0.5), rtol=CLOSED_RTOL)
    xavier = T.predict("xavier_normal", "relu", 5000, 64)
    np.testing.assert_allclose(np.diff(xavier.log10_fwd_var), math.log10(0.5), rtol=1e-9)
    np.testing.assert_allclose(np.diff(xavier.log10_grad_var), -math.log10(0.5), rtol=1e-9)
    assert xavier.log10_fwd_var.iloc[-1] == pytest.approx(4999 * math.log10(0.5), rel=1e-12)  # no underflow


def test_predict_tanh_with_bias_and_unequal_widths_matches_a_direct_recurrence():
    widths, bias_std, input_std = [32, 64, 16, 48, 48], 0.3, 1.5
    df = T.predict("xavier_normal", "tanh", len(widths), widths, bias_std=bias_std, input_std=input_std)
    units = [widths[0], *widths]
    second, qs = input_std**2, []
    for layer in range(len(widths)):
        variance = 2.0 / (units[layer] + units[layer + 1])
        q = units[layer] * variance * second + bias_std**2
        second = quad_expect(lambda u: math.tanh(u) ** 2, q)
        qs.append(q)
    grads, g = [], 1.0
    for layer in reversed(range(len(widths))):
        grad = quad_expect(sech4, qs[layer]) * g
        grads.append(grad)
        g = units[layer + 1] * 2.0 / (units[layer] + units[layer + 1]) * grad
    np.testing.assert_allclose(df.log10_fwd_var, np.log10(qs), rtol=1e-10)
    np.testing.assert_allclose(df.log10_grad_var, np.log10(grads[::-1]), rtol=1e-10)


def test_predict_residual_relu_grows_by_one_plus_alpha_squared():
    alpha = 0.3
    df = T.predict("he_normal", "relu", 50, 64, residual=alpha, init_params={"nonlinearity": "relu"})
    # E[h_l^2] = E[h_{l-1}^2] + alpha^2 E[relu(z_l)^2] and E[relu(z)^2] = Var(z)/2 = E[h_{l-1}^2].
    np.testing.assert_allclose(np.diff(df.log10_fwd_var), math.log10(1.0 + alpha**2), rtol=1e-12)
    np.testing.assert_allclose(np.diff(df.log10_grad_var), -math.log10(1.0 + alpha**2), rtol=1e-12)


def test_predict_deep_nonhomogeneous_stays_finite_in_log_space():
    df = T.predict("normal", "gelu", 600, 256)  # Var(W) = 1: grows ~256/2 per layer, past 1e308
    assert np.isfinite(df.log10_fwd_var).all() and df.log10_fwd_var.iloc[-1] > 1000
    slope = np.diff(df.log10_fwd_var.to_numpy()[-100:])
    np.testing.assert_allclose(slope, math.log10(256 / 2.0), rtol=1e-9)  # gelu -> relu at large q


def test_zero_variance_initializers_give_minus_infinity():
    for init, params in (("zeros", None), ("constant", {"value": 0.5})):
        df = T.predict(init, "tanh", 5, 16, init_params=params)
        assert np.isneginf(df.log10_fwd_var).all()
        # Only the top layer sees the readout gradient: tanh'(0)^2 = 1.
        assert np.isneginf(df.log10_grad_var.iloc[:-1]).all() and df.log10_grad_var.iloc[-1] == 0.0
    df = T.predict("zeros", "relu", 4, 16, bias_std=0.1)
    np.testing.assert_allclose(df.log10_fwd_var, -2.0)  # only the bias survives


# ----------------------------------------------------------------------------- broadcasting
def test_grid_of_200_by_200_matches_scalar_calls():
    sw, sb = np.meshgrid(np.linspace(0.5, 4.0, 200), np.linspace(0.0, 0.3, 200))
    q_grid = T.fixed_point("tanh", sw, sb)
    chi_grid = T.chi1("tanh", sw, sb)
    assert q_grid.shape == chi_grid.shape == (200, 200)
    for i, j in ((0, 0), (0, 199), (57, 13), (199, 100), (120, 160)):
        assert q_grid[i, j] == pytest.approx(float(T.fixed_point("tanh", sw[i, j], sb[i, j])), rel=1e-12, abs=1e-300)
        assert chi_grid[i, j] == pytest.approx(float(T.chi1("tanh", sw[i, j], sb[i, j])), rel=1e-12)
    reference = optimize.brentq(lambda q: tanh_length(q, sw[57, 13], sb[57, 13]) - q, 1e-9, 10.0, xtol=1e-300,
                                rtol=1e-14)
    assert q_grid[57, 13] == pytest.approx(reference, rel=ROOT_RTOL)


def test_scalars_give_zero_dimensional_arrays():
    assert T.fixed_point("tanh", 2.0).shape == ()
    assert T.correlation_map([0.1, 0.2], 1.0, "tanh", 2.0).shape == (2,)


# ----------------------------------------------------------------------------- finite width
@pytest.mark.parametrize(("name", "params", "c"), [
    ("relu", None, 5.0), ("linear", None, 2.0),
    ("leaky_relu", {"slope": 0.2}, 6.0 * (1 + 0.2**4) / (1 + 0.2**2) ** 2 - 1.0),
])
def test_layer_factor_variance_is_c_over_width(name, params, c):
    # One layer's factor: the mean over n units of phi(xi)^2 / E[phi^2], xi ~ N(0, 1).
    assert float(T.finite_width_drift(40, name, activation_params=params)) == pytest.approx(-c / 80.0, rel=1e-12)
    rng = np.random.default_rng(7)
    n, samples = 16, 200_000
    phi = ACTIVATIONS[name].phi_np(rng.standard_normal((samples, n)), (params or {}).get("slope")) ** 2
    factor = phi.mean(axis=1) / np.mean(phi)
    centred = (factor - factor.mean()) ** 2
    se = centred.std() / math.sqrt(samples)
    assert abs(centred.mean() - c / n) < Z_TOL * se


def test_log_variance_spread_matches_monte_carlo_of_he_relu_nets():
    depth, width, nets = 8, 32, 3000
    spread = T.log_variance_spread(depth, width)
    beta = depth / width
    assert spread.beta.iloc[-1] == pytest.approx(beta) and spread.mean_ln.iloc[-1] == pytest.approx(-2.5 * beta)
    rng = np.random.default_rng(11)
    h = rng.standard_normal((nets, width))
    start = np.mean(h**2, axis=1)
    for _ in range(depth):
        w = rng.standard_normal((nets, width, width)) * math.sqrt(2.0 / width)
        h = np.maximum(np.einsum("nij,nj->ni", w, h), 0.0)
    log_m = np.log(np.mean(h**2, axis=1) / start)
    var = spread.var_ln.iloc[-1]
    # Delta-method bias is O(depth / width^2) ~ 0.01, below the Monte-Carlo tolerance.
    assert abs(log_m.mean() - spread.mean_ln.iloc[-1]) < Z_TOL * math.sqrt(var / nets)
    assert abs(log_m.var() - var) < Z_TOL * var * math.sqrt(2.0 / nets) + 0.05


def test_log_variance_spread_indexes_widths_of_the_layers_below():
    df = T.log_variance_spread(3, [10, 20, 40])
    np.testing.assert_allclose(df.beta, [0.1, 0.15, 0.175])


# ----------------------------------------------------------------------------- spectra
def test_jacobian_spectrum_closed_forms():
    mean, var = T.jacobian_spectrum("linear", 7, 1.0)
    assert (float(mean), float(var)) == pytest.approx((1.0, 7.0))  # products of Gaussian matrices
    assert float(T.jacobian_spectrum("linear", 7, 1.0, weights="orthogonal").variance) == 0.0
    assert float(T.jacobian_spectrum("relu", 5, 2.0).variance) == pytest.approx(10.0)  # L (2 - 1 + 1)
    assert float(T.jacobian_spectrum("relu", 5, 2.0, weights="orthogonal").variance) == pytest.approx(5.0)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_jacobian_spectrum_matches_random_matrices(weights):
    sw, sb, depth, n = 1.3, 0.05, 3, 200
    q_star = optimize.brentq(lambda q: tanh_length(q, sw, sb) - q, 1e-6, 5.0, xtol=1e-300, rtol=1e-14)
    expected = T.jacobian_spectrum("tanh", depth, sw, sb, weights=weights)
    # D_l = diag(tanh'(h)), h ~ N(0, q*): stratified normal quantiles, shuffled per layer, so
    # that the check is on the free product of D and W, not on sampling noise of mean(d^2).
    z = special.ndtri((np.arange(n) + 0.5) / n)
    rng = np.random.default_rng(3)
    moments = []
    for _ in range(2):
        jac = np.eye(n)
        for _ in range(depth):
            if weights == "gaussian":
                w = rng.standard_normal((n, n)) * math.sqrt(sw / n)
            else:
                qm, r = np.linalg.qr(rng.standard_normal((n, n)))
                w = math.sqrt(sw) * qm * np.sign(np.diag(r))  # Haar (Mezzadri 2007)
            d = 1.0 / np.cosh(math.sqrt(q_star) * rng.permutation(z)) ** 2
            jac = (d[:, None] * w) @ jac
        jjt = jac @ jac.T
        moments.append((np.trace(jjt) / n, np.sum(jjt * jjt) / n))
    m1, m2 = np.mean(moments, axis=0)
    # Normalised traces of n x n random matrices fluctuate by O(1/n) per layer: over seeds
    # 3..6 the mean was within 1% and the variance within 3% at n = 200.
    assert m1 == pytest.approx(float(expected.mean), rel=0.03)
    assert m2 - m1**2 == pytest.approx(float(expected.variance), rel=0.08)


# ----------------------------------------------------------------------------- bad input
BAD = [
    (T.fixed_point, {"activation": "rleu", "sigma_w2": 1.0}, "activation", "did you mean 'relu'"),
    (T.fixed_point, {"activation": "tanh", "sigma_w2": -1.0}, "sigma_w2", "-1.0"),
    (T.fixed_point, {"activation": "tanh", "sigma_w2": 1.0, "sigma_b2": math.nan}, "sigma_b2", "nan"),
    (T.fixed_point, {"activation": "tanh", "sigma_w2": 1.0, "q0": 0.0}, "q0", "> 0"),
    (T.chi1, {"activation": "erf", "sigma_w2": [1.0, math.inf]}, "sigma_w2", "index"),
    (T.length_map, {"q": -1.0, "activation": "tanh", "sigma_w2": 1.0}, "q", ">= 0"),
    (T.correlation_map, {"c": 1.5, "q": 1.0, "activation": "tanh", "sigma_w2": 1.0}, "c", "<= 1"),
    (T.critical_sigma_w2, {"activation": "tanh", "sigma_b2": -0.1}, "sigma_b2", ">= 0"),
    (T.critical_line, {"activation": "tanh", "q": 0.0}, "q", "> 0"),
    (T.gaussian_moment, {"activation": "tanh", "q": 1.0, "moment": "phi3"}, "moment", "phi3"),
    (T.gaussian_moment, {"activation": "tanh", "q": 1.0, "method": "exact"}, "method", "exact"),
    (T.gaussian_moment, {"activation": "tanh", "q": 1.0, "method": "closed_form"}, "closed_form", "quadrature"),
    (T.gaussian_moment, {"activation": "elu", "q": 1.0, "activation_params": {"alpha": -1.0}}, "alpha", "-1.0"),
    (T.layer_factors, {"weight_variance": "2/fan_out", "activation": "relu", "fan_in": 3, "fan_out": 4},
     "weight_variance", "did you mean"),
    (T.layer_factors, {"weight_variance": -0.1, "activation": "relu", "fan_in": 3, "fan_out": 4},
     "weight_variance", ">= 0"),
    (T.layer_factors, {"weight_variance": "he_normal", "activation": "relu", "fan_in": 0, "fan_out": 4},
     "fan_in", ">= 1"),
    (T.layer_factors, {"weight_variance": "he_normal", "activation": "relu", "fan_in": 2.5, "fan_out": 4},
     "fan_in", "whole"),
    (T.predict, {"init": "he_normal", "activation": "relu", "depth": 0, "width": 8}, "depth", ">= 1"),
    (T.predict, {"init": "he_normal", "activation": "relu", "depth": 3, "width": [8, 8]}, "width", "depth=3"),
    (T.predict, {"init": "xavier", "activation": "relu", "depth": 3, "width": 8}, "init", "did you mean"),
    (T.predict, {"init": "he_normal", "activation": "relu", "depth": 3, "width": 8, "bias_std": -1.0}, "bias_std",
     ">= 0"),
    (T.predict, {"init": "he_normal", "activation": "relu", "depth": 3, "width": [8, 16, 8], "residual": 0.5},
     "residual", "equal widths"),
    (T.predict, {"init": "he_normal", "activation": "relu", "depth": 3, "width": 8,
                 "init_params": {"mode": "fan_avg"}}, "mode", "fan_avg"),
    (T.log_variance_spread, {"depth": 3, "width": 8, "activation": "tanh"}, "activation", "homogeneous"),
    (T.jacobian_spectrum, {"activation": "tanh", "depth": 3, "sigma_w2": 1.0, "weights": "haar"}, "weights", "haar"),
    (T.finite_width_drift, {"width": 0}, "width", ">= 1"),
]


@pytest.mark.parametrize(("function", "kwargs", "name", "detail"), BAD,
                         ids=[f"{case[0].__name__}-{case[2]}-{i}" for i, case in enumerate(BAD)])
def test_bad_input_raises_value_error_naming_the_parameter(function, kwargs, name, detail):
    with pytest.raises(ValueError) as info:
        function(**kwargs)
    message = str(info.value)
    assert name in message and detail in message, message


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError, match="sigma_w2"):
        T.fixed_point("tanh", "big")
    with pytest.raises(TypeError, match="slope"):
        T.gaussian_moment("relu", 1.0, activation_params={"slope": 0.1})


def test_docstring_examples():
    for module in (T, _finite_width, _gauss, _predict):
        assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0, module.__name__


def test_analysis_modules_never_import_the_kernels():
    # The analysis layer reads registries; it must not depend on propagation (design section 2).
    for path in pathlib.Path(analysis.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {n for n in names if "propagate" in n or n.startswith("numba")}, path.name
