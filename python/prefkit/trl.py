"""TRL integration: ``prefkit.trl.DPOTrainer``, TRL's DPO trainer on prefkit's fused loss.

:class:`DPOTrainer` is a subclass of ``trl.DPOTrainer`` (trl 1.x, matched against 1.16) that
takes the same ``trl.DPOConfig`` and datasets, and changes three things:

- **the loss**: the policy runs its decoder only; :class:`prefkit.losses.FusedLinearPreferenceLoss`
  takes the last hidden states and the LM head weight, so no ``[tokens, vocab]`` logits exist
  beyond one bounded block, and each pair's gradient is formed as soon as its loss is known
  (three GEMMs). Every ``loss_type`` TRL and prefkit share, ``loss_weights``, ``beta``,
  ``label_smoothing``, ``discopop_tau`` and ``ld_alpha`` follow TRL's definitions; the options
  prefkit does not implement raise a :class:`prefkit.PrefkitError` naming them. prefkit's
  soft-preference kinds ``sppo`` and ``soft_sigmoid`` are loss types too: they read a per-pair
  ``target`` column (and ``rejected_target`` for ``sppo``) of the dataset;
- **the reference**: a dataset with ``ref_chosen_logps`` / ``ref_rejected_logps`` columns (from
  ``pk.reference_logps``) is used as is: no reference model is loaded or run. Datasets already
  tokenised by ``pk.tokenize_pairs`` (``prompt_ids``, ``chosen_ids``, ``rejected_ids``) are not
  tokenised again, so those log-probs stay aligned with the tokens trained on;
- **padding-free batches**: ``padding_free=True`` (which trl 1.16 ignores, falling back to
  padding) packs each batch with ``pk.PairCollator(packed=True)``: one row in which every pair's
  prompt appears once, its two completions continuing the prompt's positions behind a boolean
  4-d attention mask (SDPA or eager attention).

It logs the metrics TRL logs, under the same names. See docs/trl.md for the options table.

``import prefkit`` does not import this module; ``import prefkit.trl`` imports trl and torch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import trl
from accelerate.utils import is_peft_model
from transformers.data.data_collator import DataCollatorMixin
from trl.trainer.utils import use_adapter

from prefkit._errors import PrefkitError
from prefkit.collate import PairCollator
from prefkit.losses import FusedLinearPreferenceLoss, sequence_logps
from prefkit.losses.logps import labelled_tokens
from prefkit.losses.preference import (
    REJECTED_TARGET_KINDS,
    SMOOTHING_KINDS,
    TARGET_KINDS,
    preference_loss,
)
from prefkit.reference import _head

__all__ = ["SUPPORTED_LOSS_TYPES", "DPOTrainer", "PackedPreferenceCollator"]

#: ``loss_type`` values this trainer computes. All are prefkit kinds of the same name;
#: ``sft`` is TRL's batch-level token mean (prefkit's own ``sft`` kind averages per sequence).
#: ``sppo`` and ``soft_sigmoid`` are prefkit's, with the dataset's ``target`` column.
SUPPORTED_LOSS_TYPES = frozenset(
    {
        "sppo",
        "soft_sigmoid",
        "sigmoid",
        "hinge",
        "ipo",
        "exo_pair",
        "nca_pair",
        "robust",
        "bco_pair",
        "sppo_hard",
        "apo_zero",
        "apo_down",
        "discopop",
        "sft",
        "sigmoid_norm",
    }
)
#: Why the other TRL options are refused (checked in ``DPOTrainer.__init__``).
_UNSUPPORTED_LOSS_TYPES = {
    "aot": "sorts log-ratios across the batch, so a pair's loss is not its own",
    "aot_unpaired": "sorts log-ratios across the batch, so a pair's loss is not its own",
}
_REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
_ID_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
#: Per-pair probabilities for the target kinds (``preference_loss``'s ``target`` and
#: ``rejected_target``), carried from the dataset to the loss.
_TARGET_COLUMNS = ("target", "rejected_target")


def _column_names(dataset: Any) -> set:
    names = getattr(dataset, "column_names", None)
    if isinstance(names, Mapping):  # DatasetDict
        return set().union(*map(set, names.values())) if names else set()
    if names is None and dataset is not None:
        names = list(next(iter(dataset)).keys())
    return set(names or ())


def _check_options(args: Any, compute_metrics: Any) -> None:
    """Raise a PrefkitError naming the first DPOConfig option this trainer cannot honour."""
    for loss_type in args.loss_type:
        if loss_type in _UNSUPPORTED_LOSS_TYPES:
            raise PrefkitError(
                f"loss_type={loss_type!r} is not supported by prefkit.trl.DPOTrainer: it "
                f"{_UNSUPPORTED_LOSS_TYPES[loss_type]}; use trl.DPOTrainer for it"
            )
        if loss_type not in SUPPORTED_LOSS_TYPES:
            raise PrefkitError(
                f"loss_type={loss_type!r} is not a TRL DPO loss prefkit knows; supported: "
                f"{sorted(SUPPORTED_LOSS_TYPES)}"
            )
    if args.f_divergence_type != "reverse_kl":
        raise PrefkitError(
            f"f_divergence_type={args.f_divergence_type!r} is not supported by "
            f"prefkit.trl.DPOTrainer (only 'reverse_kl', the standard DPO divergence)"
        )
    if args.use_weighting:
        raise PrefkitError(
            "use_weighting=True (WPO) is not supported by prefkit.trl.DPOTrainer: its weights "
            "need the sum of squared probabilities over the vocabulary of every token"
        )
    if args.padding_free and args.truncation_mode != "keep_start":
        raise PrefkitError(
            f"padding_free=True needs truncation_mode='keep_start', got "
            f"{args.truncation_mode!r}: cutting the start would leave the two completions of "
            f"a pair with different prompts"
        )
    if compute_metrics is not None:
        raise PrefkitError(
            "compute_metrics is not supported by prefkit.trl.DPOTrainer: it receives full "
            "[tokens, vocab] logits, which this trainer never builds (TRL deprecates it too)"
        )


def _check_target_columns(args: Any, datasets: dict) -> None:
    """Raise a PrefkitError unless every dataset has the ``target`` column its loss types read."""
    needing = sorted(TARGET_KINDS & set(args.loss_type))
    if not needing:
        return
    for name, dataset in datasets.items():
        if isinstance(dataset, dict):  # several eval datasets by name
            _check_target_columns(args, {f"{name}[{k!r}]": v for k, v in dataset.items()})
        elif dataset is not None and "target" not in _column_names(dataset):
            raise PrefkitError(
                f"loss_type {needing} needs a 'target' column in {name} (per-pair "
                f"probabilities in [0, 1]; 'rejected_target' too for sppo's two win rates)"
            )


class _TRLPreferenceLoss(FusedLinearPreferenceLoss):
    """FusedLinearPreferenceLoss computing TRL's weighted sum of loss types.

    ``_loss`` is the hook both paths of the fused module call (per pair group with
    ``reduction="none"``, or on the whole batch), so the mix of losses keeps the
    gradient-in-forward path. TRL's ``sft`` is a token mean over the whole batch's chosen
    completions, which is a sum of per-pair terms once the batch's pair and chosen-token counts
    are known: :meth:`for_batch` sets them before each call.
    """

    def __init__(self, args: Any):
        super().__init__(kind="sigmoid", beta=args.beta, tau=args.discopop_tau)
        self.loss_types = list(args.loss_type)
        self.loss_weights = list(args.loss_weights or [1.0] * len(self.loss_types))
        self.label_smoothing = args.label_smoothing
        self.sft_scale = 0.0

    def extra_repr(self) -> str:
        return f"loss_type={self.loss_types}, loss_weights={self.loss_weights}, beta={self.beta}"

    def for_batch(self, pairs: int, chosen_tokens: int) -> _TRLPreferenceLoss:
        self.sft_scale = pairs / max(chosen_tokens, 1)
        return self

    def _loss(self, chosen, rejected, refs, counts, reduction, targets=(None, None)):
        m = chosen.shape[0]
        ref_chosen, ref_rejected = (torch.zeros_like(chosen) if r is None else r for r in refs)
        total = torch.zeros_like(chosen)
        for loss_type, weight in zip(self.loss_types, self.loss_weights):
            if loss_type == "sft":
                losses = -chosen * self.sft_scale
            else:
                # TRL reads label_smoothing only where the formula has it; prefkit raises
                # elsewhere, so pass it to those kinds only. Targets likewise.
                smoothing = self.label_smoothing if loss_type in SMOOTHING_KINDS else 0.0
                target = targets[0] if loss_type in TARGET_KINDS else None
                rejected_target = targets[1] if loss_type in REJECTED_TARGET_KINDS else None
                losses, _ = preference_loss(
                    chosen,
                    rejected,
                    ref_chosen,
                    ref_rejected,
                    kind=loss_type,
                    beta=self.beta,
                    label_smoothing=smoothing,
                    tau=self.tau,
                    chosen_lengths=counts[:m],
                    rejected_lengths=counts[m:],
                    target=target,
                    rejected_target=rejected_target,
                    reduction="none",
                )
            total = total + weight * losses
        # TRL's rewards are beta * log-ratio whatever the loss types.
        reward_chosen = self.beta * (chosen - ref_chosen).detach()
        reward_rejected = self.beta * (rejected - ref_rejected).detach()
        metrics = {
            "rewards/chosen": reward_chosen,
            "rewards/rejected": reward_rejected,
            "rewards/accuracies": (reward_chosen > reward_rejected).float(),
            "rewards/margins": reward_chosen - reward_rejected,
        }
        if reduction == "none":
            return total, metrics
        metrics = {k: v.mean() for k, v in metrics.items()}
        return (total.mean() if reduction == "mean" else total.sum()), metrics


class _TokenStats:
    """Per-token entropy, mean logit and top-1 hit of the labelled tokens, as TRL logs them.

    Called with blocks of float32 logits (by the fused loss's gradient-in-forward path, or by
    :meth:`fill` when that path did not run).
    """

    def __init__(self, n: int, device: torch.device):
        self.entropy = torch.zeros(n, device=device)
        self.mean_logit = torch.zeros(n, device=device)
        self.top1 = torch.zeros(n, dtype=torch.bool, device=device)
        self.seen = False

    #: Rows of the logits block turned into probabilities at once: the entropy's scratch space
    #: stays a small fraction of the block.
    ROWS = 128

    def __call__(self, tokens, logits, lse, targets):
        self.seen = True
        self.mean_logit[tokens] = logits.mean(1).float()
        # argmax returns the first maximum: TRL's is_top1 (target >= max, > every earlier one).
        self.top1[tokens] = logits.argmax(1) == targets
        for start in range(0, logits.shape[0], self.ROWS):
            rows = slice(start, start + self.ROWS)
            probs = (logits[rows] - lse[rows, None]).exp_()
            entropy = lse[rows] - probs.mul_(logits[rows]).sum(1)
            self.entropy[tokens[rows]] = entropy.float()

    @torch.no_grad()
    def fill(self, hidden, weight, bias, index, targets, block_tokens: int = 1024):
        """Compute the statistics in a separate no-grad pass over ``hidden``'s labelled tokens."""
        flat = hidden.reshape(-1, hidden.shape[-1])
        dtype = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        w = weight.to(dtype)
        for start in range(0, index.numel(), block_tokens):
            tokens = torch.arange(start, min(start + block_tokens, index.numel()),
                                  device=index.device)
            x = flat.index_select(0, index[tokens]).to(dtype)
            logits = x @ w.T if bias is None else torch.addmm(bias.to(dtype), x, w.T)
            self(tokens, logits, torch.logsumexp(logits, 1), targets[tokens])


@dataclass
class PackedPreferenceCollator(DataCollatorMixin):
    """Padding-free batches of tokenised pairs for :class:`DPOTrainer` (``padding_free=True``).

    Truncates like TRL's ``DataCollatorForPreference`` (``prompt + completion`` keeps its first
    ``max_length`` tokens), then lays the batch out with ``pk.PairCollator(packed=True)``: one
    row ``[1, N]`` in which each pair's prompt appears once and its completions continue the
    prompt's positions, behind a boolean ``[1, 1, N, N]`` attention mask.

    Parameters
    ----------
    pad_token_id : int
        Not written into packed rows; kept for the collator's checks.
    max_length : int, optional
        TRL's ``max_length``.

    Examples
    --------
    >>> from prefkit.trl import PackedPreferenceCollator
    >>> collate = PackedPreferenceCollator(pad_token_id=0, max_length=4)
    >>> batch = collate([{"prompt_ids": [1, 5], "chosen_ids": [7, 8, 2], "rejected_ids": [9]}])
    >>> batch["input_ids"].tolist(), batch["position_ids"].tolist()
    ([[1, 5, 7, 8, 9]], [[0, 1, 2, 3, 2]])
    >>> batch["completion_labels"].tolist(), int(batch["sequence_tokens"])
    ([[7, 8], [9, -100]], 7)
    """

    pad_token_id: int
    max_length: int | None = None
    return_tensors: str = "pt"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        rows = []
        for example in examples:
            row = dict(example)
            if self.max_length is not None:
                room = max(self.max_length - len(row["prompt_ids"]), 0)
                row["chosen_ids"] = list(row["chosen_ids"])[:room]
                row["rejected_ids"] = list(row["rejected_ids"])[:room]
            rows.append(row)
        batch = PairCollator(self.pad_token_id, packed=True)(rows)
        # Trainer treats a "labels" key as the model's (token counting, loss scaling), so the
        # shifted completion labels travel under another name; TRL's num_tokens metric counts
        # both sequences' prompts, as in its padded layout.
        sequence_tokens = sum(
            2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"])
            for r in rows
        )
        return {
            "input_ids": batch["input_ids"],
            "position_ids": batch["position_ids"],
            "attention_mask": batch["attention_mask"],
            "completion_labels": batch["labels"],
            "gather_index": batch["gather_index"],
            "sequence_tokens": torch.tensor(sequence_tokens),
            **{name: batch[name] for name in _REF_COLUMNS if name in batch},
        }


@dataclass
class _WithTargets:
    """A collator that adds the examples' ``target`` / ``rejected_target`` as ``[B]`` tensors.

    TRL's collators drop columns they do not know; the target kinds need these two, in the
    batch's pair order, next to the reference log-probs.
    """

    collate: Any

    def __call__(self, examples):
        batch = self.collate(examples)
        for name in _TARGET_COLUMNS:
            if name in batch or name not in examples[0]:
                continue
            values = [example[name] for example in examples]
            missing = [i for i, v in enumerate(values) if v is None]
            if missing:
                raise PrefkitError(
                    f"column {name!r} is null in example {missing[0]} of a batch; the "
                    f"soft-preference loss types need a probability for every pair"
                )
            batch[name] = torch.tensor(values, dtype=torch.float32)
        return batch


def _add_hidden_forward(model) -> None:
    """Let ``model(..., prefkit_hidden=True)`` return the decoder's last hidden states.

    The policy must run through its (possibly DDP- or PEFT-wrapped) ``forward`` so that wrappers
    see the call; with this flag the forward stops before the LM head.
    """
    forward = model.forward

    @functools.wraps(type(model).forward)
    def hidden_forward(self, *args, prefkit_hidden=False, **kwargs):
        if not prefkit_hidden:
            return forward(*args, **kwargs)
        kwargs["use_cache"] = False
        decoder, _, _ = _head(self)
        return decoder(*args, **kwargs).last_hidden_state

    model.forward = types.MethodType(hidden_forward, model)


class DPOTrainer(trl.DPOTrainer):
    """``trl.DPOTrainer`` with prefkit's fused loss, cached reference log-probs and packing.

    Takes exactly the arguments of ``trl.DPOTrainer`` (trl 1.x) and a ``trl.DPOConfig``; see the
    module docstring for what changes and docs/trl.md for every option.

    - The loss comes from the decoder's last hidden states and ``lm_head.weight`` through
      :class:`prefkit.losses.FusedLinearPreferenceLoss`: no ``[tokens, vocab]`` logits.
    - ``ref_chosen_logps`` / ``ref_rejected_logps`` columns in ``train_dataset`` (and
      ``eval_dataset``) are used as the reference log-probs, as with TRL's
      ``precompute_ref_log_probs=True``: no reference model is loaded (pass no ``ref_model``).
    - Datasets with ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` (``pk.tokenize_pairs``) are
      trained on those ids; text datasets are tokenised by TRL as usual.
    - ``padding_free=True`` trains on :class:`PackedPreferenceCollator` batches (prompt once per
      pair); it needs SDPA or eager attention.
    - ``loss_type`` ``"sppo"`` / ``"soft_sigmoid"`` (prefkit's kinds) read each pair's
      ``target`` column, and ``"sppo"`` its ``rejected_target`` column when present, as
      :func:`prefkit.losses.preference_loss`'s ``target`` / ``rejected_target``.

    Raises
    ------
    PrefkitError
        An option prefkit does not implement (``loss_type`` 'aot'/'aot_unpaired',
        ``f_divergence_type`` other than 'reverse_kl', ``use_weighting``, ``compute_metrics``,
        a MoE router auxiliary loss, FSDP or DeepSpeed ZeRO-3, ``padding_free`` with flash
        attention or ``keep_end`` truncation, ``ld_alpha`` with reference columns from
        elsewhere, a ``target`` column missing for ``sppo``/``soft_sigmoid``), or a model whose
        logits are rescaled or soft-capped.

    Examples
    --------
    ::

        import prefkit as pk
        from datasets import Dataset
        from trl import DPOConfig
        from prefkit.trl import DPOTrainer

        pairs = pk.mine_pairs(pk.unnest(pk.read_table("examples/ultrafeedback_mini.jsonl")))
        tokenized = pk.reference_logps(ref_model, pk.tokenize_pairs(pairs, tokenizer))
        dataset = Dataset(tokenized.select(["prompt_ids", "chosen_ids", "rejected_ids",
                                            "ref_chosen_logps", "ref_rejected_logps"]))
        args = DPOConfig(output_dir="out", loss_type=["sigmoid"], beta=0.1, padding_free=True)
        DPOTrainer(model, args=args, train_dataset=dataset, processing_class=tokenizer).train()
    """

    def __init__(self, model, ref_model=None, args=None, data_collator=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), quantization_config=None, peft_config=None):
        if args is None:
            args = trl.DPOConfig(output_dir="prefkit-dpo")
        _check_options(args, compute_metrics)
        _check_target_columns(args, {"train_dataset": train_dataset, "eval_dataset": eval_dataset})
        # A copy: the flags set below must not leak into a config the caller reuses.
        args = copy.copy(args)
        if set(_REF_COLUMNS) <= _column_names(train_dataset):
            if args.ld_alpha is not None:
                raise PrefkitError(
                    "ld_alpha weights the reference log-probs too, but the dataset brings its "
                    "own ref_chosen_logps/ref_rejected_logps (pk.reference_logps gives plain "
                    "sums): drop those columns and let the trainer compute them"
                )
            # What TRL's precompute path does, minus the precomputing: no reference model.
            args.precompute_ref_log_probs = True
        packed = args.padding_free
        if packed:
            attn = getattr(model, "config", None) and model.config._attn_implementation
            if attn not in (None, "sdpa", "eager"):
                raise PrefkitError(
                    f"padding_free=True shares each prompt between its two completions with a "
                    f"4-d boolean attention mask, which needs attn_implementation 'sdpa' or "
                    f"'eager'; the model uses {attn!r}"
                )
            # trl 1.16 turns padding_free off with a warning; this trainer packs instead.
            args.padding_free = False
            if data_collator is None:
                tokenizer = getattr(processing_class, "tokenizer", processing_class)
                pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
                    tokenizer.eos_token_id
                data_collator = PackedPreferenceCollator(pad, max_length=args.max_length)
        super().__init__(model, ref_model=ref_model, args=args, data_collator=data_collator,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, compute_metrics=None,
                         callbacks=callbacks, optimizers=optimizers,
                         quantization_config=quantization_config, peft_config=peft_config)
        self.padding_free = self.args.padding_free = packed
        if self._is_vision_dataset:
            raise PrefkitError("vision datasets are not supported by prefkit.trl.DPOTrainer")
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if self.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
            raise PrefkitError(
                "FSDP and DeepSpeed ZeRO-3 are not supported by prefkit.trl.DPOTrainer: the "
                "fused loss needs the whole LM head weight on every process (use DDP or ZeRO-1/2)"
            )
        if self.aux_loss_enabled:
            raise PrefkitError(
                "the MoE router auxiliary loss is not supported by prefkit.trl.DPOTrainer; set "
                "router_aux_loss_coef=0.0"
            )
        policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
        _head(policy)  # a model with rescaled logits fails here, not at the first step
        _add_hidden_forward(policy)
        self._loss_fn = _TRLPreferenceLoss(self.args)
        self._uses_targets = bool(TARGET_KINDS & set(self.args.loss_type))
        if self._uses_targets:
            self.data_collator = _WithTargets(self.data_collator)

    # -- data -------------------------------------------------------------------------------

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        """TRL's preparation, except that already tokenised pairs keep their ids."""
        if not set(_ID_COLUMNS) <= _column_names(dataset):
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if args.max_length is not None and args.truncation_mode == "keep_start":
            # As TRL: a prompt filling max_length leaves no completion token to learn from.
            dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        """TRL's columns, plus the target columns that ``remove_unused_columns`` must keep."""
        super()._set_signature_columns_if_needed()
        if TARGET_KINDS & set(self.args.loss_type):
            self._signature_columns = [*self._signature_columns, *_TARGET_COLUMNS]

    def _precompute_ref_logps(self, dataset, name, batch_size):
        """TRL's precompute, skipped for datasets that bring reference log-probs."""
        if set(_REF_COLUMNS) <= _column_names(dataset):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    # -- log-probs --------------------------------------------------------------------------

    def _labels(self, inputs):
        """Shifted labels ``[2B, T]`` and where their hidden states come from."""
        if "completion_labels" in inputs:
            return inputs["completion_labels"], inputs["gather_index"]
        # TRL's padded batch: position t predicts token t + 1 wherever that is a completion.
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        return labels[:, 1:], None

    @staticmethod
    def _model_kwargs(inputs):
        keys = ("input_ids", "attention_mask", "position_ids")
        return {k: inputs[k] for k in keys if k in inputs}

    @staticmethod
    def _align(hidden, gather_index):
        """Hidden states lined up with the labels: ``[2B, T, H]``."""
        return hidden[:, :-1] if gather_index is None else hidden[0][gather_index]

    def _ld_split(self, hidden, labels):
        """LD-DPO: each row's labels split into the part both completions share and the tail.

        Returns rows ``[shared (2B), tail (2B)]`` of hidden states and labels, so that
        ``logps = shared + ld_alpha * tail`` (TRL's length-desensitised log-probs).
        """
        counted = labels != -100
        position = counted.cumsum(1)
        lengths = counted.sum(1)
        b = labels.shape[0] // 2
        shared = torch.minimum(lengths[:b], lengths[b:]).repeat(2)[:, None]
        shared_labels = labels.masked_fill(position > shared, -100)
        tail_labels = labels.masked_fill(position <= shared, -100)
        return torch.cat([hidden, hidden]), torch.cat([shared_labels, tail_labels])

    def _sequence_logps(self, hidden, weight, bias, labels):
        """Per-sequence log-probs (LD-weighted with ``ld_alpha``) by the recomputing path."""
        if self.ld_alpha is None:
            return sequence_logps(hidden, weight, labels, bias)[0]
        rows, split = self._ld_split(hidden, labels)
        logps, _ = sequence_logps(rows, weight, split, bias)
        n = labels.shape[0]
        return logps[:n] + self.ld_alpha * logps[n:]

    def compute_ref_log_probs(self, model, inputs):
        """Reference log-probs of one batch (padded or packed), from hidden states, no grad."""
        adapter = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter = use_adapter(
                unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
            model = unwrapped
        decoder, weight, bias = _head(self.accelerator.unwrap_model(model))
        labels, gather_index = self._labels(inputs)
        with torch.no_grad(), adapter:
            hidden = decoder(**self._model_kwargs(inputs), use_cache=False).last_hidden_state
            logps = self._sequence_logps(self._align(hidden, gather_index), weight, bias, labels)
        return logps.chunk(2, dim=0)

    # -- loss -------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs, return_outputs):
        if return_outputs:
            raise PrefkitError("prefkit.trl.DPOTrainer returns no logits (return_outputs=True)")
        mode = "train" if self.model.training else "eval"
        labels, gather_index = self._labels(inputs)
        hidden = self._align(model(**self._model_kwargs(inputs), prefkit_hidden=True),
                             gather_index)
        policy = self.accelerator.unwrap_model(model)
        _, weight, bias = _head(policy.get_base_model() if is_peft_model(policy) else policy)
        # The dataset's (or TRL's precomputed) columns, else the reference run on this batch.
        if self.precompute_ref_logps:
            refs = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            refs = self.compute_ref_log_probs(self.ref_model or model, inputs)
        refs = tuple(r.to(hidden.device, torch.float32) for r in refs)
        pair_targets = tuple(
            inputs[name].to(hidden.device, torch.float32)
            if self._uses_targets and name in inputs else None
            for name in _TARGET_COLUMNS
        )

        index, targets, rows, counts = labelled_tokens(labels, weight.shape[0])
        b = labels.shape[0] // 2
        stats = _TokenStats(index.numel(), hidden.device)
        loss_fn = self._loss_fn.for_batch(b, int(counts[:b].sum()))
        # The LM head runs in the hidden states' dtype, outside autocast: the fused loss
        # accumulates in float32 itself.
        with torch.autocast(hidden.device.type, enabled=False):
            if self.ld_alpha is None:
                loss_fn.token_stats = stats
                loss, metrics = loss_fn(hidden, weight, labels, *refs, bias=bias,
                                        target=pair_targets[0],
                                        rejected_target=pair_targets[1])
                loss_fn.token_stats = None
                logps = (metrics["logps/chosen"], metrics["logps/rejected"])
            else:
                policy_logps = self._sequence_logps(hidden, weight, bias, labels)
                loss, metrics = loss_fn._loss(policy_logps[:b], policy_logps[b:], refs,
                                              counts, "mean", targets=pair_targets)
                logps = (policy_logps[:b].detach().mean(), policy_logps[b:].detach().mean())
            if not stats.seen:
                stats.fill(hidden.detach(), weight.detach(),
                           None if bias is None else bias.detach(), index, targets)
        self._log_metrics(mode, inputs, metrics, logps, stats, rows, b)
        return loss

    def _log_metrics(self, mode, inputs, metrics, logps, stats, rows, b):
        """TRL's metrics, names and order, gathered across processes like TRL does."""
        gather = self.accelerator.gather_for_metrics
        total = gather(torch.tensor(float(rows.numel()), device=rows.device)).sum()
        entropy = gather(stats.entropy.sum()).sum()
        self._metrics[mode]["entropy"].append((entropy / total).item() if total > 0 else 0.0)
        if mode == "train":
            if "sequence_tokens" in inputs:
                tokens = inputs["sequence_tokens"]
            else:
                tokens = inputs["attention_mask"].sum()
            self._total_train_tokens += gather(tokens).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        chosen = rows < b
        for name, part in (("logits/chosen", chosen), ("logits/rejected", ~chosen)):
            count = gather(part.sum()).sum().item()
            value = gather(stats.mean_logit[part].sum()).sum().item()
            self._metrics[mode][name].append(value / count if count > 0 else 0.0)
        count = gather(chosen.sum()).sum()
        hits = gather((stats.top1 & chosen).sum()).sum()
        self._metrics[mode]["mean_token_accuracy"].append(
            (hits / count).item() if count > 0 else 0.0)
        for name in ("rewards/chosen", "rewards/rejected", "rewards/accuracies",
                     "rewards/margins"):
            self._metrics[mode][name].append(gather(metrics[name]).mean().item())
        self._metrics[mode]["logps/chosen"].append(gather(logps[0]).mean().item())
        self._metrics[mode]["logps/rejected"].append(gather(logps[1]).mean().item())

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The loss only: this trainer has no logits to return."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None
