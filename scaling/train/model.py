"""The model: a decoder-only Hugging Face transformer built from a shape or a target size, and what it costs.

Any causal-LM architecture of ``transformers`` (``model_type``: ``llama`` (default), ``gpt2``, ``qwen2``,
``mistral``, ``gpt_neox``, ``olmo2``, ...) is built by ``AutoConfig.for_model(model_type, **kwargs)``: the shape
``n_layer, d_model, n_head, d_ff, context, vocab_size`` fills the type's own parameters (``num_hidden_layers``,
``hidden_size``, ... or GPT-2's ``n_layer``, ``n_embd``, ``n_inner``), and ``hf_config`` passes any other parameter
of that config through unchanged (``num_key_value_heads`` for GQA, ``rope_theta``/``rope_parameters``,
``tie_word_embeddings: false``, ``rms_norm_eps``, ...). Defaults that differ from the type's own, unless
``hf_config`` sets them: input and output embeddings tied (as in GPT-2 and nanoGPT), as many key/value heads as
heads, ``head_dim = d_model / n_head``, every dropout 0 (these runs are far from overfitting one epoch), no
special token ids, no KV cache.

Parameter counts come from the tensors of the built model, never from a formula:

- ``N`` (non-embedding, Kaplan et al. 2020): every parameter except those of ``nn.Embedding`` modules (token and
  learned position embeddings) and the LM head. A tied head shares the token embedding's tensor; an untied head
  is excluded as well, so ``N`` is ``transformers``' ``num_parameters(exclude_embeddings=True)`` minus an untied
  head. Norm weights and biases are counted (Kaplan's 12 n_layer d^2 ignores them).
- ``N_total`` (Hoffmann et al. 2022): all parameters, each shared tensor counted once.

Training FLOPs per token (Kaplan et al. 2020, arXiv 2001.08361, Table 1, with the LM head added):

    flops_per_token = 3 * (2 * N_matmul + 2 * n_layer * context * d_attn + 2 * N_head)

``N_matmul`` is the number of weights in the linear layers of the blocks (the matrices that cost 2 FLOPs per weight
per token; norms and biases do not; with grouped-query attention the smaller key/value projections count as
built); ``2 n_layer n_ctx d_attn`` is Kaplan's attention term (QK^T and attention times V, each over n_ctx/2
positions on average under the causal mask; ``d_attn = n_head * head_dim``); ``2 N_head = 2 d V`` is the LM head;
the backward pass costs twice the forward pass. The embedding lookup is a gather and costs nothing here (Hoffmann
et al. App. F count it as a matmul). ``6 N`` is reported next to it: at these sizes the two differ by 10-60%.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from scaling.errors import ScalingError

HEAD_DIM = 32  # default head size when n_head is not given (so n_heads = d_model / 32)
N_TOLERANCE = 0.10  # a solved shape must land within 10% of target_N

# The shape's fields -> the standard transformers parameter names (a config's attribute_map renames them, e.g.
# GPT-2's n_embd); d_ff has no standard name, so the known spellings are tried in this order.
_STANDARD = {"n_layer": "num_hidden_layers", "d_model": "hidden_size", "n_head": "num_attention_heads",
             "context": "max_position_embeddings", "vocab_size": "vocab_size"}
_D_FF_NAMES = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff")
_KV_NAMES = ("num_key_value_heads", "num_kv_heads")


@dataclass(frozen=True)
class ModelShape:
    """Everything needed to build the network: the shape, the architecture and its extra config parameters."""

    n_layer: int
    d_model: int
    n_head: int
    d_ff: int
    context: int
    vocab_size: int
    model_type: str = "llama"
    hf_config: Mapping[str, Any] = field(default_factory=dict)  # passed through to AutoConfig.for_model

    def as_dict(self) -> dict:
        out = asdict(self)
        if not out["hf_config"]:  # run.json of a plain run looks as it always did
            out.pop("hf_config")
        return out


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


def kv_heads(hf_config: Mapping[str, Any] | None) -> int:
    """Key/value heads asked for in ``hf_config`` (grouped-query attention), 1 when not given: what n_head must
    be a multiple of."""
    for name in _KV_NAMES:
        value = (hf_config or {}).get(name)
        if value is not None:
            return int(value)
    return 1


def default_heads(d_model: int, multiple_of: int = 1) -> int | None:
    """About d_model / 32 heads, adjusted down until it divides d_model with an even head size (rotary positions)
    and is a multiple of ``multiple_of`` (the key/value heads of GQA); None if there is no such count."""
    target = max(1, round(d_model / HEAD_DIM))
    # down first (the rule sizes were solved with), then up: under GQA a narrow model may need more heads
    for h in [*range(target, 0, -1), *range(target + 1, d_model // 2 + 1)]:
        if d_model % h == 0 and (d_model // h) % 2 == 0 and h % multiple_of == 0:
            return h
    return 1 if multiple_of == 1 else None  # an odd width: one head, as before


def rotary(model_type: str) -> bool:
    """Whether heads need an even size (rotary positions); GPT-2 uses learned positions and keeps its old rule."""
    return model_type != "gpt2"


def _config_class(model_type: str):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type not in CONFIG_MAPPING_NAMES:
        import transformers

        near = [t for t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES if model_type.replace("-", "_") in t][:5]
        hint = f" (close: {', '.join(near)})" if near else ""
        raise ScalingError(
            f"model_type {model_type!r}: not a causal-LM architecture of transformers {transformers.__version__}"
            f"{hint}; e.g. llama, gpt2, qwen2, mistral, gpt_neox, olmo2"
        )
    from transformers import AutoConfig

    return type(AutoConfig.for_model(model_type))


def _native_names(model_type: str) -> tuple[dict[str, str], set[str]]:
    """(shape field -> the config's own parameter name, every parameter name the config accepts)."""
    cls = _config_class(model_type)
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    aliases = getattr(cls, "attribute_map", {}) or {}
    names = {}
    for key, standard in _STANDARD.items():
        native = aliases.get(standard, standard)
        if native in params:
            names[key] = native
        elif key != "context":  # ALiBi models (bloom, mpt) have no position limit: the only optional one
            raise ScalingError(f"model_type {model_type!r}: its config has no {standard} parameter; not supported")
    d_ff = next((n for n in (aliases.get("intermediate_size"), *_D_FF_NAMES) if n in params), None)
    if d_ff is None:
        raise ScalingError(
            f"model_type {model_type!r}: its config has no MLP width parameter ({', '.join(_D_FF_NAMES)}); not supported"
        )
    names["d_ff"] = d_ff
    return names, params | set(aliases)


def check_hf_config(model_type: str, hf_config: Mapping[str, Any]) -> None:
    """hf_config keys must be parameters of the type's config: a misspelt key would be stored and ignored."""
    names, accepted = _native_names(model_type)
    from transformers import AutoConfig, PretrainedConfig

    accepted |= set(inspect.signature(PretrainedConfig.__init__).parameters) | {"tie_word_embeddings", "head_dim"}
    shape_keys = {v: k for k, v in names.items()} | {v: k for k, v in _STANDARD.items()}
    default = None
    for key, value in hf_config.items():
        if key in shape_keys:
            raise ScalingError(f"hf_config key {key!r}: set it with the run-config key {shape_keys[key]!r}")
        if key in accepted:
            continue
        # A legacy spelling the config still takes (rope_theta, folded into rope_parameters by transformers 5)
        # is consumed or changes another field; an unknown key is only stored under its own name.
        default = default if default is not None else AutoConfig.for_model(model_type).to_dict()
        try:
            given = AutoConfig.for_model(model_type, **{key: value}).to_dict()
        except Exception as exc:  # the config's own validation (a bad type or range)
            raise ScalingError(f"hf_config key {key!r}: {(str(exc).strip().splitlines() or [''])[0][:200]}") from None
        if key not in given or any(given.get(k) != default.get(k) for k in given if k != key):
            continue
        import difflib

        hint = difflib.get_close_matches(key, sorted(accepted), n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ScalingError(f"hf_config key {key!r}: not a parameter of model_type {model_type!r}{did}")


def hf_config(shape: ModelShape):
    """The transformers config of a shape: ``AutoConfig.for_model(model_type, **shape, **defaults, **hf_config)``."""
    from transformers import AutoConfig

    names, accepted = _native_names(shape.model_type)
    user = dict(shape.hf_config)
    check_hf_config(shape.model_type, user)
    kv = kv_heads(user)
    if shape.n_head % kv:
        raise ScalingError(f"hf_config: n_head {shape.n_head} is not a multiple of {kv} key/value heads")
    kwargs: dict[str, Any] = {names[k]: getattr(shape, k) for k in names}
    defaults: dict[str, Any] = {"tie_word_embeddings": True, "use_cache": False}
    for name in _KV_NAMES:
        if name in accepted:
            defaults[name] = shape.n_head  # the types' own defaults (qwen2: 32, mistral: 8) ignore the shape
    if "head_dim" in accepted:
        defaults["head_dim"] = shape.d_model // shape.n_head  # qwen3's default is 128 whatever the width
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        defaults[name] = None  # the types' ids (50256, ...) may be outside a small vocabulary
    config = AutoConfig.for_model(shape.model_type, **{**kwargs, **defaults, **user})
    for key, value in config.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and key not in user:
            setattr(config, key, 0.0)
    return config


def build_model(shape: ModelShape, seed: int = 0, *, device: str | torch.device | None = None) -> nn.Module:
    """A freshly initialised causal LM for ``shape`` (initialisation is a function of ``seed`` alone)."""
    from transformers import AutoModelForCausalLM

    config = hf_config(shape)
    # sdpa: PyTorch's fused attention, the fastest implementation on CPU and GPU without extra packages.
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if device == "meta":
                with torch.device("meta"):
                    model = AutoModelForCausalLM.from_config(config)
            else:
                model = AutoModelForCausalLM.from_config(config)
        except (ValueError, TypeError, AssertionError) as exc:  # e.g. a head size the architecture refuses
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ScalingError(f"model_type {shape.model_type!r} with this shape and hf_config: {first}") from None
    return model


def _embedding_params(model: nn.Module) -> set[int]:
    """ids of the embedding tensors (every nn.Embedding: tokens, learned positions) and of the LM head."""
    ids = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    ids |= {id(p) for p in model.get_input_embeddings().parameters()}
    out = model.get_output_embeddings()
    if out is not None:
        ids |= {id(p) for p in out.parameters()}
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
    head_dim = getattr(model.config, "head_dim", None) or shape.d_model // shape.n_head
    d_attn = shape.n_head * head_dim
    n_head_weights = head.weight.numel() if head is not None else shape.d_model * shape.vocab_size
    forward = 2 * n_matmul + 2 * shape.n_layer * shape.context * d_attn + 2 * n_head_weights
    return ModelCounts(N=N, N_total=N_total, N_matmul=n_matmul, flops_per_token=3.0 * forward, flops_per_token_6N=6.0 * N)


def shape_counts(shape: ModelShape) -> ModelCounts:
    """Counts of a shape without allocating it (built on the meta device)."""
    return count(build_model(shape, device="meta"), shape)


def _n_per_d2(model_type: str, context: int, vocab_size: int, hf_config: Mapping[str, Any]) -> float:
    """Non-embedding parameters per layer per d_model^2 of an architecture (llama ~16, gpt2 ~12), measured on a
    one-layer model of width 256 on the meta device: the solver's first guess, for any architecture."""
    d = 256
    h = default_heads(d, kv_heads(hf_config)) or kv_heads(hf_config)
    return shape_counts(ModelShape(1, d, h, 4 * d, context, vocab_size, model_type, dict(hf_config))).N / d**2


def solve_shape(
    target_N: float,
    *,
    aspect: float,
    context: int,
    vocab_size: int,
    model_type: str = "llama",
    n_head: int | None = None,
    hf_config: Mapping[str, Any] | None = None,
    tolerance: float = N_TOLERANCE,
) -> ModelShape:
    """The shape whose non-embedding N is closest to ``target_N`` at d_model / n_layer close to ``aspect``.

    At a fixed aspect ratio N grows like n_layer^3, so integer layer counts alone reach only a few sizes: we take
    the layer counts around the ideal one, solve d_model (a multiple of 8, or of n_head) for each, and keep the
    candidate nearest in aspect ratio among those within ``tolerance`` of target_N. Works for any architecture:
    N is counted from the model each candidate builds (on the meta device).
    """
    extra = dict(hf_config or {})
    kv = kv_heads(extra)
    even = rotary(model_type)
    step = math.lcm(8, 2 * kv if even else kv) if n_head is None else n_head * (2 if even else 1)
    if model_type in ("llama", "gpt2") and not extra:
        per_d2 = 16 if model_type == "llama" else 12  # the values measured below, kept so old shapes never move
    else:
        per_d2 = _n_per_d2(model_type, context, vocab_size, extra)
    ideal_layers = (target_N / (per_d2 * aspect**2)) ** (1 / 3)
    layers = sorted({max(1, math.floor(ideal_layers)), max(1, math.ceil(ideal_layers)), max(1, round(ideal_layers) + 1), max(1, round(ideal_layers) - 1)})
    best: tuple[float, float, ModelShape, int] | None = None
    nearest: tuple[float, ModelShape, int] | None = None
    for n_layer in layers:
        d_est = math.sqrt(target_N / (per_d2 * n_layer))
        base = max(1, round(d_est / step))
        for k in range(max(1, base - 2), base + 3):
            d = k * step
            heads = n_head or default_heads(d, kv)
            if heads is None:
                continue
            shape = ModelShape(n_layer, d, heads, 4 * d, context, vocab_size, model_type, extra)
            N = shape_counts(shape).N
            err = abs(math.log(N / target_N))
            if nearest is None or err < nearest[0]:
                nearest = (err, shape, N)
            if abs(N / target_N - 1) <= tolerance:
                key = (abs(math.log((d / n_layer) / aspect)), err)
                if best is None or key < best[:2]:
                    best = (*key, shape, N)
    if best is None:
        if nearest is None:
            raise ScalingError(f"target_N {target_N:g}: no shape found for {kv} key/value heads; give n_layer and d_model")
        _, shape, N = nearest
        raise ScalingError(
            f"target_N {target_N:g}: no shape reaches it within {tolerance:.0%} "
            f"(nearest: n_layer={shape.n_layer}, d_model={shape.d_model}, N={N}); "
            "give n_layer and d_model, or another target_N"
        )
    return best[2]


def resolve_shape(config, vocab_size: int) -> ModelShape:
    """The shape of a run config (explicit shape or target_N). ``config`` is a RunConfig."""
    extra = dict(config.hf_config or {})
    if config.target_N is not None:
        return solve_shape(
            config.target_N,
            aspect=config.aspect,
            context=config.context,
            vocab_size=vocab_size,
            model_type=config.model_type,
            n_head=config.n_head,
            hf_config=extra,
        )
    d = config.d_model
    heads = config.n_head or default_heads(d, kv_heads(extra))
    if heads is None:
        raise ScalingError(f"d_model {d}: no head count divides it into even heads that are a multiple of "
                           f"{kv_heads(extra)} key/value heads; give n_head")
    return ModelShape(
        n_layer=config.n_layer,
        d_model=d,
        n_head=heads,
        d_ff=config.d_ff or 4 * d,
        context=config.context,
        vocab_size=vocab_size,
        model_type=config.model_type,
        hf_config=extra,
    )


def vocab_size_of(config) -> int:
    """Vocabulary size implied by a config's tokenizer (the model is built with exactly this many rows)."""
    if config.tokenizer in ("bytes", "bpe"):
        return 256 if config.tokenizer == "bytes" else int(config.bpe_vocab)
    from scaling.train.pretrained_tokenizer import resolve

    return resolve(config.tokenizer).vocab_size


def describe(config, vocab_size: int | None = None) -> dict:
    """Shape and counts of a run config without building weights (for sweep planning)."""
    shape = resolve_shape(config, vocab_size or vocab_size_of(config))
    return {**shape.as_dict(), **shape_counts(shape).as_dict()}
