"""The training loop: one run config in, rows of results.csv out.

``run(config, results)`` trains one model with Hugging Face ``accelerate`` (one process, several CPU processes
over gloo, one or several GPUs: whatever ``accelerate launch`` set up) and appends one row per evaluation.

Order of work, so that bad input never costs a training run and a crash never costs a finished one:

1. validate the config, check that ``results`` can take this trainer's rows, compute the run id;
2. if ``results`` already holds the run's final row: do nothing (re-running a finished run is a no-op);
3. load the corpora, the source run of a transfer, the shape and the sampler (every user error is raised here,
   before anything is written);
4. train, evaluating at log-spaced steps; checkpoints (model, optimizer, RNG, step, running sums) go to
   ``out_dir/run_id/`` atomically; an interrupted run resumes from the last one and skips rows it already wrote;
5. save the final weights (``out_dir/run_id/final/``, Hugging Face format), write the final row, drop the
   resume checkpoints.

Schedules and the step plan: :mod:`scaling.train.schedule`; progress bar and signals: :mod:`scaling.train.progress`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import scaling
from scaling.errors import ScalingError
from scaling.results import append_rows, check_writable, read_header
from scaling.train import metrics, model as model_lib, record
from scaling.train import trackers as tracker_lib
from scaling.train.config import RunConfig, eval_column, run_id as compute_run_id, validate_config
from scaling.train.data import TrainSampler, heldout_batches, load_corpus
from scaling.train.progress import Progress, install_sigterm, restore_sigterm
from scaling.train.schedule import lr_multiplier, make_plan  # noqa: F401  (lr_multiplier: importable from here too)

HELDOUT_TOKENS = 200_000  # the held-out split of every corpus (data.load_corpus default); grows with eval_tokens


# ---------------------------------------------------------------------------------------------------------
# Result of a call


@dataclass
class Outcome:
    """What :func:`train` did: the rows it wrote and whether the run is now finished."""

    run_id: str
    rows: list[dict] = field(default_factory=list)
    finished: bool = False
    skipped: bool = False  # already finished before this call
    stopped_at: int | None = None  # stop_after_steps or SIGTERM stopped it at this step
    run_dir: Path | None = None


def run(config: RunConfig | Mapping, results: str | os.PathLike = "results.csv") -> list[dict]:
    """Train one run and append its rows to ``results``; returns the rows this call wrote ([] if already done)."""
    return train(config, results).rows


# ---------------------------------------------------------------------------------------------------------
# Transfer: the source run of init_from


@dataclass(frozen=True)
class Source:
    run_dir: Path
    info: dict  # the source's run.json

    @property
    def weights(self) -> Path:
        return self.run_dir / "final" / "model.safetensors"


def resolve_source(init_from: str) -> Source:
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
    return Source(path, info)


def _check_compatible(config: RunConfig, source: Source, shape: model_lib.ModelShape, tokenizer: str, corpus_name: str) -> None:
    src = source.info  # the tokenizer names were compared before the corpus was loaded
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


# ---------------------------------------------------------------------------------------------------------
# The run


def train(config: RunConfig | Mapping, results: str | os.PathLike = "results.csv", *, console=None) -> Outcome:
    """Like :func:`run`, returning an :class:`Outcome` (rows, finished, stopped)."""
    cfg = validate_config(config)
    results = Path(results)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    eval_columns = [eval_column(spec) for spec in cfg.eval_corpora]
    header = record.header_for(eval_columns, read_header(results) if results.is_file() else None)
    left_out = check_writable(results, header)
    if left_out:
        _say(console, f"note: {results} predates the column(s) {', '.join(left_out)}; its new rows leave them out "
                      "(a new --results file records them)")
    rid = compute_run_id(cfg)
    existing = record.rows_of_run(results, rid)
    if record.is_finished(existing):
        _say(console, f"run {rid} ({cfg.name}) is already finished in {results}: nothing to do")
        return Outcome(rid, finished=True, skipped=True)

    # ---- everything a user can get wrong, before anything is written
    tokenizer = tokenizer_spec(cfg)
    heldout_tokens = max(HELDOUT_TOKENS, cfg.eval_tokens + 1)
    source = resolve_source(cfg.init_from) if cfg.init_from else None
    if source is not None and source.info["tokenizer"] != tokenizer:  # before a tokenizer is trained for nothing
        raise ScalingError(
            f"init_from {source.run_dir}: incompatible tokenizer ({source.info['tokenizer']} there, {tokenizer} here)"
        )
    corpus = load_corpus(cfg.corpus, tokenizer=tokenizer, heldout_tokens=heldout_tokens)
    target_spec = cfg.target_corpus or cfg.corpus
    if target_spec != cfg.corpus:
        if tokenizer.startswith("bpe-"):
            raise ScalingError(
                f"target_corpus {target_spec}: a BPE is trained per corpus, so token ids of {cfg.corpus} and "
                f"{target_spec} differ; use tokenizer: bytes to score another corpus"
            )
        target = load_corpus(target_spec, tokenizer=tokenizer, heldout_tokens=heldout_tokens)
    else:
        target = corpus
    eval_sets = []  # (column, corpus) scored besides the target at every evaluation
    for spec, column in zip(cfg.eval_corpora, eval_columns):
        if spec == target_spec:
            eval_sets.append((column, target))
            continue
        if tokenizer.startswith("bpe-") and spec != cfg.corpus:
            raise ScalingError(
                f"eval_corpora {spec}: a BPE is trained per corpus, so token ids of {cfg.corpus} and {spec} differ; "
                "use tokenizer: bytes to score other corpora"
            )
        eval_sets.append((column, corpus if spec == cfg.corpus else
                          load_corpus(spec, tokenizer=tokenizer, heldout_tokens=heldout_tokens)))
    if source is not None:
        src_shape = source.info["shape"]
        if cfg.n_layer is None and cfg.target_N is None:
            shape = model_lib.ModelShape(**{**src_shape, "context": cfg.context})
        else:
            shape = model_lib.resolve_shape(cfg, corpus.vocab_size)
        _check_compatible(cfg, source, shape, tokenizer, corpus.name)
    else:
        shape = model_lib.resolve_shape(cfg, corpus.vocab_size)
    plan = make_plan(cfg)
    sampler = TrainSampler(
        corpus,
        context=cfg.context,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        total_tokens=cfg.tokens_trained,
        unique_tokens=cfg.unique_tokens,
        repeat_fraction=cfg.repeat_fraction,
        repeat_count=cfg.repeat_count,
    )
    assert sampler.steps == plan.steps, (sampler.steps, plan.steps)
    trackers = tracker_lib.resolve([*cfg.trackers, *([cfg.log_with] if cfg.log_with else [])])
    trainer = _Trainer(cfg, rid, results, existing, corpus, target, source, shape, plan, sampler, console, trackers)
    trainer.header, trainer.eval_sets = header, eval_sets
    return trainer.fit()


def tokenizer_spec(cfg: RunConfig) -> str:
    """The data layer's tokenizer: ``bytes``, ``bpe-<bpe_vocab>``, or the pretrained one as written."""
    return {"bytes": "bytes", "bpe": f"bpe-{cfg.bpe_vocab}"}.get(cfg.tokenizer, cfg.tokenizer)


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message, markup=False, highlight=False)  # "[branch 1]" is text, not rich markup


class _Trainer:
    header: list[str] = record.HEADER  # set by train(): plus the eval_corpora columns
    eval_sets: list = []  # set by train(): (column, corpus) pairs scored besides the target

    def __init__(self, cfg, rid, results, existing, corpus, target, source, shape, plan, sampler, console, trackers=()):
        from accelerate import Accelerator, PartialState
        from accelerate.utils import is_compiled_module, set_seed

        self.cfg, self.rid, self.results = cfg, rid, results
        self.corpus, self.target, self.source = corpus, target, source
        self.shape, self.plan, self.sampler = shape, plan, sampler
        self.done_keys = {record.row_key(r) for r in existing}
        self.trackers = list(trackers)  # validated accelerate tracker names

        # accelerate picks gloo over CPU processes only when told cpu=True; without it, `accelerate launch
        # --multi_gpu` on a machine without GPUs starts independent single processes that all write rows.
        cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
        state = PartialState(cpu=cpu)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)  # a multi-CPU PartialState sets its own thread count
        shards = state.num_processes * cfg.grad_accum_steps
        if cfg.batch_size % shards:
            raise ScalingError(f"batch_size {cfg.batch_size} is not divisible by {state.num_processes} process(es) x "
                               f"grad_accum_steps {cfg.grad_accum_steps}")
        set_seed(cfg.seed)  # python, numpy, torch (and CUDA) RNGs; the weights draw from their own seeded fork
        self.model = model_lib.build_model(shape, seed=cfg.seed)
        self.counts = model_lib.count(self.model, shape)
        if source is not None:
            self._load_source_weights()
        self.run_dir = Path(cfg.out_dir) / rid
        self.acc = Accelerator(
            cpu=cpu,
            mixed_precision=_wanted_precision(cfg, self.counts.N, state.device),
            gradient_accumulation_steps=cfg.grad_accum_steps,
            log_with=self.trackers or None,
            project_dir=str(self.run_dir),
        )
        # What accelerate actually does (a launch config or a DeepSpeed config may decide it): the recorded value.
        self.precision = {"no": "fp32"}.get(self.acc.mixed_precision, self.acc.mixed_precision)
        peak = cfg.peak_flops or metrics.matmul_peak(
            self.acc.device, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)
        )
        self.peak = peak * self.acc.num_processes  # MFU is against all devices' peak together
        self.console = console if self.acc.is_main_process else None
        self.lr = cfg.lr if cfg.lr is not None else _kaplan_lr(self.counts.N)
        self.optimizer = _adamw(self.model, self.lr, cfg)
        self.model, self.optimizer = self.acc.prepare(self.model, self.optimizer)
        if cfg.compile and not is_compiled_module(self.model):
            # After prepare, as accelerate's own dynamo_backend does (a launch config may already have compiled it).
            self.model = torch.compile(self.model)
        self.rows: list[dict] = []
        self.stop_requested = False

    # ------------------------------------------------------------------ setup helpers
    def _load_source_weights(self) -> None:
        from safetensors.torch import load_file

        state = load_file(str(self.source.weights))
        own = self.model.state_dict()
        # A tensor shared by several names (a tied LM head) is saved under one of them: fill in the others.
        shared: dict[int, list[str]] = {}
        for name, tensor in own.items():
            shared.setdefault(tensor.data_ptr(), []).append(name)
        for names in shared.values():
            saved = next((n for n in names if n in state), None)
            for name in names:
                if saved is not None and name not in state:
                    state[name] = state[saved]
        if self.shape.model_type == "gpt2" and "transformer.wpe.weight" in state:
            # learned positions: a shorter context uses the first rows (a longer one was refused earlier)
            state["transformer.wpe.weight"] = state["transformer.wpe.weight"][: self.shape.context]
        bad = [k for k in own if k in state and state[k].shape != own[k].shape]
        missing = [k for k in own if k not in state and not k.endswith("rotary_emb.inv_freq")]
        if bad or missing:
            what = f"{bad[0]} has shape {tuple(state[bad[0]].shape)} there" if bad else f"{missing[0]} is missing there"
            raise ScalingError(f"init_from {self.source.run_dir}: incompatible weights ({what})")
        self.model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)

    def info(self) -> dict:
        """The run description written to out_dir/run_id/run.json (what a fine-tune needs to know)."""
        return {
            "run_id": self.rid,
            "name": self.cfg.name,
            "config": self.cfg.model_dump(mode="json"),
            "corpus": self.corpus.name,
            "corpus_fingerprint": self.corpus.fingerprint,
            "target": self.target.name,
            "tokenizer": self.corpus.tokenizer,
            "shape": self.shape.as_dict(),
            "counts": self.counts.as_dict(),
            "D": self.cfg.tokens_trained,
            "D_pretrain": self.source.info["D"] + self.source.info.get("D_pretrain", 0) if self.source else 0,
            "source": self.source.info["corpus"] if self.source else None,
            "lr": self.lr,
            "precision": self.precision,
            # how it ran (not part of the run id): accelerate's distributed type, processes, micro-batches
            "distributed_type": str(self.acc.distributed_type.value),
            "num_processes": self.acc.num_processes,
            "grad_accum_steps": self.cfg.grad_accum_steps,
            "scaling_version": scaling.__version__,
        }

    # ------------------------------------------------------------------ main loop
    def fit(self) -> Outcome:
        from filelock import FileLock, Timeout

        acc = self.acc
        # One trainer per run id at a time: two would both write its rows and its checkpoints.
        lock = FileLock(str(self.run_dir / ".lock"), timeout=0)
        busy = False
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire()
            except Timeout:
                busy = True
        if self._agree(busy, 0):
            acc.end_training()
            raise ScalingError(f"run {self.rid} is being trained by another process right now ({self.run_dir}/.lock)")
        try:
            return self._fit()
        finally:
            if lock.is_locked:
                lock.release()

    def _fit(self) -> Outcome:
        acc, cfg, plan = self.acc, self.cfg, self.plan
        out = Outcome(self.rid, run_dir=self.run_dir)
        if acc.is_main_process:
            _write_json(self.run_dir / "run.json", self.info())
        acc.wait_for_everyone()
        if self.trackers:
            acc.init_trackers(self.rid, config=tracker_lib.loggable_config(cfg.model_dump(mode="json")))

        t = _State()
        ckpt = _latest_checkpoint(self.run_dir)
        if ckpt is not None:
            acc.load_state(str(ckpt))
            t = _State(**json.loads((ckpt / "trainer_state.json").read_text()))
            if not acc.is_main_process:  # the saved loss sums are global: one process carries them
                t.loss_sum = t.branch_loss_sum = 0.0
                t.loss_count = t.branch_loss_count = 0
            _say(self.console, f"run {self.rid}: resuming from step {t.step} ({ckpt})")
        else:
            _say(self.console, f"run {self.rid} ({cfg.name}): {self._describe()}")

        every_steps, every_s = cfg.checkpoint_interval()
        branch_at = {}
        for i, budget, end in plan.branches:
            branch_at.setdefault(plan.branch_start(end), []).append((i, budget, end))
        last_ckpt_time, last_ckpt_step = time.perf_counter(), t.step
        ckpt_step = t.step if ckpt is not None else None  # the step of the newest checkpoint on disk
        progress = Progress(self.console, plan.steps, t.step, self.counts.flops_per_token, self.peak, cfg.batch_tokens)
        old_handler = install_sigterm(self)
        self.wall_base, self.wall_start = t.wall_s, time.perf_counter()
        try:
            with progress:
                while True:
                    # Branch points come before the step at which their cooldown begins.
                    for i, budget, end in branch_at.get(t.step, []):
                        if (str(i), str(end)) in self.done_keys:
                            continue
                        if ckpt_step != t.step:  # a crash inside the branch resumes from its fork point
                            self._save_checkpoint(t)
                            last_ckpt_time, last_ckpt_step, ckpt_step = time.perf_counter(), t.step, t.step
                        self._branch(t, i, budget, end, progress)
                    if t.step >= plan.steps:
                        break
                    self._train_step(t, plan.multiplier(t.step, cfg), main=True)
                    progress.update(t.step, t.train_tokens, t.train_s)
                    if cfg.stop_after_steps is not None and t.step >= cfg.stop_after_steps and t.step < plan.steps:
                        # Testing: behave like a crash right after this step (no checkpoint, no further rows).
                        out.stopped_at = t.step
                        break
                    if t.step == plan.steps:
                        self._save_final()  # weights first: a finished row must always have its weights
                    if t.step in plan.eval_steps:
                        self._evaluate_and_record(t, branch=0, step=t.step, budget=cfg.tokens, final=t.step == plan.steps)
                    # Step counts are the same in every process; clocks and signals are agreed on (_agree).
                    due = every_steps is not None and t.step - last_ckpt_step >= every_steps
                    due_elsewhere = self._agree(
                        self.stop_requested or (every_s is not None and time.perf_counter() - last_ckpt_time >= every_s),
                        t.step,
                    )
                    if t.step < plan.steps and (due or due_elsewhere):
                        self._save_checkpoint(t)
                        last_ckpt_time, last_ckpt_step, ckpt_step = time.perf_counter(), t.step, t.step
                        if self.stop_requested:
                            out.stopped_at = t.step
                            break
                progress.finish(t.step, t.train_tokens, t.train_s)
        finally:
            restore_sigterm(old_handler)
        out.rows = self.rows
        if out.stopped_at is None:
            self._drop_checkpoints()
            out.finished = True
        acc.end_training()
        return out

    def _describe(self) -> str:
        c, s = self.counts, self.shape
        return (
            f"{s.model_type} n_layer={s.n_layer} d_model={s.d_model} n_head={s.n_head} d_ff={s.d_ff} | "
            f"N={c.N:,} N_total={c.N_total:,} | D={self.cfg.tokens_trained:,} tokens in {self.plan.steps} steps of "
            f"{self.cfg.batch_tokens} | lr={self.lr:.3g} {self.cfg.schedule} | {self.precision} | "
            f"{self.acc.num_processes} process(es) on {self.acc.device}"
        )

    def _train_step(self, t: _State, multiplier: float, *, main: bool) -> None:
        acc, cfg = self.acc, self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * multiplier
        start = time.perf_counter()
        batch = self.sampler.batch(t.step, acc.process_index, acc.num_processes)
        total = torch.zeros((), device=acc.device)
        # grad_accum_steps equal micro-batches (batch_size was checked divisible): accelerate divides each loss
        # by their number, skips the gradient all-reduce and the optimizer step until the last one.
        for micro in batch.chunk(cfg.grad_accum_steps):
            with acc.accumulate(self.model):
                micro = micro.to(acc.device, non_blocking=True)
                logits = self.model(input_ids=micro[:, :-1]).logits
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), micro[:, 1:].reshape(-1))
                acc.backward(loss)
                if cfg.grad_clip and acc.sync_gradients:
                    acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
        # .item() waits for the device; on CPU there is nothing to wait for, on a GPU once per step is cheap at
        # these sizes compared with keeping a running tensor and explaining it.
        value = float(total.item()) / cfg.grad_accum_steps
        t.step += 1
        t.train_tokens += cfg.batch_tokens
        t.train_s += time.perf_counter() - start
        if main:
            t.loss_sum += value
            t.loss_count += 1
        else:
            t.branch_loss_sum += value
            t.branch_loss_count += 1

    def _branch(self, t: _State, index: int, budget: int, end: int, progress) -> None:
        """Cool down from the current (stable-phase) state to step ``end``, record a final row, restore.

        The fork state is the checkpoint that fit() wrote at this step; it is restored with ``load_state``, which
        works for sharded (FSDP, DeepSpeed) models and optimizers, where copying state dicts in memory does not.
        """
        fork = _latest_checkpoint(self.run_dir)
        assert fork is not None and json.loads((fork / "trainer_state.json").read_text())["step"] == t.step
        saved = (t.step, t.loss_sum, t.loss_count)
        # train_loss of the branch's row: the steps since the last evaluation, as for any row (those before the
        # fork were shared with the main run)
        t.branch_loss_sum, t.branch_loss_count = t.loss_sum, t.loss_count
        while t.step < end:
            self._train_step(t, self.plan.multiplier(t.step, self.cfg, end=end), main=False)
            progress.update(None, t.train_tokens, t.train_s)
        self._evaluate_and_record(t, branch=index, step=end, budget=budget, final=True)
        self.acc.load_state(str(fork))
        t.step, t.loss_sum, t.loss_count = saved

    def _agree(self, flag: bool, step: int) -> bool:
        """One decision for all processes (time-based checkpoints would otherwise differ between processes)."""
        if self.acc.num_processes == 1:
            return flag
        if step % 16:  # decide every 16 steps only: a collective per step costs more than these steps do
            return False
        value = torch.tensor([1.0 if flag else 0.0], device=self.acc.device)
        return bool(self.acc.reduce(value, "sum").item() > 0)

    # ------------------------------------------------------------------ evaluation and rows
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Held-out metrics (loss, ECE, Brier, bits per byte) and, for a run with a repeated subset, the loss on it."""
        acc, cfg = self.acc, self.cfg
        local_batch = max(1, cfg.batch_size // acc.num_processes)
        shard = {"process_index": acc.process_index, "num_processes": acc.num_processes}
        heldout = heldout_batches(self.target, context=cfg.context, batch_size=local_batch, max_tokens=cfg.eval_tokens, **shard)
        stats, n_bytes = self._score(heldout, count_bytes=True)
        out = stats.result()
        out["bits_per_byte"] = metrics.bits_per_byte(out["loss"], out["count"], n_bytes)
        if self.sampler.subset_windows:  # what the model has memorised: this loss falls towards 0
            subset = self.sampler.repeated_subset_batches(local_batch, max_tokens=cfg.eval_tokens, **shard)
            out["repeated_loss"] = self._score(subset)[0].result()["loss"]
        for column, corpus in self.eval_sets:  # eval_corpora: the same loss on other held-out corpora
            if corpus is self.target:
                out[column] = out["loss"]
                continue
            batches = heldout_batches(corpus, context=cfg.context, batch_size=local_batch, max_tokens=cfg.eval_tokens, **shard)
            out[column] = self._score(batches)[0].result()["loss"]
        return out

    def _score(self, batches, *, count_bytes: bool = False) -> tuple[metrics.NextTokenStats, float]:
        """Next-token statistics of the model over ``batches``, summed over processes, and the bytes they cover."""
        acc, model = self.acc, self.model
        model.eval()
        stats = metrics.NextTokenStats(self.cfg.ece_bins, device=acc.device)
        n_bytes = 0
        batches = list(batches)
        # Through the prepared model: FSDP gathers its shards in forward (and DDP syncs buffers), collectives
        # that every process must join; the shares may differ by a batch, so the shorter ones repeat their last
        # batch (its statistics are not counted).
        n = len(batches)
        most = int(acc.gather(torch.tensor([n], device=acc.device)).max().item()) if acc.num_processes > 1 else n
        with acc.autocast():
            for i in range(most):
                batch = batches[min(i, n - 1)] if n else None
                if batch is None:  # no share at all (fewer windows than processes): any one window will do
                    batch = next(heldout_batches(self.target, context=self.cfg.context, batch_size=1, max_tokens=1))
                if count_bytes and i < n:
                    n_bytes += self.target.count_bytes(batch[:, 1:])
                batch = batch.to(acc.device)
                logits = model(input_ids=batch[:, :-1]).logits
                if i < n:
                    stats.update(logits, batch[:, 1:])
        model.train()
        total = torch.cat([stats.state, torch.tensor([float(n_bytes)], dtype=torch.float64, device=acc.device)])
        if acc.num_processes > 1:
            total = acc.reduce(total, "sum")
        stats.state = total[:-1]
        return stats, float(total[-1].item())

    def _evaluate_and_record(self, t: _State, *, branch: int, step: int, budget: int, final: bool) -> None:
        key = (str(branch), str(step))
        if key in self.done_keys:  # written before an interruption: the replayed steps give the same row
            if branch == 0:
                t.loss_sum, t.loss_count = 0.0, 0
            return
        m = self.evaluate()
        total, count = self._sum_over_processes(
            (t.loss_sum, t.loss_count) if branch == 0 else (t.branch_loss_sum, t.branch_loss_count)
        )
        train_loss = total / count if count else float("nan")
        if branch == 0:
            t.loss_sum, t.loss_count = 0.0, 0
        row = self._row(t, m, branch=branch, step=step, budget=budget, final=final, train_loss=train_loss)
        if self.acc.is_main_process:
            append_rows(self.results, [row], self.header)
            _say(
                self.console,
                f"step {step:>6} D={row['D']:>10,} loss={m['loss']:.4f} bpb={m['bits_per_byte']:.4f} "
                f"train={train_loss:.4f} ece={m['ece']:.4f}" + (f" [branch {branch}]" if branch else "") + (" final" if final else ""),
            )
            if self.trackers:
                self.acc.log({"eval/loss": m["loss"], "eval/bits_per_byte": m["bits_per_byte"], "eval/ece": m["ece"],
                              "train/loss": train_loss}, step=row["D"])
        self.done_keys.add(key)
        self.rows.append(row)

    def _row(self, t: _State, m: dict, *, branch: int, step: int, budget: int, final: bool, train_loss: float) -> dict:
        cfg, c, s = self.cfg, self.counts, self.shape
        D = step * cfg.batch_tokens
        acct = self.sampler.accounting(step)
        U = acct["distinct_tokens"]
        tokens_per_s = t.train_tokens / t.train_s if t.train_s > 0 else float("nan")
        self._tick(t)
        return {
            "N": c.N,
            "D": D,
            "loss": m["loss"],
            "N_total": c.N_total,
            "C": 6.0 * c.N * D,
            "U": U,
            "epochs": D / U,
            "D_F": D if self.source is not None else None,
            "ece": m["ece"],
            "run_id": self.rid,
            "step": step,
            "final": int(final),
            "seed": cfg.seed,
            "C_exact": c.flops_per_token * D,
            "name": cfg.name,
            "tokens": budget,
            "repeat_fraction": cfg.repeat_fraction,
            "repeat_count": cfg.repeat_count,
            "source": self.source.info["corpus"] if self.source else None,
            "target": self.target.name,
            "D_pretrain": (self.source.info["D"] + self.source.info.get("D_pretrain", 0)) if self.source else None,
            "lr": self.lr,
            "batch_tokens": cfg.batch_tokens,
            "context": cfg.context,
            "n_layer": s.n_layer,
            "d_model": s.d_model,
            "n_head": s.n_head,
            "d_ff": s.d_ff,
            "vocab_size": s.vocab_size,
            "tokenizer": self.corpus.tokenizer,
            "corpus": self.corpus.name,
            "bits_per_byte": m["bits_per_byte"],
            "train_loss": train_loss,
            "brier": m["brier"],
            "ece_bins": cfg.ece_bins,
            "ece_count": m["count"],
            "eval_tokens": m["count"],
            "schedule": cfg.schedule,
            "branch": branch,
            "precision": self.precision,
            "wall_s": round(t.wall_s, 3),
            "tokens_per_s": round(tokens_per_s, 1),
            "mfu": round(c.flops_per_token * tokens_per_s / self.peak, 4) if self.peak else None,
            "scaling_version": scaling.__version__,
            "repeated_loss": m.get("repeated_loss"),
            **{column: m[column] for column, _ in self.eval_sets},
        }

    def _sum_over_processes(self, values: tuple) -> tuple:
        if self.acc.num_processes == 1:
            return tuple(values)
        summed = self.acc.reduce(torch.tensor(values, dtype=torch.float64, device=self.acc.device), "sum")
        return tuple(summed.tolist())

    def _tick(self, t: _State) -> None:
        """wall_s: seconds of this call plus those of earlier calls (restored from the checkpoint)."""
        t.wall_s = self.wall_base + time.perf_counter() - self.wall_start

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, t: _State) -> None:
        """model + optimizer + RNG (accelerate.save_state) + step and running sums, renamed into place."""
        acc = self.acc
        _quiet_tied_weights_warning()
        self._tick(t)
        # The loss sums of all processes go into the checkpoint (process 0 carries them afterwards).
        sums = self._sum_over_processes((t.loss_sum, t.loss_count, t.branch_loss_sum, t.branch_loss_count))
        if acc.is_main_process:
            t.loss_sum, t.loss_count, t.branch_loss_sum, t.branch_loss_count = sums[0], int(sums[1]), sums[2], int(sums[3])
        else:
            t.loss_sum = t.branch_loss_sum = 0.0
            t.loss_count = t.branch_loss_count = 0
        tmp = self.run_dir / f".ckpt-{t.step:09d}.tmp"
        final = self.run_dir / f"ckpt-{t.step:09d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        if acc.is_main_process:
            _write_json(tmp / "trainer_state.json", t.as_dict())
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _write_text(self.run_dir / "latest", final.name)
            for old in self.run_dir.glob("ckpt-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _save_final(self) -> None:
        """Final weights in Hugging Face format (``from_pretrained``-loadable), renamed into place."""
        acc = self.acc
        acc.wait_for_everyone()
        # Every process: under FSDP / DeepSpeed ZeRO-3 this gathers the full weights (a collective).
        state_dict = acc.get_state_dict(self.model)
        if acc.is_main_process:
            import inspect

            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Writing model shards" bars are noise for a few-MB model
            tmp = self.run_dir / ".final.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model = acc.unwrap_model(self.model)
            # transformers 4.x takes save_function (accelerate's save knows TPU and process rules); 5.x writes
            # safetensors itself and no longer has the argument.
            extra = {"save_function": acc.save} if "save_function" in inspect.signature(model.save_pretrained).parameters else {}
            model.save_pretrained(str(tmp), state_dict=state_dict, is_main_process=True, **extra)
            shutil.rmtree(self.run_dir / "final", ignore_errors=True)
            os.replace(tmp, self.run_dir / "final")
        acc.wait_for_everyone()

    def _drop_checkpoints(self) -> None:
        """The run is finished: resume checkpoints are no longer needed (final/ stays)."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            for old in self.run_dir.glob("ckpt-*"):
                shutil.rmtree(old, ignore_errors=True)
            (self.run_dir / "latest").unlink(missing_ok=True)


@dataclass
class _State:
    """What a checkpoint adds to model/optimizer/RNG: the step and the running sums of the rows."""

    step: int = 0
    train_tokens: int = 0  # tokens trained in this run so far, branches included
    train_s: float = 0.0  # seconds in training steps (for tokens_per_s)
    wall_s: float = 0.0  # seconds in everything (training, evaluation, checkpoints)
    loss_sum: float = 0.0  # training loss since the last evaluation (main trajectory)
    loss_count: int = 0
    branch_loss_sum: float = 0.0
    branch_loss_count: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _TiedWeightsFilter(logging.Filter):
    """accelerate warns that the tied LM head is "removed" when saving with safetensors; it is tied to the
    embedding and restored from it on load (resume is tested to be bit-exact), so the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()


def _quiet_tied_weights_warning() -> None:
    log = logging.getLogger("accelerate.utils.other")
    if not any(isinstance(f, _TiedWeightsFilter) for f in log.filters):
        log.addFilter(_TiedWeightsFilter())


def _latest_checkpoint(run_dir: Path) -> Path | None:
    latest = run_dir / "latest"
    if not latest.is_file():
        return None
    path = run_dir / latest.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def _write_json(path: Path, data: dict) -> None:
    _write_text(path, json.dumps(data, indent=1))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# Optimizer, precision, learning rate


def _adamw(model: torch.nn.Module, lr: float, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (nanoGPT): norms and biases are not decayed."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas))


def _kaplan_lr(N: int) -> float:
    from scaling.laws.kaplan import kaplan_learning_rate

    return float(kaplan_learning_rate(N))


BF16_MIN_N = 1e6  # measured (docs/training.md): bf16 autocast pays off from about 1e6 parameters, and only where bf16 is fast
BF16_MIN_GAIN = 1.5  # measured bf16 matmul peak must beat fp32 by this factor


def _wanted_precision(cfg: RunConfig, N: int, device: torch.device) -> str | None:
    """``mixed_precision`` for the Accelerator: None lets accelerate decide (the user's ``accelerate config`` or
    launch flags, a DeepSpeed config); "bf16" or "no" where the run config, or auto on a plain ``python`` start,
    decides. accelerate keeps one precision per process: a second in-process run that needs another is refused."""
    from accelerate.state import AcceleratorState, is_initialized

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # set by `accelerate launch` from its config/flags
    if cfg.precision == "auto" and launched is not None:
        wanted = None
    elif cfg.precision == "auto":
        wanted = "bf16" if _auto_bf16(N, device) else "no"
    else:
        wanted = {"fp32": "no"}.get(cfg.precision, cfg.precision)
    if wanted is not None and is_initialized():
        current = AcceleratorState().mixed_precision
        if current != wanted:
            raise ScalingError(
                f"precision {cfg.precision}: this Python process already trained a run with mixed precision "
                f"{current!r}, and accelerate fixes it once per process; train this run in a fresh process "
                "(python trainers/train.py ..., as sweeps do)"
            )
    return wanted


def _auto_bf16(N: int, device: torch.device) -> bool:
    """auto: bf16 on a GPU that supports it; on a CPU only from BF16_MIN_N and where a bf16 matmul is measured
    BF16_MIN_GAIN times faster than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu" and N >= BF16_MIN_N:
        return metrics.matmul_peak(device, torch.bfloat16) >= BF16_MIN_GAIN * metrics.matmul_peak(device, torch.float32)
    return False
