"""Training data: shipped corpora, the token cache, the held-out split, samplers and their exact accounting."""

from __future__ import annotations

import json
import lzma
import multiprocessing
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from scaling.errors import ScalingError
from scaling.train import data
from scaling.train.corpora import ENGLISH_FILES, python_stdlib_files
from scaling.train.data import load_corpus
from scaling.train.sampling import TrainSampler, heldout_batches


def english_documents() -> list[str]:
    docs = []
    for name in ENGLISH_FILES:
        text = lzma.decompress(resources.files("scaling").joinpath("data", name).read_bytes()).decode()
        docs += [d.strip() for d in text.split("\n\n") if d.strip()]
    return docs


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def english(cache):
    return load_corpus("english", cache_dir=cache)


@pytest.fixture(scope="module")
def small_txt(tmp_path_factory) -> Path:
    """About 400 kB of real prose as a local text file (the first KJV chapters, blank-line separated)."""
    docs = english_documents()[:120]
    path = tmp_path_factory.mktemp("local") / "small.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


def lines(docs: list[str]) -> list[str]:
    return [line for doc in docs for line in doc.split("\n")]


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ScalingError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message
    return message


# ---- the shipped English corpus and the held-out split -----------------------------------------------------


def test_english_corpus_is_large_split_and_lossless(english):
    assert english.name == "english" and english.tokenizer == "bytes" and english.vocab_size == 256
    assert isinstance(english.train, np.memmap) and english.train.dtype == np.uint8
    assert len(english.train) > 10_000_000  # the issue asks for a few MB at least
    assert 200_000 <= len(english.heldout) < 300_000 and english.heldout_bytes == len(english.heldout)
    # Document level: the held-out text is whole documents (or 16 KiB pieces of long ones, cut at line breaks),
    # none of which occurs in the train text, and the two splits together hold exactly the corpus's lines.
    held = english.decode(english.heldout).split("\n\n")
    train = english.decode(english.train)
    assert len(held) >= 10
    assert sorted(lines(held) + lines(train.split("\n\n"))) == sorted(lines(english_documents()))
    for doc in held:
        assert doc not in train
    # Hash order spreads the held-out over both works rather than taking the end of one.
    assert any(d.startswith("Psalm ") for d in held) or any("Verse " in d for d in held)
    assert any(d.split("\n")[0].rsplit(" ", 1)[-1].isdigit() and "Verse " not in d for d in held)


def test_cache_is_reused_and_split_is_stable(english, cache, monkeypatch, tmp_path):
    def no_build(*args, **kwargs):
        raise AssertionError("re-tokenized a cached corpus")

    inode = os.stat(english.path / "train.bin").st_ino
    monkeypatch.setattr(data, "_build", no_build)
    again = load_corpus("english", cache_dir=cache)
    assert again.fingerprint == english.fingerprint and again.path == english.path
    assert os.stat(again.path / "train.bin").st_ino == inode
    monkeypatch.undo()
    # A fresh cache rebuilds the same split, token for token.
    fresh = load_corpus("english", cache_dir=tmp_path)
    assert fresh.fingerprint == english.fingerprint
    assert np.array_equal(fresh.heldout, english.heldout) and np.array_equal(fresh.train, english.train)
    # Another held-out size is another split, cached beside the first.
    bigger = load_corpus("english", heldout_tokens=400_000, cache_dir=tmp_path)
    assert bigger.fingerprint != english.fingerprint and len(bigger.heldout) >= 400_000
    assert np.array_equal(bigger.heldout[: len(fresh.heldout)], fresh.heldout)  # a longer prefix of one order


def _load_in_child(args):
    spec, cache_dir, log = args
    real_build = data._build

    def logged_build(*a, **k):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return real_build(*a, **k)

    data._build = logged_build
    corpus = load_corpus(spec, cache_dir=cache_dir)
    return corpus.fingerprint, int(corpus.train.sum()), len(corpus.heldout)


def test_two_processes_tokenize_once(small_txt, tmp_path):
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_load_in_child, [(str(small_txt), str(tmp_path / "c"), str(log))] * 2)
    assert results[0] == results[1]
    assert len(log.read_text().split()) == 1  # one process built, the other waited on the lock and reused it
    folders = list((tmp_path / "c" / "corpora").iterdir())
    assert [f for f in folders if f.name.startswith(".")] == []  # no temporary folder left behind
    assert len([f for f in folders if f.is_dir()]) == 1


def test_python_stdlib_corpus_excludes_tests(cache):
    files = python_stdlib_files()
    assert len(files) > 300 and files == python_stdlib_files()  # a fixed order
    assert not any({"test", "tests", "idle_test", "site-packages"} & set(p.parts) for p in files)
    assert sum(p.stat().st_size for p in files) <= 16 * 2**20
    py = load_corpus("python", cache_dir=cache)
    assert py.name == "python" and len(py.train) > 5_000_000 and len(py.heldout) >= 200_000
    assert "def " in py.decode(py.heldout[:20_000])


# ---- local files through HF datasets, and BPE --------------------------------------------------------------


def test_local_text_file_with_bpe_is_lossless_and_counts_bytes(small_txt, tmp_path):
    corpus = load_corpus(str(small_txt), tokenizer="bpe-512", heldout_tokens=5_000, cache_dir=tmp_path)
    assert corpus.tokenizer == "bpe-512" and corpus.vocab_size <= 512 and corpus.train.dtype == np.uint16
    assert corpus.name == str(small_txt) and len(corpus.heldout) >= 5_000
    held, train = corpus.decode(corpus.heldout), corpus.decode(corpus.train)
    docs = [d.strip() for d in small_txt.read_text().split("\n\n") if d.strip()]
    assert sorted(lines(held.split("\n\n") + train.split("\n\n"))) == sorted(lines(docs))
    assert corpus.heldout_bytes == len(held.encode()) == corpus.count_bytes(corpus.heldout)
    head = corpus.train[:1000]  # ASCII text: no token is cut inside a character, so the count is exact
    assert corpus.count_bytes(torch.from_numpy(head.astype(np.int64))) == len(corpus.decode(head).encode())
    assert len(train.encode()) / len(corpus.train) > 2  # BPE compresses
    # The tokenizer never saw the held-out text: it was trained on the train documents after the reserve, and
    # training a BPE on exactly those documents again gives the same vocabulary.
    meta = json.loads((corpus.path / "meta.json").read_text())
    k, r = meta["heldout_documents"], meta["bpe_reserve_documents"]
    assert k == len(held.split("\n\n")) and r > k
    retrained = data.train_bpe(train.split("\n\n")[r - k :], 512)
    assert retrained.get_vocab() == data._load_tokenizer(str(corpus.path / "tokenizer.json")).get_vocab()


def test_jsonl_and_parquet(tmp_path):
    docs = english_documents()[:80]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    parquet = tmp_path / "b.parquet"
    pd.DataFrame({"body": docs, "n": range(len(docs))}).to_parquet(parquet)
    a = load_corpus(str(jsonl), heldout_tokens=5_000, cache_dir=tmp_path / "c")
    b = load_corpus(str(parquet), heldout_tokens=5_000, cache_dir=tmp_path / "c")  # its only string column
    assert np.array_equal(a.heldout, b.heldout) and np.array_equal(a.train, b.train)
    assert a.fingerprint != b.fingerprint  # the source files differ even though their text is the same


# ---- the sampler --------------------------------------------------------------------------------------------


def test_batches_are_a_pure_function_of_seed_and_step(english):
    kw = {"context": 64, "batch_size": 8, "total_tokens": 64 * 8 * 50}
    a, b = TrainSampler(english, seed=1, **kw), TrainSampler(english, seed=1, **kw)
    later = a.batch(7)
    for step in range(7):
        a.batch(step)
    assert torch.equal(a.batch(7), later) and torch.equal(b.batch(7), later)
    assert later.shape == (8, 65) and later.dtype == torch.int64
    assert not torch.equal(TrainSampler(english, seed=2, **kw).batch(7), later)
    # Consecutive tokens of the corpus: a window is a real slice of the train split.
    idx = a.token_index(np.arange(7 * 8, 8 * 8))
    assert np.array_equal(np.diff(idx, axis=1), np.ones((8, 64), dtype=np.int64))
    assert torch.equal(later, torch.from_numpy(english.train[idx].astype(np.int64)))


@pytest.mark.parametrize("processes", [2, 4, 8])
def test_process_slices_make_up_the_global_batch(english, processes):
    sampler = TrainSampler(english, context=32, batch_size=8, seed=0, total_tokens=32 * 8 * 10)
    for step in (0, 3, 9):
        parts = [sampler.batch(step, p, processes) for p in range(processes)]
        assert all(p.shape == (8 // processes, 33) for p in parts)
        assert torch.equal(torch.cat(parts), sampler.batch(step))
    assert "divisible" in one_line_error(sampler.batch, 0, 0, 3)


def test_unique_tokens_epochs_are_exact(english):
    context, batch, U, epochs = 16, 8, 16 * 40, 5  # 40 windows, D = 5 U
    sampler = TrainSampler(english, context=context, batch_size=batch, seed=3, total_tokens=epochs * U,
                           unique_tokens=U)
    assert sampler.unique_tokens_used == U and sampler.steps == epochs * U // (context * batch)
    assert sampler.epochs() == epochs
    idx = sampler.token_index(np.arange(sampler.sequences))
    assert idx.min() >= 0 and idx.max() < U  # only the first U tokens are ever read
    targets = idx[:, 1:].ravel()
    assert np.array_equal(np.bincount(targets, minlength=U), np.full(U, epochs))  # each token a target 5 times
    # Each epoch is a permutation of the 40 windows, reshuffled from one epoch to the next.
    starts = idx[:, 0].reshape(epochs, 40)
    assert all(sorted(row) == list(range(0, U, context)) for row in starts)
    assert len({tuple(row) for row in starts}) == epochs
    acct = sampler.accounting()
    assert acct["tokens"] == epochs * U and acct["unique_tokens_drawn"] == epochs * U
    assert acct["distinct_tokens"] == U and acct["epochs"] == epochs and acct["repeated_tokens_drawn"] == 0
    two = sampler.accounting(10)  # 10 steps x 8 sequences x 16 tokens = 2 U
    assert two["epochs"] == 2 and two["distinct_tokens"] == U
    assert sampler.accounting(2)["distinct_tokens"] == 2 * 8 * 16  # first epoch: no window drawn twice yet
    # Nested subsets: a smaller U's pool is the head of a larger U's pool.
    bigger = TrainSampler(english, context=context, batch_size=batch, seed=3, total_tokens=epochs * U,
                          unique_tokens=4 * U)
    assert bigger.token_index(np.arange(bigger.sequences)).max() < 4 * U
    assert bigger.token_index(np.arange(bigger.sequences)).max() >= U


def test_repeated_subset_accounting_is_exact(english):
    context, batch, steps = 16, 8, 100  # n = 800 sequences, D = 12,800 tokens
    f, k = 0.25, 4  # f*D = 3,200 tokens from a subset of f*D/k = 800 tokens (50 windows) seen 4 times
    D = context * batch * steps
    sampler = TrainSampler(english, context=context, batch_size=batch, seed=0, total_tokens=D,
                           repeat_fraction=f, repeat_count=k)
    idx = sampler.token_index(np.arange(sampler.sequences))
    subset_tokens = int(f * D / k)
    in_subset = idx[:, 0] < subset_tokens
    assert np.all((idx < subset_tokens).all(axis=1) == in_subset)  # a sequence is wholly inside or outside
    assert in_subset.sum() * context == f * D
    subset_targets = idx[in_subset, 1:].ravel()
    assert np.array_equal(np.bincount(subset_targets, minlength=subset_tokens), np.full(subset_tokens, k))
    rest = idx[~in_subset]
    assert rest.min() >= subset_tokens  # the rest never touches the subset...
    assert len(np.unique(rest[:, 1:])) == rest[:, 1:].size  # ...and every one of its tokens is seen once
    # Interleaved: each quarter of the run draws a quarter of the repeated sequences.
    assert [int(q.sum()) for q in np.split(in_subset, 4)] == [50, 50, 50, 50]
    acct = sampler.accounting()
    assert acct["repeated_tokens_drawn"] == f * D and acct["repeated_subset_tokens"] == subset_tokens
    assert acct["repeat_passes"] == k and acct["repeat_fraction"] == f
    assert acct["unique_tokens_drawn"] == (1 - f) * D
    assert acct["distinct_tokens"] == subset_tokens + (1 - f) * D
    assert sampler.accounting(steps // 2)["repeated_tokens_drawn"] == f * D / 2


def test_repeated_subset_batches_are_the_windows_the_run_repeats(english):
    context, batch = 16, 8
    sampler = TrainSampler(english, context=context, batch_size=batch, seed=0, total_tokens=context * batch * 100,
                           repeat_fraction=0.25, repeat_count=4)
    idx = sampler.token_index(np.arange(sampler.sequences))
    trained = {tuple(row) for row in idx[idx[:, 0] < sampler.subset_windows * context]}
    scored = torch.cat(list(sampler.repeated_subset_batches(batch_size=7))).numpy()
    expected = {tuple(english.train[list(w)]) for w in trained}
    assert len(scored) == sampler.subset_windows == len(trained) == 50
    assert {tuple(row) for row in scored} == expected
    capped = torch.cat(list(sampler.repeated_subset_batches(batch_size=7, max_tokens=10 * context)))
    assert capped.shape == (10, context + 1)
    shares = [torch.cat(list(sampler.repeated_subset_batches(8, process_index=p, num_processes=3))) for p in range(3)]
    assert torch.equal(torch.cat(shares), torch.from_numpy(scored))
    plain = TrainSampler(english, context=context, batch_size=batch, seed=0, total_tokens=context * batch * 100)
    assert list(plain.repeated_subset_batches(batch_size=8)) == []

def test_heldout_batches_cover_each_token_once(english):
    context = 100
    batches = list(heldout_batches(english, context=context, batch_size=16))
    assert all(b.shape[1] == context + 1 and b.shape[0] <= 16 for b in batches)
    targets = torch.cat([b[:, 1:] for b in batches]).reshape(-1).numpy()
    n = (len(english.heldout) - 1) // context
    assert np.array_equal(targets, english.heldout[1 : n * context + 1])
    again = list(heldout_batches(english, context=context, batch_size=16))
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    capped = list(heldout_batches(english, context=context, batch_size=16, max_tokens=5_000))
    assert sum(b.shape[0] for b in capped) * context == 5_000
    shares = [list(heldout_batches(english, context=context, batch_size=16, max_tokens=5_000,
                                   process_index=p, num_processes=3)) for p in range(3)]
    assert torch.equal(torch.cat([b for share in shares for b in share]), torch.cat(capped))


# ---- bad input: one line each ------------------------------------------------------------------------------


def test_bad_corpus_specs(tmp_path, monkeypatch):
    assert "no such file" in one_line_error(load_corpus, str(tmp_path / "missing.txt"), cache_dir=tmp_path)
    assert "unknown" in one_line_error(load_corpus, "englsh", cache_dir=tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    assert "empty" in one_line_error(load_corpus, str(empty), cache_dir=tmp_path / "c")
    other = tmp_path / "notes.docx"
    other.write_text("x")
    assert "unsupported" in one_line_error(load_corpus, str(other), cache_dir=tmp_path)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.txt").write_text("a")
    (tmp_path / "mixed" / "b.jsonl").write_text('{"text": "b"}\n')
    assert "mixes" in one_line_error(load_corpus, str(tmp_path / "mixed"), cache_dir=tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "n": 2}\n')
    assert "no 'text' column" in one_line_error(load_corpus, str(bad), cache_dir=tmp_path / "c")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "unterminated\n')
    assert "broken.jsonl" in one_line_error(load_corpus, str(broken), cache_dir=tmp_path / "c")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert "offline" in one_line_error(load_corpus, "hf:wikitext:wikitext-2-raw-v1", cache_dir=tmp_path)


def test_bad_tokenizer_and_sizes(small_txt, english, tmp_path):
    assert "tokenizer wordpiece: no such file" in one_line_error(load_corpus, "english", tokenizer="wordpiece", cache_dir=tmp_path)
    junk = tmp_path / "tokenizer.json"
    junk.write_text("{not json")
    assert "not a tokenizers JSON file" in one_line_error(load_corpus, "english", tokenizer=str(junk), cache_dir=tmp_path)
    assert "between 257" in one_line_error(load_corpus, "english", tokenizer="bpe-100", cache_dir=tmp_path)
    assert "too small" in one_line_error(load_corpus, str(small_txt), heldout_tokens=300_000, cache_dir=tmp_path)
    assert "heldout_tokens" in one_line_error(load_corpus, "english", heldout_tokens=0, cache_dir=tmp_path)
    kw = {"context": 128, "batch_size": 32, "seed": 0}
    assert "larger than the train split" in one_line_error(
        TrainSampler, english, total_tokens=10**6, unique_tokens=len(english.train) + 1, **kw)
    assert "smaller than one batch" in one_line_error(TrainSampler, english, total_tokens=1000, **kw)
    assert "smaller than one sequence" in one_line_error(
        TrainSampler, english, total_tokens=128 * 32 * 10, repeat_fraction=0.01, repeat_count=10, **kw)
    assert "fewer than one sequence" in one_line_error(
        TrainSampler, english, total_tokens=10**6, unique_tokens=100, **kw)


# ---------------------------------------------------------------------------------------------------------
# Pretrained tokenizers, several files by a glob, cached hub datasets offline


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json of 600 entries, trained on Python source (not on the corpus it will encode),
    as a pretrained tokenizer is."""
    texts = [p.read_text(errors="replace") for p in python_stdlib_files()[:60]]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    data.train_bpe(texts, 600).save(str(path))
    return path


def test_pretrained_tokenizer_json_encodes_losslessly_through_datasets_map(small_txt, tokenizer_json, tmp_path):
    corpus = load_corpus(str(small_txt), tokenizer=str(tokenizer_json), heldout_tokens=20_000, cache_dir=tmp_path)
    assert corpus.vocab_size == 600 and corpus.tokenizer == str(tokenizer_json) and corpus.train.dtype == np.uint16
    docs = sorted((d.strip() for d in small_txt.read_text().split("\n\n") if d.strip()),
                  key=lambda d: __import__("hashlib").sha256(d.encode()).hexdigest())
    held_text = corpus.decode(corpus.heldout)
    assert held_text == "\n\n".join(docs[: held_text.count("\n\n") + 1])  # whole documents, in hash order
    assert corpus.count_bytes(corpus.heldout) == corpus.heldout_bytes == len(held_text.encode())  # byte-level: exact
    assert corpus.decode(corpus.train[:2000]) in "\n\n".join(docs)
    # two datasets.map workers give the same tokens, and the folder is another cache (as a folder name for the spec)
    two = load_corpus(str(small_txt), tokenizer=str(tokenizer_json.parent), heldout_tokens=20_000,
                      cache_dir=tmp_path / "two", num_proc=2)
    assert np.array_equal(two.train, corpus.train) and np.array_equal(two.heldout, corpus.heldout)
    # a pretrained tokenizer encodes every corpus with the same ids: transfer and scoring across corpora work
    from scaling.train.config import RunConfig
    from scaling.train.model import vocab_size_of

    assert vocab_size_of(RunConfig(n_layer=1, d_model=32, tokens=1e6, tokenizer=str(tokenizer_json))) == 600


def test_corpus_from_a_glob_of_several_files(tmp_path):
    docs = english_documents()[:90]
    for i in range(3):
        (tmp_path / f"shard-{i}.txt").write_text("\n\n".join(docs[30 * i: 30 * (i + 1)]))
    (tmp_path / "notes.md").write_text("not matched")
    corpus = load_corpus(str(tmp_path / "shard-*.txt"), heldout_tokens=20_000, cache_dir=tmp_path / "c")
    assert corpus.name == str(tmp_path / "shard-*.txt")
    whole = "\n\n".join(docs)
    assert len(corpus.train) + len(corpus.heldout) + 2 == len(whole.encode())  # all three files, one separator
    assert "matches no" in one_line_error(load_corpus, str(tmp_path / "none-*.txt"), cache_dir=tmp_path / "c")


def _hub_style_cache(root: Path, repo: str, texts: list[str]) -> None:
    """Put ``repo`` into a datasets cache the way an online ``load_dataset(repo)`` leaves it
    (``<ns>___<name>/default/0.0.0/<hash>/<name>-train.arrow`` + dataset_info.json), built here from a parquet file
    with datasets' own Parquet builder because the tests cannot reach the hub."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet

    root.mkdir(parents=True, exist_ok=True)
    src = root.parent / "src.parquet"
    pd.DataFrame({"text": texts}).to_parquet(src)
    ns, name = repo.split("/")
    Parquet(cache_dir=str(root), dataset_name=f"{ns}___{name}", hash="0123abcd",
            data_files=DataFilesDict.from_patterns({"train": [str(src)]})).download_and_prepare()
    built = next((root / f"{ns}___{name}").iterdir())
    folder = built.rename(built.parent / "default") / "0.0.0" / "0123abcd"
    info = json.loads((folder / "dataset_info.json").read_text())
    info.update(config_name="default", dataset_name=name)
    (folder / "dataset_info.json").write_text(json.dumps(info))
    (folder / f"{ns}___{name}-train.arrow").rename(folder / f"{name}-train.arrow")


def test_cached_hub_dataset_loads_offline(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants as hub_constants

    docs = english_documents()[:150]
    _hub_style_cache(tmp_path / "hf-datasets", "someone/tiny_prose", docs)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    corpus = load_corpus("hf:someone/tiny_prose", heldout_tokens=20_000, cache_dir=tmp_path)
    assert corpus.name == "hf:someone/tiny_prose"
    assert len(corpus.train) + len(corpus.heldout) + 2 == len("\n\n".join(docs).encode())
    message = one_line_error(load_corpus, "hf:someone/not_cached", cache_dir=tmp_path)
    assert "not in the local dataset cache" in message and "offline" in message


def test_hub_tokenizer_offline_and_not_cached_is_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    message = one_line_error(load_corpus, "english", tokenizer="hf:someone/no-such-model", cache_dir=tmp_path)
    assert "tokenizer hf:someone/no-such-model: could not get tokenizer.json" in message
