"""ECE and Brier score against E1, E2, E4 (docs/laws.md, 'Acceptance tests'), and the streaming accumulator
against the definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scaling.errors import ScalingError
from scaling.laws.calibration import brier, ece  # the plain numpy definitions the trainer's running sums must match
from scaling.train.metrics import NextTokenStats, bits_per_byte


def _synthetic(rng, n, power=1.0):
    conf = rng.uniform(0.05, 1.0, n)
    correct = (rng.uniform(size=n) < conf**power).astype(float)
    return conf, correct


def test_ece_calibrated_case1():
    conf, correct = _synthetic(np.random.default_rng(0), 200_000)
    assert ece(conf, correct, 10) < 0.005


@pytest.mark.parametrize("bins", [10, 100])
def test_ece_overconfident_case2(bins):
    # accuracy = conf^2: ECE = E[conf - conf^2] = 0.1740 (acceptance test E2)
    conf, correct = _synthetic(np.random.default_rng(1), 200_000, power=2.0)
    assert ece(conf, correct, bins) == pytest.approx(0.1740, abs=0.003)


@pytest.mark.parametrize("n, mean, tol", [(1_000, 0.032, 0.005), (10_000, 0.010, 0.002)])
def test_ece_finite_sample_floor_case3(n, mean, tol):
    rng = np.random.default_rng(2)
    values = [ece(*_synthetic(rng, n), 10) for _ in range(200)]
    assert np.mean(values) == pytest.approx(mean, abs=tol)


def test_brier_matches_closed_form():
    rng = np.random.default_rng(3)
    # conf ~ U(0.05, 1): E[c] = 0.525, E[c^2] = 0.350833, E[c^3] = 0.263156
    assert brier(*_synthetic(rng, 400_000)) == pytest.approx(0.525 - 0.350833, abs=0.002)  # E[c(1-c)]
    assert brier(*_synthetic(rng, 400_000, power=2.0)) == pytest.approx(2 * (0.350833 - 0.263156), abs=0.002)


def test_ece_edge_cases():
    assert ece(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0  # conf 1.0 goes to the last bin
    assert ece(np.array([0.95]), np.array([0.0])) == pytest.approx(0.95)
    with pytest.raises(ScalingError, match="confidences"):
        ece(np.array([]), np.array([]))


def test_accumulator_equals_definitions_batch_by_batch():
    conf, correct = _synthetic(np.random.default_rng(4), 50_000, power=1.5)
    stats = NextTokenStats(n_bins=15)
    for chunk in np.array_split(np.arange(conf.size), 7):
        stats.update_from_confidence(conf[chunk], correct[chunk])
    out = stats.result()
    assert out["ece"] == pytest.approx(ece(conf, correct, 15), abs=1e-12)
    assert out["brier"] == pytest.approx(brier(conf, correct), abs=1e-12)
    assert out["count"] == conf.size


def test_accumulator_from_logits():
    torch.manual_seed(0)
    logits = torch.randn(4, 33, 50) * 3
    targets = torch.randint(0, 50, (4, 33))
    stats = NextTokenStats(n_bins=10)
    stats.update(logits[:2], targets[:2])
    stats.update(logits[2:], targets[2:])
    out = stats.result()
    probs = torch.softmax(logits.double(), -1).reshape(-1, 50).numpy()
    t = targets.reshape(-1).numpy()
    conf = probs.max(1)
    correct = (probs.argmax(1) == t).astype(float)
    assert out["loss"] == pytest.approx(float(-np.log(probs[np.arange(t.size), t]).mean()), rel=1e-6)
    assert out["ece"] == pytest.approx(ece(conf, correct, 10), abs=1e-6)
    assert out["brier"] == pytest.approx(brier(conf, correct), abs=1e-6)
    assert out["accuracy"] == pytest.approx(correct.mean())


def test_bits_per_byte():
    # ln(256) nats per byte-token = 8 bits per byte; BPE tokens of 4 bytes at the same loss: 2 bits per byte
    assert bits_per_byte(np.log(256), 1000, 1000) == pytest.approx(8.0)
    assert bits_per_byte(np.log(256), 1000, 4000) == pytest.approx(2.0)
