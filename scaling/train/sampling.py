"""Stateless batches over a tokenized corpus: the training sampler and the held-out windows.

    corpus = load_corpus("english")                       # scaling.train.data
    sampler = TrainSampler(corpus, context=128, batch_size=32, seed=0, total_tokens=4_000_000)
    x = sampler.batch(step)                               # LongTensor [32, 129]: inputs x[:, :-1], targets x[:, 1:]

Sampling. A training sequence is ``context + 1`` consecutive tokens and counts ``context`` tokens towards D (its
targets). The pool of tokens a run may draw from (the first ``unique_tokens`` of the train split, or all of it)
is cut into ``pool // context`` windows with stride ``context``; a window wraps around to the start of its pool
for its last token, so that every token of the pool is a target exactly once per epoch and no token outside
the pool is ever read. Global sequence ``g`` of the run (``g = step * batch_size + row``) maps to a window by a
pure function of ``(seed, g)``: epoch ``e`` is a seeded permutation of the windows, reshuffled every epoch. A
batch is therefore the same whatever was sampled before (exact resume) and process ``p`` of ``P`` takes rows
``[p*B/P, (p+1)*B/P)`` of the global batch (D is counted globally over processes).

Repetition (Hernandez et al. 2022): with ``repeat_fraction`` f and ``repeat_count`` k, a subset of
``S = round(f*n/k)`` windows (n = sequences in the run) is put aside; ``S*k`` of the run's sequences, spread
evenly through it, come from that subset (k passes, reshuffled each pass), the rest from the other windows,
which never overlap the subset.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from scaling.errors import ScalingError
from scaling.train.data import TokenizedCorpus


class TrainSampler:
    """Stateless batches for a run: ``batch(step)`` is a pure function of ``(seed, step)``.

    Hyper-parameters: ``context``, ``batch_size`` (global sequences per step), ``seed``, ``total_tokens`` (D),
    ``unique_tokens`` (U: train on the first U tokens of the train split, D/U epochs, Muennighoff et al. 2023),
    ``repeat_fraction`` f and ``repeat_count`` k (f*D tokens from a subset of f*D/k tokens seen k times,
    interleaved, Hernandez et al. 2022). D and U are rounded down to whole steps and whole sequences; the
    exact values are ``tokens`` and ``unique_tokens_used``.
    """

    def __init__(
        self,
        corpus: TokenizedCorpus,
        *,
        context: int,
        batch_size: int,
        seed: int,
        total_tokens: int,
        unique_tokens: int | None = None,
        repeat_fraction: float = 0.0,
        repeat_count: int = 1,
    ):
        for key, value in (("context", context), ("batch_size", batch_size), ("total_tokens", total_tokens)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ScalingError(f"{key}={value!r}: expected a positive whole number")
        if isinstance(repeat_count, bool) or not isinstance(repeat_count, (int, np.integer)) or repeat_count < 1:
            raise ScalingError(f"repeat_count={repeat_count!r}: expected a whole number >= 1")
        if not 0.0 <= float(repeat_fraction) <= 1.0:
            raise ScalingError(f"repeat_fraction={repeat_fraction!r}: expected a number between 0 and 1")
        self.corpus = corpus
        self.context, self.batch_size, self.seed = int(context), int(batch_size), int(seed)
        self.repeat_fraction, self.repeat_count = float(repeat_fraction), int(repeat_count)
        step_tokens = self.batch_size * self.context
        if total_tokens < step_tokens:
            raise ScalingError(
                f"tokens={total_tokens}: smaller than one batch (batch_size {batch_size} x context {context} = "
                f"{step_tokens} tokens)"
            )
        self.steps = int(total_tokens) // step_tokens
        self.tokens = self.steps * step_tokens  # D actually trained on
        self.sequences = self.steps * self.batch_size

        n_train = len(corpus.train)
        if unique_tokens is not None:
            if isinstance(unique_tokens, bool) or not isinstance(unique_tokens, (int, np.integer)) or unique_tokens < 1:
                raise ScalingError(f"unique_tokens={unique_tokens!r}: expected a positive whole number")
            if unique_tokens > n_train:
                raise ScalingError(
                    f"unique_tokens={unique_tokens}: larger than the train split of corpus {corpus.name} "
                    f"({n_train} {corpus.tokenizer} tokens)"
                )
            if self.repeat_fraction > 0:
                raise ScalingError("unique_tokens and repeat_fraction cannot be combined in one run; use one of them")
            pool = int(unique_tokens)
        else:
            pool = n_train
        windows = pool // self.context
        if windows < 1:
            raise ScalingError(
                f"unique_tokens={pool}: fewer than one sequence of context {self.context} tokens"
                if unique_tokens is not None
                else f"corpus {corpus.name}: train split ({n_train} tokens) is shorter than one sequence"
            )

        # Repeated subset: S windows seen k times, R = S*k of the run's sequences.
        subset = 0
        if self.repeat_fraction > 0:
            subset_tokens = self.repeat_fraction * self.tokens / self.repeat_count
            subset = round(self.repeat_fraction * self.sequences / self.repeat_count)
            if subset < 1:
                raise ScalingError(
                    f"repeat_fraction={repeat_fraction}, repeat_count={repeat_count}: the repeated subset "
                    f"({subset_tokens:.0f} tokens) is smaller than one sequence of {self.context} tokens"
                )
            if subset >= windows:
                raise ScalingError(
                    f"repeat_fraction={repeat_fraction}, repeat_count={repeat_count}: the repeated subset "
                    f"({subset * self.context} tokens) does not fit in the train split of corpus {corpus.name} "
                    f"({windows * self.context} tokens usable)"
                )
        self.subset_windows = subset
        self.repeated_sequences = min(subset * self.repeat_count, self.sequences)
        self.unique_windows = windows - subset
        self.unique_tokens_used = windows * self.context  # tokens the run can draw from, subset included
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    # -- public API -------------------------------------------------------------------------------------------

    def epochs(self, tokens: int | None = None) -> float:
        """Passes over the pool of ``unique_tokens_used`` tokens after ``tokens`` (default: the whole run)."""
        return (self.tokens if tokens is None else tokens) / self.unique_tokens_used

    def batch(self, step: int, process_index: int = 0, num_processes: int = 1) -> torch.Tensor:
        """This process's rows of the global batch of ``step``: LongTensor [batch_size/num_processes, context+1]."""
        if num_processes < 1 or self.batch_size % num_processes:
            raise ScalingError(f"batch_size={self.batch_size}: not divisible by {num_processes} processes")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"process_index {process_index} out of range for {num_processes} processes")
        if step < 0:
            raise ValueError(f"step {step} < 0")
        local = self.batch_size // num_processes
        first = step * self.batch_size + process_index * local
        index = self.token_index(np.arange(first, first + local, dtype=np.int64))
        return torch.from_numpy(self.corpus.train[index].astype(np.int64))

    def token_index(self, sequences: np.ndarray) -> np.ndarray:
        """Positions in ``corpus.train`` of global sequences ``g``: int64 array [len(g), context+1]."""
        g = np.asarray(sequences, dtype=np.int64)
        offsets = np.arange(self.context + 1, dtype=np.int64)
        out = np.empty((g.size, self.context + 1), dtype=np.int64)
        if self.repeated_sequences:
            repeated_before = self._repeated_before(g)
            is_repeated = self._repeated_before(g + 1) > repeated_before
        else:
            repeated_before = np.zeros_like(g)
            is_repeated = np.zeros(g.shape, dtype=bool)
        if is_repeated.any():
            out[is_repeated] = self._pool_index(1, 0, self.subset_windows, repeated_before[is_repeated], offsets)
        unique = ~is_repeated
        if unique.any():
            u = g[unique] - repeated_before[unique]
            out[unique] = self._pool_index(0, self.subset_windows, self.unique_windows, u, offsets)
        return out

    def repeated_subset_batches(
        self, batch_size: int, max_tokens: int | None = None, process_index: int = 0, num_processes: int = 1
    ) -> Iterator[torch.Tensor]:
        """The repeated subset's windows, as the run trains on them: LongTensors [<=batch_size, context+1].

        Scoring them gives the loss on the repeated data, which falls towards 0 as a model memorises it (the
        diagnostic Hernandez et al. 2022 tie to the damage). Nothing without a repeated subset. ``max_tokens`` keeps
        the first ``max_tokens // context`` windows (at least one); processes get contiguous shares, as in
        :func:`heldout_batches`.
        """
        if not self.subset_windows:
            return
        n = self.subset_windows if max_tokens is None else min(self.subset_windows, max(1, int(max_tokens) // self.context))
        share = np.array_split(np.arange(n, dtype=np.int64), num_processes)[process_index]
        offsets = np.arange(self.context + 1, dtype=np.int64)
        pool = self.subset_windows * self.context  # circular within the subset, as _pool_index reads it
        for start in range(0, share.size, batch_size):
            windows = share[start : start + batch_size]
            index = (windows[:, None] * self.context + offsets[None, :]) % pool
            yield torch.from_numpy(self.corpus.train[index].astype(np.int64))

    def accounting(self, steps: int | None = None) -> dict:
        """Exact token accounting after ``steps`` optimizer steps (default: the whole run)."""
        steps = self.steps if steps is None else int(steps)
        n = steps * self.batch_size
        repeated = int(self._repeated_before(np.array([n]))[0]) if self.repeated_sequences else 0
        unique = n - repeated
        c = self.context
        return {
            "steps": steps,
            "sequences": n,
            "tokens": n * c,
            "pool_tokens": self.unique_tokens_used,
            "unique_pool_tokens": self.unique_windows * c,
            "unique_tokens_drawn": unique * c,
            "repeated_subset_tokens": self.subset_windows * c,
            "repeated_tokens_drawn": repeated * c,
            "distinct_tokens": (min(unique, self.unique_windows) + min(repeated, self.subset_windows)) * c,
            "epochs": n * c / self.unique_tokens_used,
            "unique_epochs": unique / self.unique_windows,
            "repeat_passes": repeated / self.subset_windows if self.subset_windows else 0.0,
            "repeat_fraction": repeated / n if n else 0.0,
        }

    # -- internals ----------------------------------------------------------------------------------------------

    def _repeated_before(self, g: np.ndarray) -> np.ndarray:
        # Number of repeated sequences among global sequences [0, g): floor(g * R / n), which spreads the R repeated
        # sequences evenly over the n sequences of the run. Python ints: g * R can exceed int64 for huge runs.
        r, n = self.repeated_sequences, self.sequences
        return np.array([int(x) * r // n for x in g.tolist()], dtype=np.int64)

    def _pool_index(self, tag: int, first_window: int, windows: int, i: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        epoch, position = np.divmod(i, windows)
        window = np.empty_like(i)
        for e in np.unique(epoch).tolist():
            sel = epoch == e
            window[sel] = self._permutation(tag, e, windows)[position[sel]]
        # Circular within the pool: the last window reads the pool's first token as its last target.
        local = (window[:, None] * self.context + offsets[None, :]) % (windows * self.context)
        return first_window * self.context + local

    def _permutation(self, tag: int, epoch: int, windows: int) -> np.ndarray:
        key = (tag, epoch)
        perm = self._perms.get(key)
        if perm is None:
            if len(self._perms) >= 4:  # a batch touches at most two epochs of each pool
                self._perms.pop(next(iter(self._perms)))
            perm = np.random.default_rng([self.seed, tag, epoch]).permutation(windows)
            self._perms[key] = perm
        return perm


def heldout_batches(
    corpus: TokenizedCorpus,
    *,
    context: int,
    batch_size: int,
    max_tokens: int | None = None,
    process_index: int = 0,
    num_processes: int = 1,
) -> Iterator[torch.Tensor]:
    """Non-overlapping windows over ``corpus.heldout``, deterministic: LongTensors [<=batch_size, context+1].

    Window i is tokens ``[i*context, i*context + context + 1)``, so every held-out token after the first is a
    target exactly once. ``max_tokens`` keeps the first ``max_tokens // context`` windows (at least one).
    Process ``p`` of ``P`` gets a contiguous share of the windows; the shares together are all of them.
    """
    n_windows = (len(corpus.heldout) - 1) // context
    if n_windows < 1:
        raise ScalingError(
            f"corpus {corpus.name}: held-out split ({len(corpus.heldout)} tokens) is shorter than one window of "
            f"context {context} + 1"
        )
    if max_tokens is not None:
        n_windows = min(n_windows, max(1, int(max_tokens) // context))
    share = np.array_split(np.arange(n_windows, dtype=np.int64), num_processes)[process_index]
    offsets = np.arange(context + 1, dtype=np.int64)
    for start in range(0, share.size, batch_size):
        windows = share[start : start + batch_size]
        yield torch.from_numpy(corpus.heldout[windows[:, None] * context + offsets[None, :]].astype(np.int64))
