"""Electron multiple scattering: transport mean free paths and the modified Wentzel step distribution."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from VoxelDosimetryLib.montecarlo.electron_scattering import (  # noqa: E402
    WentzelScreeningTable,
    sample_step_cos,
    transport_mean_free_paths_g_cm2,
    wentzel_mean_one_minus_mu,
    wentzel_mean_x2,
)

WATER = ([1, 8], [1.008, 15.999], [[0.111894, 0.888106]])


def test_wentzel_moments_match_numerical_integrals():
    for a in (1e-4, 0.03, 1.0, 50.0):
        mu = np.linspace(-1.0, 1.0, 400001)
        p = 2.0 * a * (1.0 + a) / (1.0 - mu + 2.0 * a) ** 2
        assert np.trapezoid(p, mu) == pytest.approx(1.0, rel=1e-3)
        assert np.trapezoid(p * (1.0 - mu), mu) == pytest.approx(float(wentzel_mean_one_minus_mu(a)), rel=1e-3)
        assert np.trapezoid(p * (1.0 - mu) ** 2, mu) == pytest.approx(float(wentzel_mean_x2(a)), rel=1e-3)


def test_transport_mean_free_paths_of_water_are_plausible():
    lam1, lam2 = transport_mean_free_paths_g_cm2(np.array([0.01, 0.1, 1.0]), *WATER)
    # lambda_1 grows with energy, about the CSDA range near 0.1-1 MeV (ESTAR: 0.0143 and 0.437 g/cm2)
    assert np.all(np.diff(lam1[0]) > 0)
    assert 0.5 < lam1[0, 1] / 0.0143 < 1.5 and 0.5 < lam1[0, 2] / 0.437 < 1.5
    # small screening: lambda_2 -> lambda_1 / 3
    assert np.all((lam2 / lam1 > 0.33) & (lam2 / lam1 < 0.45))


@pytest.mark.parametrize("t1", [0.01, 0.2, 1.0, 4.0])
def test_step_distribution_has_the_exact_transport_moments(t1):
    """<mu> = exp(-s/lambda_1) and <P2(mu)> = exp(-s/lambda_2) for the sampled steps."""
    n = 400_000
    t2 = t1 / 0.37
    g = torch.Generator().manual_seed(1)
    tables = WentzelScreeningTable("cpu")
    mu = sample_step_cos(tables, torch.full((n,), t1), torch.full((n,), t2), torch.rand(n, generator=g),
                         torch.rand(n, generator=g)).double()
    assert float(mu.mean()) == pytest.approx(np.exp(-t1), abs=4e-3)
    assert float((1.5 * mu * mu - 0.5).mean()) == pytest.approx(np.exp(-t2), abs=5e-3)
    assert float(mu.min()) >= -1.0 and float(mu.max()) <= 1.0
