"""Model shapes, parameter counts from the tensors, exact FLOPs per token, and the target-N shape solver."""

from __future__ import annotations

import pytest
import torch

from scaling.errors import ScalingError
from scaling.laws.kaplan import n_nonembedding
from scaling.train.config import RunConfig
from scaling.train.model import ModelShape, build_model, count, describe, shape_counts, solve_shape


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_counts_from_tensors(model_type):
    n_layer, d, V, ctx = 3, 64, 256, 128
    shape = ModelShape(n_layer, d, 2, 4 * d, ctx, V, model_type)
    model = build_model(shape, seed=0)
    c = count(model, shape)
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    assert c.N_total == total
    if model_type == "gpt2":
        # GPT-2's two-matrix MLP is exactly Kaplan's 12 n_layer d^2; biases and LayerNorms come on top
        assert c.N_matmul == n_nonembedding(n_layer, d) == 12 * n_layer * d * d
        embeddings = V * d + ctx * d  # tied wte (= LM head) and wpe
    else:
        assert c.N_matmul == 16 * n_layer * d * d  # SwiGLU: three d x 4d matrices
        embeddings = V * d
    assert c.N == c.N_total - embeddings
    assert c.N > c.N_matmul  # norms (and biases) are non-embedding parameters
    forward = 2 * c.N_matmul + 2 * n_layer * ctx * d + 2 * d * V
    assert c.flops_per_token == 3 * forward
    assert c.flops_per_token_6N == 6 * c.N


def test_meta_counts_equal_real_counts_and_init_is_seeded():
    shape = ModelShape(2, 48, 2, 192, 64, 256)
    assert shape_counts(shape) == count(build_model(shape), shape)
    a, b, c = build_model(shape, seed=1), build_model(shape, seed=1), build_model(shape, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("target", [1e4, 1e5, 1e6, 5e6])
def test_solve_shape_hits_target_at_aspect(target):
    shape = solve_shape(target, aspect=32, context=128, vocab_size=256)
    N = shape_counts(shape).N
    assert abs(N / target - 1) <= 0.10
    assert shape.d_model % shape.n_head == 0 and (shape.d_model // shape.n_head) % 2 == 0
    # the aspect ratio is kept within a factor of 2 (integer layer counts cannot do better at small N)
    assert 16 <= shape.d_model / shape.n_layer <= 64


def test_solve_shape_unreachable():
    with pytest.raises(ScalingError, match="target_N 100: no shape reaches it"):
        solve_shape(100, aspect=32, context=128, vocab_size=256)
    with pytest.raises(ScalingError, match="no shape reaches it"):
        describe(RunConfig(target_N=2e5, n_head=64, tokens=1e6))  # 64 heads: d_model >= 128 -> N >= 2.6e5


def test_describe_for_planning():
    info = describe(RunConfig(target_N=1e5, tokens=1e6))
    assert {"n_layer", "d_model", "N", "N_total", "flops_per_token"} <= set(info)
    assert info["vocab_size"] == 256
    assert describe(RunConfig(n_layer=2, d_model=64, tokens=1e6, tokenizer="bpe"))["vocab_size"] == 4096


# ---------------------------------------------------------------------------------------------------------
# Any transformers causal-LM architecture, with hf_config passed through

ARCHITECTURES = [
    ("qwen2", {}),
    ("gpt_neox", {}),
    ("olmo2", {}),
    ("mistral", {"num_key_value_heads": 2}),  # grouped-query attention: 4 heads share 2 key/value heads
    ("qwen2", {"num_key_value_heads": 1, "tie_word_embeddings": False, "rope_theta": 500_000.0}),
]


@pytest.mark.parametrize("model_type, extra", ARCHITECTURES)
def test_counts_match_transformers_oracle_for_any_architecture(model_type, extra):
    shape = ModelShape(2, 64, 4, 192, 32, 256, model_type, extra)
    model = build_model(shape, seed=0)
    c = count(model, shape)
    assert type(model).__name__.lower().startswith(model_type.replace("_", ""))
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (2, 64, 4, 192)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == extra.get("tie_word_embeddings", True)
    head = 0 if tied else 64 * 256
    # transformers leaves nn.Embedding modules out, not an untied LM head; N leaves out both
    assert c.N == model.num_parameters(exclude_embeddings=True) - head
    assert c.N_total == model.num_parameters() == c.N + 64 * 256 + head
    kv = extra.get("num_key_value_heads", 4)
    assert getattr(cfg, "num_key_value_heads", 4) == kv
    # the key and value projections shrink with the key/value heads (GQA), as built
    assert c.N_matmul == 2 * (64 * 64 * 2 + 2 * 64 * 16 * kv + 3 * 64 * 192) if model_type != "gpt_neox" else True
    assert c.flops_per_token == 3 * (2 * c.N_matmul + 2 * 2 * 32 * 64 + 2 * 64 * 256)
    if "rope_theta" in extra:
        assert str(int(extra["rope_theta"])) in str(cfg.to_dict())  # passed through (rope_parameters in v5)


@pytest.mark.parametrize("model_type, extra", [("gpt_neox", {}), ("mistral", {"num_key_value_heads": 2})])
def test_solve_shape_for_other_architectures(model_type, extra):
    shape = solve_shape(1e5, aspect=32, context=64, vocab_size=256, model_type=model_type, hf_config=extra)
    assert abs(shape_counts(shape).N / 1e5 - 1) <= 0.10
    assert shape.n_head % extra.get("num_key_value_heads", 1) == 0 and shape.hf_config == extra
    info = describe(RunConfig(target_N=1e5, context=64, tokens=1e6, model_type=model_type, hf_config=extra))
    assert info["N"] == shape_counts(shape).N and info["model_type"] == model_type


def test_bad_architectures_are_one_line_errors():
    cases = [
        (dict(model_type="vit"), "not a causal-LM architecture"),
        (dict(model_type="qwen2", hf_config={"num_key_value_head": 2}), "did you mean 'num_key_value_heads'"),
        (dict(model_type="qwen2", hf_config={"hidden_size": 64}), "run-config key 'd_model'"),
        (dict(model_type="qwen2", n_head=4, hf_config={"num_key_value_heads": 3}), "not a multiple of 3"),
    ]
    for kw, message in cases:
        with pytest.raises(ScalingError, match=message) as err:
            describe(RunConfig(**{"n_layer": 2, "d_model": 64, "tokens": 1e6, **kw}))
        assert "\n" not in str(err.value)


def test_default_heads_respect_key_value_heads():
    from scaling.train.model import default_heads

    assert default_heads(32) == 1 and default_heads(256) == 8  # d_model / 32, as before
    assert default_heads(32, 2) == 2  # GQA with 2 key/value heads: the nearest count that is a multiple of 2
    assert default_heads(96, 4) == 4 and default_heads(30, 4) is None
    info = describe(RunConfig(n_layer=2, d_model=32, tokens=1e6, model_type="qwen2", hf_config={"num_key_value_heads": 2}))
    assert info["n_head"] == 2
