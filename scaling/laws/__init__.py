"""The law catalogue: one module per family, each registering its laws on import.

>>> from scaling.laws import get_law
>>> get_law("chinchilla").formula
'L = E + A/N^alpha + B/D^beta'
"""

from scaling.laws.base import Law, Param, get_law, law_names, register

# Importing a family module registers its laws. Keep this list in step with the modules in this folder.
from scaling.laws import chinchilla  # noqa: E402
from scaling.laws import kaplan  # noqa: E402
from scaling.laws import power  # noqa: E402
from scaling.laws import bnsl  # noqa: E402
from scaling.laws import m4  # noqa: E402
from scaling.laws import calibration, data_constrained, repetition, transfer  # noqa: E402
from scaling.laws import gadre, hyperparameters, task_ladder, vocabulary  # noqa: E402

_FAMILIES = (chinchilla, kaplan, power, bnsl, m4, calibration, data_constrained, repetition, transfer, gadre,
             hyperparameters, task_ladder, vocabulary)  # imported for their registrations

__all__ = ["Law", "Param", "get_law", "law_names", "register"]
