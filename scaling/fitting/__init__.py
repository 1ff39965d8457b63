"""Fitting: from a results table to a fitted law with its uncertainty.

``result`` holds :class:`Fit`, the learned state (parameters, bootstrap draws, quality) and what it answers. The
fitting engine itself is ``scaling.estimate`` (``LawFitter`` and ``scaling.fit``).

(The module that defines ``Fit`` is not called ``scaling/fit.py``: a submodule named ``fit`` would replace the
function ``scaling.fit`` as an attribute of the package the moment anything imported it.)
"""
