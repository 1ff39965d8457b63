"""Where training text comes from: a corpus spec -> a list of documents and a hash of their source.

Four kinds of spec (``load_corpus`` in :mod:`scaling.train.data` turns the documents into cached tokens):

- ``"english"``: public-domain English prose shipped xz-compressed in ``scaling/data/`` (provenance in
  ``scaling/data/README.md``): the King James Bible, one document per chapter, and C. H. Spurgeon's "The
  Treasury of David" (psalms 1-107), one document per psalm; 1,190 documents, 11.57 MB of UTF-8 text.
- ``"python"``: this interpreter's standard library source (``*.py`` under ``sysconfig``'s stdlib path, test
  folders and site-packages excluded, sorted paths, capped at 16 MB), one document per file.
- a local ``.txt`` / ``.jsonl`` / ``.json`` / ``.parquet`` file, a folder of such files, or a glob pattern
  (``data/shard-*.jsonl``, ``books/**/*.txt``) matching several, read through Hugging Face ``datasets``: for text
  files a document is a blank-line separated paragraph, for json/parquet a row's ``text`` column (or its only
  string column).
- ``"hf:NAME"`` or ``"hf:NAME:CONFIG"``: the ``train`` split of a hub dataset: downloaded when online; in offline
  mode (``HF_HUB_OFFLINE``) the copy a previous online load left in the cache (this toolkit's
  ``$SCALING_CACHE/hf-datasets``, then the default ``datasets`` cache).

The two built-in corpora are read directly (``lzma`` / plain file reads) rather than through ``datasets``: both
are a handful of files with a fixed layout, and a ``datasets`` arrow cache would only add a second copy.

``content_hash`` is computed without tokenizing (from the file bytes, or the hub dataset's fingerprint), so a
cached corpus is found again without reading its text twice.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import lzma
import os
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scaling.errors import ScalingError

# Shipped English prose in scaling/data/ (built by scaling/data/make_english.py); documents separated by "\n\n".
ENGLISH_FILES = ("kjv.txt.xz", "tdavid.txt.xz")
PYTHON_CAP_BYTES = 16 * 2**20
# Folders of the standard library that are not "the library": its own tests, installed third-party packages.
PYTHON_EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "lib-dynload"}
)
LOCAL_FORMATS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class Source:
    """A corpus before tokenization: its name, a hash of its content, and how to read its documents."""

    name: str
    content_hash: str
    read: Callable[[], list[str]]


def resolve(spec: str, *, hf_cache_dir: Path) -> Source:
    """Turn a corpus spec into a :class:`Source`; bad specs raise a one-line :class:`ScalingError`."""
    if not isinstance(spec, str) or not spec.strip():
        raise ScalingError(f"corpus {spec!r}: expected 'english', 'python', a file or folder, or 'hf:NAME'")
    spec = spec.strip()
    if spec == "english":
        return _english()
    if spec == "python":
        return _python_stdlib()
    if spec.startswith("hf:"):
        return _hub(spec, hf_cache_dir)
    if glob.has_magic(spec):
        return _glob(spec, hf_cache_dir)
    path = Path(spec).expanduser()
    if path.exists():
        return _local(path, hf_cache_dir)
    if path.suffix or os.sep in spec or "/" in spec:
        raise ScalingError(f"corpus file {spec}: no such file or folder")
    raise ScalingError(
        f"corpus {spec!r}: unknown; expected 'english', 'python', an existing .txt/.jsonl/.json/.parquet file or "
        "folder, or 'hf:NAME[:CONFIG]'"
    )


# --- shipped English --------------------------------------------------------------------------------------------


def _english() -> Source:
    blobs = [resources.files("scaling").joinpath("data", name).read_bytes() for name in ENGLISH_FILES]
    digest = hashlib.sha256()
    for name, blob in zip(ENGLISH_FILES, blobs):
        digest.update(name.encode() + b"\0" + hashlib.sha256(blob).digest())

    def read() -> list[str]:
        docs: list[str] = []
        for blob in blobs:
            # One blank line between documents (a KJV chapter, a Treasury of David psalm); none inside them.
            docs.extend(lzma.decompress(blob).decode("utf-8").split("\n\n"))
        return docs

    return Source("english", digest.hexdigest(), read)


# --- Python standard library ------------------------------------------------------------------------------------


def python_stdlib_files(root: str | Path | None = None, cap_bytes: int = PYTHON_CAP_BYTES) -> list[Path]:
    """The ``*.py`` files of the standard library in sorted path order, tests excluded, up to ``cap_bytes``."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    total = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in PYTHON_EXCLUDED_DIRS)  # sorted in place: walk order is fixed
        for name in sorted(names):
            if not name.endswith(".py"):
                continue
            path = Path(folder) / name
            size = path.stat().st_size
            if total + size > cap_bytes:
                return files
            files.append(path)
            total += size
    return files


def _python_stdlib() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    digest = hashlib.sha256()
    docs: list[str] = []
    for path in python_stdlib_files(root):
        blob = path.read_bytes()
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError:  # a few stdlib files in some distributions are latin-1; leave them out
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + hashlib.sha256(blob).digest())
        docs.append(text)
    if not docs:
        raise ScalingError(f"corpus 'python': no .py files found under {root}")
    return Source("python", digest.hexdigest(), lambda: docs)


# --- local files through HF datasets ----------------------------------------------------------------------------


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if _suffix(path) not in LOCAL_FORMATS:
            raise ScalingError(f"corpus file {path}: unsupported type; expected one of {', '.join(LOCAL_FORMATS)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in LOCAL_FORMATS)
    if not files:
        raise ScalingError(f"corpus folder {path}: no {'/'.join(LOCAL_FORMATS)} files in it")
    kinds = {LOCAL_FORMATS[_suffix(p)] for p in files}
    if len(kinds) > 1:
        raise ScalingError(f"corpus folder {path}: mixes {' and '.join(sorted(kinds))} files; use one format")
    return files


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _glob(pattern: str, hf_cache_dir: Path) -> Source:
    """Several files by a glob pattern (``**`` recurses); sorted, so the document order never depends on the disk."""
    files = sorted(Path(f) for f in glob.glob(str(Path(pattern).expanduser()), recursive=True) if Path(f).is_file())
    files = [f for f in files if _suffix(f) in LOCAL_FORMATS]
    if not files:
        raise ScalingError(f"corpus {pattern}: the pattern matches no {'/'.join(LOCAL_FORMATS)} file")
    kinds = {LOCAL_FORMATS[_suffix(p)] for p in files}
    if len(kinds) > 1:
        raise ScalingError(f"corpus {pattern}: matches {' and '.join(sorted(kinds))} files; use one format")
    return _local(Path(pattern), hf_cache_dir, files)


def _local(path: Path, hf_cache_dir: Path, files: list[Path] | None = None) -> Source:
    matched = files is not None  # a glob: the files by the paths it matched
    files = files if matched else _local_files(path)
    digest = hashlib.sha256()
    for file in files:
        where = file if matched else (file.relative_to(path) if path.is_dir() else file.name)
        digest.update(str(where).encode() + b"\0")
        file_digest = hashlib.sha256()
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                file_digest.update(chunk)
        digest.update(file_digest.digest())
    builder = LOCAL_FORMATS[_suffix(files[0])]

    def read() -> list[str]:
        import datasets

        # A blank line separates documents in text files (datasets' sample_by="paragraph"), so that the held-out
        # split takes whole paragraphs rather than cutting lines at random.
        kwargs = {"sample_by": "paragraph"} if builder == "text" else {}
        try:
            with _hub_offline():
                ds = datasets.load_dataset(
                    builder,
                    data_files=[str(f) for f in files],
                    split="train",
                    cache_dir=str(hf_cache_dir),
                    **kwargs,
                )
        except ScalingError:
            raise
        except Exception as exc:  # datasets raises many types for malformed files; the user needs one line
            raise ScalingError(f"corpus {path}: could not read it as {builder} ({_first_line(exc)})") from None
        return _text_column(ds, str(path))

    return Source(str(path), digest.hexdigest(), read)


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Run a local ``load_dataset`` with the hub switched off.

    ``load_dataset`` sends a download-counter request to the hub even for local files unless offline mode is
    on, and the environment variables are read once at import time, so the flags are set on the modules for
    the duration of the call and restored afterwards (a later ``hf:`` load still sees the user's setting).
    """
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _text_column(ds, where: str) -> list[str]:
    columns = list(ds.column_names)
    if "text" in columns:
        column = "text"
    else:
        strings = [c for c in columns if getattr(ds.features[c], "dtype", None) in ("string", "large_string")]
        if len(strings) != 1:
            raise ScalingError(f"corpus {where}: no 'text' column (columns: {', '.join(columns) or 'none'})")
        column = strings[0]
    return [t for t in ds[column] if isinstance(t, str)]


# --- hub ----------------------------------------------------------------------------------------------------------


def _hub(spec: str, hf_cache_dir: Path) -> Source:
    import datasets

    name, _, config = spec[len("hf:") :].partition(":")
    if not name:
        raise ScalingError(f"corpus {spec!r}: expected hf:NAME or hf:NAME:CONFIG")
    offline = bool(datasets.config.HF_HUB_OFFLINE)
    # Offline, datasets serves the copy a previous online load left in a cache: ours first, then the default one
    # (where a user's own load_dataset put it).
    caches = [str(hf_cache_dir), None] if offline else [str(hf_cache_dir)]
    for cache in caches:
        try:
            ds = datasets.load_dataset(name, config or None, split="train", cache_dir=cache)
            break
        except Exception as exc:  # network, missing dataset, gated dataset, not cached...: one line for the user
            error = exc
    else:
        if offline:
            raise ScalingError(
                f"corpus {spec}: not in the local dataset cache ({hf_cache_dir} or datasets' default cache) and "
                "offline mode is on (HF_HUB_OFFLINE); load it once online, or use a local file"
            ) from None
        raise ScalingError(f"corpus {spec}: could not load it from the hub ({_first_line(error)})") from None
    # The arrow fingerprint identifies the prepared dataset (name, config, revision, processing).
    return Source(spec, hashlib.sha256(ds._fingerprint.encode()).hexdigest(), lambda: _text_column(ds, spec))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
