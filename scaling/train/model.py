"""The model: a decoder-only Hugging Face transformer built from a shape or a target size, and what it costs.

Shapes: ``n_layer, d_model, n_head, d_ff, context, vocab_size`` map onto ``LlamaConfig`` (default: RMSNorm, rotary
positions, SwiGLU MLP with three matrices, no biases) or ``GPT2Config`` (LayerNorm, learned positions, GELU MLP
with two matrices, biases). Input and output embeddings are tied in both (as in GPT-2 and nanoGPT).

Parameter counts come from the tensors of the built model, never from a formula:

- ``N`` (non-embedding, Kaplan et al. 2020): every parameter except the token embedding, the position embedding
  (GPT-2) and the LM head. The head is tied to the token embedding here, so it adds no tensor of its own; an
  untied head would be excluded too. Norm weights and biases are counted (Kaplan's 12 n_layer d^2 ignores them).
- ``N_total`` (Hoffmann et al. 2022): all parameters, each shared tensor counted once.

Training FLOPs per token (LAWS.md 0.3, Kaplan et al. 2020 Table 1, with the LM head added):

    flops_per_token = 3 * (2 * N_matmul + 2 * n_layer * context * d_model + 2 * d_model * vocab_size)

``N_matmul`` is the number of weights in the linear layers of the blocks (the matrices that cost 2 FLOPs per weight
per token; norms and biases do not); ``2 n_layer n_ctx d_attn`` is Kaplan's attention term (QK^T and attention
times V, each over n_ctx/2 positions on average under the causal mask); ``2 d V`` is the LM head; the backward pass
costs twice the forward pass. The embedding lookup is a gather and costs nothing here (Hoffmann et al. App. F
count it as a matmul). ``6 N`` is reported next to it: at these sizes the two differ by 10-60%.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from scaling.errors import ScalingError

HEAD_DIM = 32  # default head size when n_head is not given (LAWS.md 1.4: n_heads = d_model / 32)
N_TOLERANCE = 0.10  # a solved shape must land within 10% of target_N


@dataclass(frozen=True)
class ModelShape:
    """Everything needed to build the network."""

    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    context: int
    vocab_size: int
    model_type: str = "llama"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelCounts:
    """Parameter and FLOP counts of a built model (see the module docstring for the definitions)."""

    N: int
    N_total: int
    N_matmul: int
    flops_per_token: float  # exact training FLOPs per token
    flops_per_token_6N: float  # 6 N, the usual approximation

    def as_dict(self) -> dict:
        return asdict(self)


def default_heads(d_model: int) -> int:
    """About d_model / 32 heads, adjusted down until it divides d_model with an even head size."""
    h = max(1, round(d_model / HEAD_DIM))
    while h > 1 and (d_model % h or (d_model // h) % 2):
        h -= 1
    return h


def hf_config(shape: ModelShape):
    """The transformers config for a shape. Dropout is off: these runs are far from overfitting one epoch."""
    if shape.model_type == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=shape.vocab_size,
            hidden_size=shape.d_model,
            intermediate_size=shape.d_ff,
            num_hidden_layers=shape.n_layer,
            num_attention_heads=shape.n_head,
            num_key_value_heads=shape.n_head,
            max_position_embeddings=shape.context,
            tie_word_embeddings=True,
            use_cache=False,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
    if shape.model_type == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=shape.vocab_size,
            n_positions=shape.context,
            n_embd=shape.d_model,
            n_layer=shape.n_layer,
            n_head=shape.n_head,
            n_inner=shape.d_ff,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=True,
            use_cache=False,
            bos_token_id=None,
            eos_token_id=None,
        )
    raise ScalingError(f"model_type {shape.model_type!r}: expected llama or gpt2")


def build_model(shape: ModelShape, seed: int = 0, *, device: str | torch.device | None = None) -> nn.Module:
    """A freshly initialised causal LM for ``shape`` (initialisation is a function of ``seed`` alone)."""
    from transformers import AutoModelForCausalLM

    config = hf_config(shape)
    # sdpa: PyTorch's fused attention, the fastest implementation on CPU and GPU without extra packages.
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device == "meta":
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    return model


def _embedding_params(model: nn.Module) -> set[int]:
    """ids of the token/position embedding and LM head tensors (what N leaves out)."""
    ids = {id(p) for p in model.get_input_embeddings().parameters()}
    out = model.get_output_embeddings()
    if out is not None:
        ids |= {id(p) for p in out.parameters()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.split(".")[-1] in ("wpe", "embed_positions"):
            ids |= {id(p) for p in module.parameters()}
    return ids


def count(model: nn.Module, shape: ModelShape) -> ModelCounts:
    """N, N_total and training FLOPs per token, counted from ``model``'s tensors."""
    params = {id(p): p for p in model.parameters()}  # shared (tied) tensors once
    emb = _embedding_params(model)
    N_total = sum(p.numel() for p in params.values())
    N = sum(p.numel() for i, p in params.items() if i not in emb)
    head = model.get_output_embeddings()
    n_matmul = 0
    for module in model.modules():
        if module is head:
            continue
        if isinstance(module, nn.Linear):
            n_matmul += module.in_features * module.out_features
        elif type(module).__name__ == "Conv1D":  # transformers' GPT-2 linear layer (weight stored transposed)
            n_matmul += module.weight.numel()
    d, V = shape.d_model, shape.vocab_size
    forward = 2 * n_matmul + 2 * shape.n_layer * shape.context * d + 2 * d * V
    return ModelCounts(N=N, N_total=N_total, N_matmul=n_matmul, flops_per_token=3.0 * forward, flops_per_token_6N=6.0 * N)


def shape_counts(shape: ModelShape) -> ModelCounts:
    """Counts of a shape without allocating it (built on the meta device)."""
    return count(build_model(shape, device="meta"), shape)


def solve_shape(
    target_N: float,
    *,
    aspect: float,
    context: int,
    vocab_size: int,
    model_type: str = "llama",
    n_head: int | None = None,
    tolerance: float = N_TOLERANCE,
) -> ModelShape:
    """The shape whose non-embedding N is closest to ``target_N`` at d_model / n_layer close to ``aspect``.

    At a fixed aspect ratio N grows like n_layer^3, so integer layer counts alone reach only a few sizes: we take
    the layer counts around the ideal one, solve d_model (a multiple of 8, or of n_head) for each, and keep the
    candidate nearest in aspect ratio among those within ``tolerance`` of target_N.
    """
    step = 8 if n_head is None else n_head * (2 if model_type == "llama" else 1)
    # N per layer is about 16 d^2 (llama: 4 d^2 attention + 3*4 d^2 MLP) or 12 d^2 (gpt2).
    per_d2 = 16 if model_type == "llama" else 12
    ideal_layers = (target_N / (per_d2 * aspect**2)) ** (1 / 3)
    layers = sorted({max(1, math.floor(ideal_layers)), max(1, math.ceil(ideal_layers)), max(1, round(ideal_layers) + 1), max(1, round(ideal_layers) - 1)})
    best: tuple[float, float, ModelShape, int] | None = None
    nearest: tuple[float, ModelShape, int] | None = None
    for n_layer in layers:
        d_est = math.sqrt(target_N / (per_d2 * n_layer))
        base = max(1, round(d_est / step))
        for k in range(max(1, base - 2), base + 3):
            d = k * step
            shape = ModelShape(n_layer, d, n_head or default_heads(d), 4 * d, context, vocab_size, model_type)
            N = shape_counts(shape).N
            err = abs(math.log(N / target_N))
            if nearest is None or err < nearest[0]:
                nearest = (err, shape, N)
            if abs(N / target_N - 1) <= tolerance:
                key = (abs(math.log((d / n_layer) / aspect)), err)
                if best is None or key < best[:2]:
                    best = (*key, shape, N)
    if best is None:
        _, shape, N = nearest
        raise ScalingError(
            f"target_N {target_N:g}: no shape reaches it within {tolerance:.0%} "
            f"(nearest: n_layer={shape.n_layer}, d_model={shape.d_model}, N={N}); "
            "give n_layer and d_model, or another target_N"
        )
    return best[2]


def resolve_shape(config, vocab_size: int) -> ModelShape:
    """The shape of a run config (explicit shape or target_N). ``config`` is a RunConfig."""
    if config.target_N is not None:
        return solve_shape(
            config.target_N,
            aspect=config.aspect,
            context=config.context,
            vocab_size=vocab_size,
            model_type=config.model_type,
            n_head=config.n_head,
        )
    d = config.d_model
    return ModelShape(
        n_layer=config.n_layer,
        d_model=d,
        n_head=config.n_head or default_heads(d),
        d_ff=config.d_ff or 4 * d,
        context=config.context,
        vocab_size=vocab_size,
        model_type=config.model_type,
    )


def vocab_size_of(config) -> int:
    """Vocabulary size implied by a config's tokenizer (the model is built with exactly this many rows)."""
    return 256 if config.tokenizer == "bytes" else int(config.bpe_vocab)


def describe(config, vocab_size: int | None = None) -> dict:
    """Shape and counts of a run config without building weights (for sweep planning)."""
    shape = resolve_shape(config, vocab_size or vocab_size_of(config))
    return {**shape.as_dict(), **shape_counts(shape).as_dict()}
