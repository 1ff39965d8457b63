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

This module is the loop itself, meant to be read in one sitting (as nanoGPT's train.py): :func:`train` checks
and loads everything, ``_Trainer._fit`` is the loop over the steps. Its side responsibilities live next to it:
the schedule and step plan (:mod:`scaling.train.schedule`), the source run of a fine-tune
(:mod:`scaling.train.source_run`), evaluation (:mod:`scaling.train.evaluation`), the rows it writes
(:mod:`scaling.train.record`), checkpoints and resume (:mod:`scaling.train.checkpoint`), mixed precision
(:mod:`scaling.train.precision`), the progress bar and SIGTERM (:mod:`scaling.train.progress`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import scaling
from scaling.errors import ScalingError
from scaling.results import append_rows, check_writable, read_header
from scaling.train import checkpoint, metrics, model as model_lib, record
from scaling.train import trackers as tracker_lib
from scaling.train.checkpoint import TrainState
from scaling.train.config import RunConfig, eval_column, run_id as compute_run_id, validate_config
from scaling.train.data import load_corpus
from scaling.train.evaluation import Evaluator
from scaling.train.precision import wanted_precision
from scaling.train.progress import Progress, install_sigterm, restore_sigterm
from scaling.train.sampling import TrainSampler
from scaling.train.schedule import make_plan
from scaling.train.source_run import check_compatible, load_source_weights, resolve_source

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
        check_compatible(source, shape, tokenizer, corpus.name)
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
    trainer = _Trainer(cfg, rid, results, existing, corpus, target, source, shape, plan, sampler, console, trackers,
                       header=header, eval_sets=eval_sets)
    return trainer.fit()


def tokenizer_spec(cfg: RunConfig) -> str:
    """The data layer's tokenizer: ``bytes``, ``bpe-<bpe_vocab>``, or the pretrained one as written."""
    return {"bytes": "bytes", "bpe": f"bpe-{cfg.bpe_vocab}"}.get(cfg.tokenizer, cfg.tokenizer)


def _say(console, message: str) -> None:
    if console is not None:
        console.print(message, markup=False, highlight=False)  # "[branch 1]" is text, not rich markup


class _Trainer:
    """One run on the processes accelerate set up: the model, the optimizer and the loop over its steps.

    ``header``: the columns of ``results`` (record.HEADER plus the eval_corpora columns); ``eval_sets``: the
    (column, corpus) pairs scored besides the target at every evaluation.
    """

    def __init__(self, cfg, rid, results, existing, corpus, target, source, shape, plan, sampler, console, trackers=(),
                 *, header: list[str] = record.HEADER, eval_sets: list = ()):
        from accelerate import Accelerator, PartialState
        from accelerate.utils import is_compiled_module, set_seed

        self.cfg, self.rid, self.results = cfg, rid, results
        self.corpus, self.target, self.source = corpus, target, source
        self.shape, self.plan, self.sampler = shape, plan, sampler
        self.header, self.eval_sets = header, list(eval_sets)
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
            load_source_weights(self.model, source, shape)
        self.run_dir = Path(cfg.out_dir) / rid
        self.acc = Accelerator(
            cpu=cpu,
            mixed_precision=wanted_precision(cfg, self.counts.N, state.device),
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
        self.evaluate = Evaluator(self.acc, cfg, target, sampler, self.eval_sets)
        self.result_rows = record.ResultRows(
            run_id=rid, config=cfg, counts=self.counts, shape=shape, corpus=corpus, target=target,
            source_info=source.info if source is not None else None, lr=self.lr, precision=self.precision,
            peak=self.peak, eval_columns=[column for column, _ in self.eval_sets],
        )
        if cfg.compile and not is_compiled_module(self.model):
            # After prepare, as accelerate's own dynamo_backend does (a launch config may already have compiled it).
            self.model = torch.compile(self.model)
        self.rows: list[dict] = []
        self.stop_requested = False

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
            checkpoint.write_json(self.run_dir / "run.json", self.info())
        acc.wait_for_everyone()
        if self.trackers:
            acc.init_trackers(self.rid, config=tracker_lib.loggable_config(cfg.model_dump(mode="json")))

        t = TrainState()
        ckpt = checkpoint.latest_checkpoint(self.run_dir)
        if ckpt is not None:
            t = checkpoint.resume(acc, ckpt)
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
                    if t.step == plan.steps:  # weights first: a finished row must always have its weights
                        checkpoint.save_final_weights(acc, self.model, self.run_dir)
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
            checkpoint.drop_checkpoints(acc, self.run_dir)
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

    def _train_step(self, t: TrainState, multiplier: float, *, main: bool) -> None:
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

    def _branch(self, t: TrainState, index: int, budget: int, end: int, progress) -> None:
        """Cool down from the current (stable-phase) state to step ``end``, record a final row, restore.

        The fork state is the checkpoint that fit() wrote at this step; it is restored with ``load_state``, which
        works for sharded (FSDP, DeepSpeed) models and optimizers, where copying state dicts in memory does not.
        """
        fork = checkpoint.latest_checkpoint(self.run_dir)
        assert fork is not None and checkpoint.read_state(fork).step == t.step
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
    def _evaluate_and_record(self, t: TrainState, *, branch: int, step: int, budget: int, final: bool) -> None:
        key = (str(branch), str(step))
        if key in self.done_keys:  # written before an interruption: the replayed steps give the same row
            if branch == 0:
                t.loss_sum, t.loss_count = 0.0, 0
            return
        m = self.evaluate(self.model)
        total, count = self._sum_over_processes(
            (t.loss_sum, t.loss_count) if branch == 0 else (t.branch_loss_sum, t.branch_loss_count)
        )
        train_loss = total / count if count else float("nan")
        if branch == 0:
            t.loss_sum, t.loss_count = 0.0, 0
        tokens_per_s = t.train_tokens / t.train_s if t.train_s > 0 else float("nan")
        self._tick(t)
        row = self.result_rows.row(m, branch=branch, step=step, budget=budget, final=final, train_loss=train_loss,
                               distinct_tokens=self.sampler.accounting(step)["distinct_tokens"], wall_s=t.wall_s,
                               tokens_per_s=tokens_per_s)
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

    def _sum_over_processes(self, values: tuple) -> tuple:
        if self.acc.num_processes == 1:
            return tuple(values)
        summed = self.acc.reduce(torch.tensor(values, dtype=torch.float64, device=self.acc.device), "sum")
        return tuple(summed.tolist())

    def _tick(self, t: TrainState) -> None:
        """wall_s: seconds of this call plus those of earlier calls (restored from the checkpoint)."""
        t.wall_s = self.wall_base + time.perf_counter() - self.wall_start

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, t: TrainState) -> None:
        """A resume checkpoint at this step; the loss sums of all processes go into it (process 0 carries them)."""
        self._tick(t)
        sums = self._sum_over_processes((t.loss_sum, t.loss_count, t.branch_loss_sum, t.branch_loss_count))
        if self.acc.is_main_process:
            t.loss_sum, t.loss_count, t.branch_loss_sum, t.branch_loss_count = sums[0], int(sums[1]), sums[2], int(sums[3])
        else:
            t.drop_loss_sums()
        checkpoint.save_checkpoint(self.acc, self.run_dir, t)


# ---------------------------------------------------------------------------------------------------------
# Optimizer and learning rate


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
