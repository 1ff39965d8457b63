"""Training data: tokenized corpora cached on disk, with a fixed held-out split.

``load_corpus(spec, tokenizer=...)`` reads a corpus (:mod:`scaling.train.corpora`), splits it into train and
held-out at document level, tokenizes both once and caches them as flat memory-mapped arrays::

    corpus = load_corpus("english")                       # bytes, vocab 256, 11.4M train / 204k held-out tokens
    corpus = load_corpus("python", tokenizer="bpe-4096")  # BPE trained on the train split only

The held-out split. Documents (a chapter, a source file, a paragraph; documents over 16 KiB are cut at line
breaks into pieces) are ordered by the SHA-256 of their text, and the held-out split is the shortest prefix of
that order with at least ``heldout_tokens`` tokens. It is therefore fixed for a corpus, tokenizer and size,
spread over the whole corpus, and identical documents always land on the same side (they hash alike). The
train split is every other document, also in hash order, so "the first U tokens" of it is a random-looking but
fixed sample of documents, and a smaller U is a subset of a larger one (nested subsets, Muennighoff et al. 2023).
Documents are joined with a blank line ("\\n\\n").

BPE (``"bpe-<vocab>"``): a byte-level BPE (Hugging Face ``tokenizers``) trained on documents outside a reserve
of the first documents of the hash order (6x ``heldout_tokens`` bytes, at most half the corpus), so the
held-out text, which is taken from inside that reserve, never trains the tokenizer.

The cache lives in ``cache_dir`` (default ``$SCALING_CACHE`` or ``~/.cache/scaling``) under
``corpora/<name>-<tokenizer>-<fingerprint>/`` with ``train.bin``, ``heldout.bin``, ``meta.json`` (and
``tokenizer.json`` for BPE). The folder is built in a temporary folder and renamed into place under a file lock,
so two processes that need the same corpus at once tokenize it once and never see a half-written cache.

Batches over the splits (the training sampler, held-out windows): :mod:`scaling.train.sampling`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from scaling.errors import ScalingError
from scaling.train import corpora, pretrained_tokenizer

FORMAT_VERSION = 1  # bump when the split, tokenization or file layout changes: old caches are then ignored
SEPARATOR = "\n\n"
MAX_PIECE_BYTES = 1 << 14
BPE_RESERVE_FACTOR = 6  # bytes of reserve per requested held-out token (BPE at 4096 is ~3-4 bytes per token)
_TOKENIZER_RE = re.compile(r"^(bytes|bpe-(\d+))$")


@dataclass(frozen=True, eq=False)
class TokenizedCorpus:
    """A corpus split into train and held-out token arrays (memory-mapped from the cache)."""

    name: str  # "english", "python", or the file/hub name given
    tokenizer: str  # "bytes" or "bpe-<vocab>"
    vocab_size: int
    train: np.ndarray  # 1-D np.memmap of token ids (uint8 for bytes, uint16 for BPE)
    heldout: np.ndarray  # 1-D np.memmap, fixed, disjoint from train at document level
    heldout_bytes: int  # UTF-8 bytes of the text behind `heldout`
    fingerprint: str  # hash of (source content, tokenizer, split settings, format version)
    path: Path = field(default=Path("."))  # the cache folder
    token_bytes: np.ndarray = field(default_factory=lambda: np.ones(256, dtype=np.int64))  # UTF-8 bytes per id

    def count_bytes(self, token_ids: np.ndarray | torch.Tensor) -> int:
        """Exact UTF-8 bytes behind some token ids (for bits per byte over a subset of the held-out tokens)."""
        ids = token_ids.numpy() if isinstance(token_ids, torch.Tensor) else np.asarray(token_ids)
        return int(self.token_bytes[ids.astype(np.int64, copy=False)].sum())

    def decode(self, token_ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Token ids back to text (invalid UTF-8 at a cut in the middle of a character shows as U+FFFD)."""
        ids = np.asarray(token_ids.tolist() if isinstance(token_ids, torch.Tensor) else token_ids, dtype=np.int64)
        if self.tokenizer == "bytes":
            return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        return _load_tokenizer(str(self.path / "tokenizer.json")).decode(ids.tolist(), skip_special_tokens=False)


# --- loading and caching ----------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$SCALING_CACHE`` or ``~/.cache/scaling``."""
    return Path(os.environ.get("SCALING_CACHE") or Path.home() / ".cache" / "scaling").expanduser()


def parse_tokenizer(tokenizer: str) -> int:
    """Vocabulary size of a tokenizer spec: ``"bytes"`` -> 256, ``"bpe-4096"`` -> 4096."""
    match = _TOKENIZER_RE.match(str(tokenizer).strip())
    if not match:
        raise ScalingError(f"tokenizer {tokenizer!r}: expected 'bytes' or 'bpe-<vocab>', e.g. 'bpe-4096'")
    if match.group(2) is None:
        return 256
    vocab = int(match.group(2))
    if not 257 <= vocab <= 65536:  # more than the 256 byte symbols; ids must fit uint16
        raise ScalingError(f"tokenizer {tokenizer!r}: BPE vocabulary must be between 257 and 65536")
    return vocab


def load_corpus(
    spec: str = "english",
    *,
    tokenizer: str = "bytes",
    heldout_tokens: int = 200_000,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
) -> TokenizedCorpus:
    """Load a corpus as train/held-out token arrays, tokenizing it once and caching the result.

    ``spec``: ``"english"``, ``"python"``, a local .txt/.jsonl/.json/.parquet file or folder, or
    ``"hf:NAME[:CONFIG]"`` (online only). ``tokenizer``: ``"bytes"`` or ``"bpe-<vocab>"``. ``heldout_tokens``:
    the minimum size of the held-out split, in tokens of this tokenizer (whole documents are taken, so it is
    slightly larger). A pretrained ``tokenizer`` (a tokenizer.json path or ``hf:NAME``) encodes through
    ``datasets.map`` with ``num_proc`` processes (default: one for small corpora, up to 8 from 20k documents).
    """
    pretrained = None
    if pretrained_tokenizer.is_pretrained(str(tokenizer)):
        pretrained = pretrained_tokenizer.resolve(str(tokenizer))
        vocab = pretrained.vocab_size
    else:
        vocab = parse_tokenizer(tokenizer)
    tokenizer = str(tokenizer).strip()
    if isinstance(heldout_tokens, bool) or not isinstance(heldout_tokens, (int, np.integer)) or heldout_tokens < 1:
        raise ScalingError(f"heldout_tokens={heldout_tokens!r}: expected a positive whole number")
    heldout_tokens = int(heldout_tokens)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    source = corpora.resolve(spec, hf_cache_dir=root / "hf-datasets")
    settings = {
        "format": FORMAT_VERSION,
        "source": source.content_hash,
        "tokenizer": tokenizer,
        "heldout_tokens": heldout_tokens,
        "max_piece_bytes": MAX_PIECE_BYTES,
        "separator": SEPARATOR,
    }
    if pretrained is not None:  # only then: the caches of bytes and BPE corpora keep their fingerprints
        settings["tokenizer_sha256"] = pretrained.content_hash
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = root / "corpora" / f"{_slug(source.name)}-{_slug(tokenizer)}-{fingerprint}"
    if not (folder / "meta.json").exists():  # a read-only cache that already holds the corpus is fine
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScalingError(f"cache folder {root}: cannot create it ({exc.strerror or exc})") from None
        if not os.access(folder.parent, os.W_OK):
            raise ScalingError(f"cache folder {root}: not writable (set SCALING_CACHE or pass cache_dir)")
        with FileLock(str(folder) + ".lock"):
            if not (folder / "meta.json").exists():  # another process may have built it while we waited
                _build(source, tokenizer, vocab, heldout_tokens, fingerprint, settings, folder, pretrained, num_proc)
    return _open(folder)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name if os.sep in name or "/" in name else name)[:40]


def _open(folder: Path) -> TokenizedCorpus:
    meta = json.loads((folder / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    train = np.memmap(folder / "train.bin", dtype=dtype, mode="r")
    heldout = np.memmap(folder / "heldout.bin", dtype=dtype, mode="r")
    if meta["tokenizer"] == "bytes":
        token_bytes = np.ones(256, dtype=np.int64)
    else:
        token_bytes = np.asarray(meta["token_bytes"], dtype=np.int64)
    return TokenizedCorpus(
        name=meta["name"],
        tokenizer=meta["tokenizer"],
        vocab_size=meta["vocab_size"],
        train=train,
        heldout=heldout,
        heldout_bytes=meta["heldout_bytes"],
        fingerprint=meta["fingerprint"],
        path=folder,
        token_bytes=token_bytes,
    )


def _documents(source: corpora.Source) -> list[str]:
    """Non-empty documents, those over MAX_PIECE_BYTES cut at line breaks into pieces."""
    pieces: list[str] = []
    for doc in source.read():
        doc = doc.strip()
        if not doc:
            continue
        if len(doc) * 4 <= MAX_PIECE_BYTES or len(doc.encode("utf-8")) <= MAX_PIECE_BYTES:
            pieces.append(doc)
            continue
        # Why: a corpus of a few huge files could not be split by whole documents, and one huge document would
        # swamp the held-out split. Neighbouring pieces of one document can land on both sides of the split.
        current: list[str] = []
        size = 0
        for line in doc.split("\n"):
            n = len(line.encode("utf-8")) + 1
            if current and size + n > MAX_PIECE_BYTES:
                pieces.append("\n".join(current).strip())
                current, size = [], 0
            current.append(line)
            size += n
        pieces.append("\n".join(current).strip())
    pieces = [p for p in pieces if p]
    if not pieces:
        raise ScalingError(f"corpus {source.name}: empty (no text in it)")
    return pieces


def _heldout_prefix(sizes: list[int], sep: int, hashes: list[str], target: int) -> int:
    """Length of the shortest prefix (in hash order) with >= target tokens, extended over equal hashes."""
    total = -sep
    for i, size in enumerate(sizes):
        total += size + sep
        if total >= target:
            k = i + 1
            while k < len(hashes) and hashes[k] == hashes[k - 1]:  # duplicates stay on one side
                k += 1
            return k
    return len(sizes)


def _build(
    source: corpora.Source,
    tokenizer: str,
    vocab: int,
    heldout_tokens: int,
    fingerprint: str,
    settings: dict,
    folder: Path,
    pretrained: pretrained_tokenizer.PretrainedTokenizer | None = None,
    num_proc: int | None = None,
) -> None:
    start = time.perf_counter()
    pieces = _documents(source)
    hashes = [hashlib.sha256(p.encode("utf-8")).hexdigest() for p in pieces]
    order = sorted(range(len(pieces)), key=lambda i: (hashes[i], i))
    pieces = [pieces[i] for i in order]
    hashes = [hashes[i] for i in order]
    byte_sizes = [len(p.encode("utf-8")) for p in pieces]
    total_bytes = sum(byte_sizes) + len(SEPARATOR) * (len(pieces) - 1)

    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta: dict = {}
        if tokenizer == "bytes":
            dtype = np.dtype(np.uint8)
            k = _heldout_prefix(byte_sizes, len(SEPARATOR), hashes, heldout_tokens)
            _check_size(source.name, tokenizer, heldout_tokens, k, len(pieces), sum(byte_sizes[:k]), total_bytes)
            heldout, train = _encode_bytes(pieces[:k]), _encode_bytes(pieces[k:])
            actual_vocab = 256
        elif pretrained is not None:
            dtype = np.dtype(np.uint16 if vocab <= 65536 else np.uint32)
            k, n_held, n_train = _encode_pretrained(
                source.name, tokenizer, pretrained, pieces, byte_sizes, hashes, heldout_tokens, total_bytes, dtype,
                tmp, num_proc,
            )
            shutil.copyfile(pretrained.path, tmp / "tokenizer.json")
            actual_vocab = vocab
            meta["token_bytes"] = pretrained_tokenizer.token_bytes(pretrained.tokenizer)
            meta["tokenizer_source"] = str(pretrained.path)
            heldout, train = np.empty(n_held, dtype=dtype), np.empty(n_train, dtype=dtype)  # sizes only: written
        else:
            dtype = np.dtype(np.uint16)
            tok, k, r, ids = _bpe_split(
                source.name, tokenizer, pieces, byte_sizes, hashes, vocab, heldout_tokens, total_bytes
            )
            meta["bpe_reserve_documents"] = r  # the tokenizer was trained on the documents after these
            tok.save(str(tmp / "tokenizer.json"))
            actual_vocab = tok.get_vocab_size()
            # With a byte-level BPE every character of a token's string stands for exactly one byte.
            meta["token_bytes"] = [len(tok.id_to_token(i)) for i in range(actual_vocab)]
            sep = tok.encode(SEPARATOR).ids
            heldout, train = _join(ids[:k], sep), _join(ids[k:], sep)

        if pretrained is None:  # the pretrained path streamed its tokens to the files already
            heldout.astype(dtype).tofile(tmp / "heldout.bin")
            train.astype(dtype).tofile(tmp / "train.bin")
        heldout_bytes = sum(byte_sizes[:k]) + len(SEPARATOR) * (k - 1)
        meta.update(
            name=source.name,
            tokenizer=tokenizer,
            vocab_size=actual_vocab,
            dtype=dtype.name,
            fingerprint=fingerprint,
            settings=settings,
            train_tokens=int(train.size),
            heldout_tokens=int(heldout.size),
            train_bytes=total_bytes - heldout_bytes - len(SEPARATOR),
            heldout_bytes=heldout_bytes,
            train_documents=len(pieces) - k,
            heldout_documents=k,
            heldout_sha256=hashes[:k],
            build_seconds=round(time.perf_counter() - start, 3),
        )
        # meta.json last: its presence marks a complete cache (the folder is renamed into place only after it).
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_size(name: str, tokenizer: str, wanted: int, k: int, n_pieces: int, held: int, total: int) -> None:
    # The held-out split may take at most half of the corpus: otherwise there is little left to train on, and a
    # corpus of one document cannot be split by documents at all.
    if k >= n_pieces or 2 * held > total:
        raise ScalingError(
            f"corpus {name}: too small for a held-out split of {wanted} {tokenizer} tokens "
            f"({total} bytes in {n_pieces} documents); lower heldout_tokens or use a larger corpus"
        )


def _encode_pretrained(name, tokenizer, pretrained, pieces, byte_sizes, hashes, heldout_tokens, total_bytes, dtype,
                       tmp: Path, num_proc: int | None) -> tuple[int, int, int]:
    """Encode the documents (hash order) with ``datasets.map`` and stream the held-out prefix and the train rest
    into ``heldout.bin`` / ``train.bin``, joined by the separator's tokens. Returns (k, held-out, train tokens)."""
    if num_proc is None:  # worker start-up costs more than it saves on a small corpus
        num_proc = min(8, os.cpu_count() or 1) if len(pieces) >= 20_000 else None
    encoded = pretrained_tokenizer.encode_dataset(pieces, pretrained.path, num_proc=num_proc)
    sep = np.asarray(pretrained.tokenizer.encode(SEPARATOR, add_special_tokens=False).ids, dtype=dtype)
    sizes = encoded["n"]
    k = _heldout_prefix(sizes, len(sep), hashes, heldout_tokens)
    _check_size(name, tokenizer, heldout_tokens, k, len(pieces), sum(byte_sizes[:k]), total_bytes)
    counts = [0, 0]
    with open(tmp / "heldout.bin", "wb") as held, open(tmp / "train.bin", "wb") as train:
        i = 0
        for batch in encoded.select_columns(["ids"]).iter(batch_size=1024):
            for ids in batch["ids"]:
                part, fh = (0, held) if i < k else (1, train)
                if i not in (0, k):  # a separator between documents of the same split
                    sep.tofile(fh)
                    counts[part] += sep.size
                np.asarray(ids, dtype=dtype).tofile(fh)
                counts[part] += len(ids)
                i += 1
    return k, counts[0], counts[1]


def _encode_bytes(pieces: list[str]) -> np.ndarray:
    return np.frombuffer(SEPARATOR.join(pieces).encode("utf-8"), dtype=np.uint8)


def _join(ids: list[list[int]], sep: list[int]) -> np.ndarray:
    # Pieces are encoded one by one and joined with the separator's own tokens, which decodes to exactly
    # SEPARATOR.join(pieces) (byte-level BPE is lossless).
    out: list[int] = []
    for i, piece in enumerate(ids):
        if i:
            out.extend(sep)
        out.extend(piece)
    return np.asarray(out, dtype=np.int64)


def train_bpe(texts: Sequence[str], vocab_size: int):
    """Train a byte-level BPE (Hugging Face ``tokenizers``) on some texts; lossless on any UTF-8 text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no unknown tokens, ever
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def _bpe_split(name, tokenizer, pieces, byte_sizes, hashes, vocab, heldout_tokens, total_bytes):
    """Train the BPE outside a reserve at the head of the hash order, then take the held-out from the reserve.

    Returns the tokenizer, the number of held-out pieces, the number of reserved pieces (the tokenizer was
    trained on the pieces after them) and every piece's token ids.
    """
    factor = BPE_RESERVE_FACTOR
    while True:
        reserve_bytes = min(factor * heldout_tokens, total_bytes // 2)
        r = _heldout_prefix(byte_sizes, len(SEPARATOR), hashes, reserve_bytes)
        if r >= len(pieces):
            _check_size(name, tokenizer, heldout_tokens, r, len(pieces), total_bytes, total_bytes)
        tok = train_bpe(pieces[r:], vocab)
        ids = [enc.ids for enc in tok.encode_batch(pieces)]  # parallel in `tokenizers`
        sizes = [len(x) for x in ids[:r]]
        sep_tokens = len(tok.encode(SEPARATOR).ids)
        k = _heldout_prefix(sizes, sep_tokens, hashes, heldout_tokens)
        if sum(sizes[:k]) + sep_tokens * (k - 1) >= heldout_tokens and k <= r:
            _check_size(name, tokenizer, heldout_tokens, k, len(pieces), sum(byte_sizes[:k]), total_bytes)
            return tok, k, r, ids
        if reserve_bytes >= total_bytes // 2:
            _check_size(name, tokenizer, heldout_tokens, len(pieces), len(pieces), total_bytes, total_bytes)
        factor *= 2  # more bytes per token than expected (a large vocabulary): retry with a larger reserve


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)
