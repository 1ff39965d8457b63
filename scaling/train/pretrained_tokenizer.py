"""Pretrained tokenizers: a local ``tokenizer.json`` (or a folder holding one) or ``hf:NAME`` from the hub.

The run config's ``tokenizer`` key takes ``bytes`` (the default: never a pretrained one unless asked for), ``bpe``
(trained on the corpus), or one of these. The file is read with Hugging Face ``tokenizers``
(``Tokenizer.from_file``), which every fast tokenizer on the hub ships; ``hf:NAME`` fetches ``tokenizer.json``
with ``huggingface_hub.hf_hub_download``, which serves the cached copy in offline mode.

Texts are encoded without special tokens (no BOS/EOS inserted into documents) by ``datasets.map(batched=True,
num_proc=...)`` (:func:`encode_dataset`), each worker loading the tokenizer once.

Bytes per token (for bits per byte): exact for byte-level BPEs (GPT-2, Llama 3, Qwen: every character of a token's
string stands for one byte) and for byte-fallback tokens ``<0xNN>`` (one byte); otherwise the UTF-8 length of the
token decoded alone (SentencePiece's ``▁`` counts as the space it stands for). Special tokens count 0.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from scaling.errors import ScalingError

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass(frozen=True)
class PretrainedTokenizer:
    spec: str  # as written in the run config
    path: Path  # the tokenizer.json read
    content_hash: str  # sha256 of that file: part of the token cache's fingerprint

    @property
    def tokenizer(self):
        return _load(str(self.path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def is_pretrained(spec: str) -> bool:
    """Whether a tokenizer spec names a pretrained tokenizer (anything but bytes, bpe and bpe-<vocab>)."""
    return not re.match(r"^(bytes|bpe(-\d+)?)$", str(spec).strip())


def resolve(spec: str) -> PretrainedTokenizer:
    """The tokenizer.json behind ``spec``; one-line ScalingError if it cannot be found or read."""
    text = str(spec).strip()
    if text.startswith("hf:"):
        path = _from_hub(text)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ScalingError(
                f"tokenizer {text}: no such file (give bytes, bpe, a tokenizer.json file or a folder with one, or hf:NAME)"
            )
    try:
        _load(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ScalingError(f"tokenizer {text}: {path} is not a tokenizers JSON file ({first})") from None
    return PretrainedTokenizer(text, path, hashlib.sha256(path.read_bytes()).hexdigest())


def _from_hub(spec: str) -> Path:
    from huggingface_hub import hf_hub_download

    name = spec[len("hf:"):]
    try:
        return Path(hf_hub_download(name, "tokenizer.json"))
    except Exception as exc:  # offline and not cached, no such repo, gated, no tokenizer.json
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ScalingError(f"tokenizer {spec}: could not get tokenizer.json from the hub or its cache ({first})") from None


@functools.lru_cache(maxsize=4)
def _load(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def token_bytes(tok) -> list[int]:
    """UTF-8 bytes each token id stands for (see the module docstring for the rules)."""
    from tokenizers import decoders

    vocab = tok.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    byte_level = isinstance(tok.decoder, decoders.ByteLevel)
    out = []
    for i in range(vocab):
        piece = tok.id_to_token(i)
        if i in special or piece is None:
            out.append(0)
        elif byte_level:
            out.append(len(piece))
        elif _BYTE_FALLBACK.match(piece):
            out.append(1)
        else:
            out.append(len(piece.replace("\u2581", " ").encode("utf-8")))
    return out


def _encode_batch(batch: dict, path: str) -> dict:
    encodings = _load(path).encode_batch(batch["text"], add_special_tokens=False)
    return {"ids": [e.ids for e in encodings], "n": [len(e.ids) for e in encodings]}


def encode_dataset(texts: list[str], path: Path, *, num_proc: int | None = None):
    """Token ids of ``texts`` as a ``datasets.Dataset`` with columns ``ids`` and ``n`` (their count), arrow-backed
    rather than Python lists: ``Dataset.map(batched=True, num_proc=num_proc)``."""
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts})
    return ds.map(_encode_batch, batched=True, batch_size=256, num_proc=num_proc, fn_kwargs={"path": str(path)},
                  remove_columns=["text"], desc=None)
