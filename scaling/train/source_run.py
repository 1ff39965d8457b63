"""Transfer: the finished run that ``init_from`` names, whether it fits this run, and its weights.

A fine-tune starts from the final weights of a run this trainer finished (``out_dir/RUN_ID/final/``). Its
``run.json`` says what it was trained on, so an incompatible source (another tokenizer, shape or a shorter
learned context) is refused with one line before anything trains, rather than failing in ``load_state_dict``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.errors import ScalingError

if TYPE_CHECKING:
    import torch

    from scaling.train.model import ModelShape


@dataclass(frozen=True)
class SourceRun:
    run_dir: Path
    info: dict  # the source's run.json

    @property
    def weights(self) -> Path:
        return self.run_dir / "final" / "model.safetensors"


def resolve_source(init_from: str) -> SourceRun:
    """The finished run behind ``init_from`` (its folder or its final/ folder)."""
    path = Path(init_from).expanduser()
    if path.name == "final":
        path = path.parent
    if not path.exists():
        raise ScalingError(f"init_from {init_from}: no such folder")
    info_path = path / "run.json"
    if not info_path.is_file() or not (path / "final" / "model.safetensors").is_file():
        raise ScalingError(
            f"init_from {init_from}: not a finished run folder (needs run.json and final/model.safetensors, "
            "as written by this trainer under out_dir/RUN_ID)"
        )
    try:
        info = json.loads(info_path.read_text())
        info["shape"], info["corpus"], info["tokenizer"]
    except (ValueError, KeyError, TypeError):
        raise ScalingError(f"init_from {init_from}: {info_path} is not a run description of this trainer") from None
    return SourceRun(path, info)


def check_compatible(source: SourceRun, shape: ModelShape, tokenizer: str, corpus_name: str) -> None:
    """Refuse a source whose token ids or tensors do not fit this run (the tokenizer names were compared before
    the corpus was loaded)."""
    src = source.info
    if tokenizer.startswith("bpe-") and src["corpus"] != corpus_name:
        raise ScalingError(
            f"init_from {source.run_dir}: incompatible tokenizer (a BPE trained on {src['corpus']} there, on "
            f"{corpus_name} here: token ids differ); use tokenizer: bytes for transfer across corpora"
        )
    src_shape = src["shape"]
    for key in ("n_layer", "d_model", "n_head", "d_ff", "vocab_size", "model_type", "hf_config"):
        if src_shape.get(key, {}) != getattr(shape, key):
            raise ScalingError(
                f"init_from {source.run_dir}: incompatible shape ({key} {src_shape.get(key, {})} there, {getattr(shape, key)} here)"
            )
    if src_shape["context"] < shape.context and shape.model_type == "gpt2":
        raise ScalingError(
            f"init_from {source.run_dir}: incompatible context ({src_shape['context']} there, {shape.context} here)"
        )


def load_source_weights(model: torch.nn.Module, source: SourceRun, shape: ModelShape) -> None:
    """Load the source's final weights into ``model`` (built with ``shape``), in place."""
    from safetensors.torch import load_file

    state = load_file(str(source.weights))
    own = model.state_dict()
    # A tensor shared by several names (a tied LM head) is saved under one of them: fill in the others.
    shared: dict[int, list[str]] = {}
    for name, tensor in own.items():
        shared.setdefault(tensor.data_ptr(), []).append(name)
    for names in shared.values():
        saved = next((n for n in names if n in state), None)
        for name in names:
            if saved is not None and name not in state:
                state[name] = state[saved]
    if shape.model_type == "gpt2" and "transformer.wpe.weight" in state:
        # learned positions: a shorter context uses the first rows (a longer one was refused earlier)
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: shape.context]
    bad = [k for k in own if k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state and not k.endswith("rotary_emb.inv_freq")]
    if bad or missing:
        what = f"{bad[0]} has shape {tuple(state[bad[0]].shape)} there" if bad else f"{missing[0]} is missing there"
        raise ScalingError(f"init_from {source.run_dir}: incompatible weights ({what})")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
