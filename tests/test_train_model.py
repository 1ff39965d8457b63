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
