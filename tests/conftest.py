"""Fixtures shared by the trainer tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def offline_token_cache(tmp_path_factory):
    """One token cache for the session (each corpus is tokenized once) and the offline flags, restored after."""
    old = {k: os.environ.get(k) for k in ("SCALING_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    os.environ["SCALING_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
