"""Issue 14 acceptance: qwen2, gpt_neox, olmo2 and mistral configs (with hf_config passthrough) build and train
a few steps through the trainer, rows and from_pretrained-loadable weights included. Tiny shapes, ~10 steps each.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scaling.train.config import RunConfig, run_id
from scaling.train.data import load_corpus
from scaling.train.sampling import heldout_batches
from scaling.train.loop import train

TINY = dict(corpus="english", n_layer=2, d_model=32, n_head=4, context=32, batch_size=8, tokens=10 * 256, lr=3e-3,
            eval_points=1, eval_tokens=1024, threads=1, peak_flops=1e11, checkpoint_every=None)


# the shared token cache and offline flags (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("offline_token_cache")


@pytest.mark.parametrize("model_type, extra", [
    ("qwen2", {"num_key_value_heads": 2}),
    ("gpt_neox", {"tie_word_embeddings": False}),
    ("olmo2", {}),
    ("mistral", {"num_key_value_heads": 1, "rope_theta": 1e4}),
])
def test_architecture_trains_through_the_trainer(tmp_path, model_type, extra):
    from transformers import AutoModelForCausalLM

    out = train({**TINY, "model_type": model_type, "hf_config": extra, "out_dir": str(tmp_path / "runs")},
                tmp_path / "results.csv")
    assert out.finished and [r["step"] for r in out.rows] == [5, 10]
    first, last = out.rows
    assert last["loss"] < first["loss"] < math.log(256) + 0.5  # it trains
    weights = out.run_dir / "final"
    model = AutoModelForCausalLM.from_pretrained(weights)
    assert model.config.model_type == model_type
    assert getattr(model.config, "num_key_value_heads", 4) == extra.get("num_key_value_heads", 4)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == extra.get("tie_word_embeddings", True)
    assert last["N"] == model.num_parameters(exclude_embeddings=True) - (0 if tied else 32 * 256)
    assert last["N_total"] == model.num_parameters()
    # the saved weights are the trained ones: their held-out loss is the final row's
    corpus = load_corpus("english")
    losses = []
    with torch.no_grad():
        for batch in heldout_batches(corpus, context=32, batch_size=8, max_tokens=1024):
            logits = model(input_ids=batch[:, :-1]).logits
            losses.append(F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1), reduction="sum"))
    assert float(sum(losses)) / 1024 == pytest.approx(last["loss"], rel=1e-4)


def test_hf_config_enters_the_run_id_only_when_given():
    base = RunConfig(**TINY)
    assert run_id(base) == run_id(RunConfig(**TINY, hf_config={}))
    assert run_id(base) != run_id(RunConfig(**TINY, hf_config={"num_key_value_heads": 2}))
    assert run_id(base) != run_id(RunConfig(**TINY, model_type="qwen2"))


def test_pretrained_tokenizer_through_the_trainer(tmp_path):
    """A tokenizer.json given by path: the model gets its vocabulary, rows report it, bits per byte stay exact."""
    from scaling.train import data
    from scaling.train.corpora import python_stdlib_files

    path = tmp_path / "tok" / "tokenizer.json"
    path.parent.mkdir()
    data.train_bpe([p.read_text(errors="replace") for p in python_stdlib_files()[:40]], 500).save(str(path))
    out = train({**TINY, "model_type": "qwen2", "tokenizer": str(path), "eval_points": 0, "tokens": 4 * 256,
                 "out_dir": str(tmp_path / "runs")}, tmp_path / "r.csv")
    row = out.rows[-1]
    assert row["vocab_size"] == 500 and row["tokenizer"] == str(path)
    # more than one byte per token on average: bits per byte below loss / ln 2
    assert 0 < row["bits_per_byte"] < row["loss"] / math.log(2)
