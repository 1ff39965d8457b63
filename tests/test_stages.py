"""Fitting in stages (scaling.fitting.stages): what a stage-2 law takes from its stage-1 fit (``--fix-from``)."""

import numpy as np
import pandas as pd
import pytest

from scaling.errors import ScalingError
from scaling.fitting.result import load_fit
from scaling.fitting.stages import frozen_from
from scaling.laws import get_law


def test_the_shared_parameters_are_frozen_at_the_base_values_without_draws_for_a_published_fit():
    base = load_fit("chinchilla")  # published: no bootstrap draws
    frozen, draws = frozen_from(base, get_law("data-constrained"), exclude={"beta"}, param_def=base.param_def)
    assert frozen == {n: base.params[n] for n in ("E", "A", "B", "alpha")}
    assert draws is None


def test_the_base_draws_of_the_frozen_parameters_are_carried():
    base = load_fit("chinchilla")
    base.draws = pd.DataFrame({n: np.full(5, v) for n, v in base.params.items()}).assign(extra=1.0)
    _, draws = frozen_from(base, get_law("data-constrained"), param_def=base.param_def)
    assert list(draws.columns) == ["E", "A", "B", "alpha", "beta"] and len(draws) == 5


@pytest.mark.parametrize(
    "law, options, message",
    [
        ("transfer", {}, "not a stage 1 of law transfer"),  # another output from other inputs
        ("data-constrained", {"exclude": {"E", "A", "B", "alpha", "beta"}}, "shares no free parameter"),
        ("data-constrained", {"param_def": "nonemb"}, "counts N as total, this one as nonemb"),
    ],
)
def test_a_base_that_is_not_a_stage_1_is_refused_naming_it(law, options, message):
    with pytest.raises(ScalingError, match=message) as info:
        frozen_from(load_fit("chinchilla"), get_law(law), label="--fix-from chinchilla", **options)
    assert str(info.value).startswith("--fix-from chinchilla: ")
