"""The results table: canonical columns, reading foreign tables, validation, and safe appends.

One row per evaluation point. The fitter needs ``N``, ``D`` and ``loss`` (or whatever the law's inputs and
output are); everything else is optional and documented in ``docs/results.md``.

- :mod:`~scaling.results.columns`: the canonical columns and what they mean; one run key (:func:`run_key`) and
  one training compute (:func:`training_compute`: the C column, else 6ND) for every module.
- :mod:`~scaling.results.read`: :func:`read_results` maps foreign column names, derives ``D = C/(6N)`` or
  ``C = 6ND``, selects rows with ``--where`` and validates the columns a law needs;
  :mod:`~scaling.results.locate` makes each error name the file, the column and the line of the first bad value.
- :mod:`~scaling.results.append`: :func:`append_rows` appends under a file lock, whole rows in one ``write`` then
  fsync, and refuses (never rewrites) a file whose header differs.

The names below are the public interface; import them from ``scaling.results``.
"""

from scaling.results.append import append_rows, check_writable, read_header
from scaling.results.columns import (
    CANONICAL_COLUMNS,
    DERIVED,
    FOREIGN_NAMES,
    LAW_COLUMNS,
    POSITIVE_COLUMNS,
    UNIT_INTERVAL_COLUMNS,
    run_key,
    training_compute,
)
from scaling.results.read import (
    canonicalize,
    parse_mapping,
    read_results,
    read_table,
    select_rows,
    validate_columns,
)

__all__ = [
    "CANONICAL_COLUMNS", "DERIVED", "FOREIGN_NAMES", "LAW_COLUMNS", "POSITIVE_COLUMNS", "UNIT_INTERVAL_COLUMNS",
    "append_rows", "canonicalize", "check_writable", "parse_mapping", "read_header", "read_results", "read_table",
    "run_key", "select_rows", "training_compute", "validate_columns",
]
