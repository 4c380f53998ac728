"""LPE-BSR around any PyTorch model: :class:`LowPrecisionEnsemble`.

::

    from lpe import LowPrecisionEnsemble
    ensemble = LowPrecisionEnsemble(model, "int5", members=10, seed=0)   # draws the members
    log_probs = ensemble(images)            # (N, C): log of the mean member probability
    ensemble.calibrate(held_out_loader)     # a temperature, fit on held-out data only
    ensemble.save("lpe.safetensors")        # a shared base plus one bit per member and weight
    same = LowPrecisionEnsemble.load("lpe.safetensors", model)   # refuses other weights

The members are stored as one shared base and M bit-planes (:mod:`lpe.members.shared_base`),
drawn at construction and encoded as they are drawn (memory: the base, the planes and one
member). Every evaluation streams them through the one model: member m is decoded from its
plane, dequantized on the model's device in the model's dtype and run with
``torch.func.functional_call`` (:func:`run_with`), so at most one member's weights exist at once
and the model's own weights are never written (nothing to restore, also after an exception). The
inference dtype is the caller's (``torch.autocast`` around the call, as
``lpe.core.runtime.autocast`` does).

The same forward (:func:`member_weights` + :func:`run_with`) is the one the suite's stages
evaluate members with (``lpe.evaluation.spine``), and ``lpe.tools.apply``
evaluates through this class. Outputs may be logits (a classifier) or carry ``.logits`` (a
Hugging Face causal LM: next-token log-probabilities, averaged over members per position).

Member k is drawn with ``lpe.members.files.member_seed(seed, k)``: the suite's members, bit for
bit. The default policy is by role (``lpe.formats.policy.policy_for``).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lpe.core.artifacts import ArtifactError, tensors_sha256
from lpe.evaluation import spine
from lpe.evaluation.spine import Accumulator, member_weights, open_member, run_with
from lpe.evaluation.temperature import bound_warning, fit_temperature
from lpe.formats.number_formats import NumberFormat, get_format, int_format
from lpe.formats.policy import (
    QuantPolicy,
    model_tensors,
    policy_for,
    transposed_weights,
    untied,
)
from lpe.members.files import Member, member_seed
from lpe.members.shared_base import (
    SharedBase,
    draw_shared_base,
    from_tensors,
    load_shared_base,
    save_shared_base,
    to_tensors,
)

RTN, BSR = "rtn", "bsr"


def number_format(fmt: NumberFormat | str | int) -> NumberFormat:
    """A registered format by name (``"int5"``, ``"fp6_e2m3"``, ...), INT-b by its bits, or
    the format itself."""
    if isinstance(fmt, NumberFormat):
        return fmt
    return int_format(fmt) if isinstance(fmt, int) else get_format(fmt)


@dataclass
class EnsembleOutput:
    """The ensemble's output for a model whose outputs carry ``.logits``: ``logits`` holds the
    ensemble's log-probabilities (the log of the mean member probability, at the ensemble's
    temperature). A softmax of them is the ensemble's distribution, as a softmax of a model's
    logits is the model's."""

    logits: torch.Tensor


class LowPrecisionEnsemble(torch.nn.Module):
    """M low precision members of ``model`` (LPE-BSR), evaluated as one model.

    ``fmt``: a registered number format (name, INT-b bits or a ``NumberFormat``); ``members``:
    M; ``seed``: the ensemble seed; ``policy``: which tensors are quantized (default by role,
    :func:`lpe.formats.policy.policy_for`); ``with_rtn``: also store the rounding-to-nearest
    member (:meth:`rtn`, saved with the file; off by default: it costs one more bit per weight).
    ``progress``: a progress bar's label while the members are drawn. ``weights``: the state
    the members are rounded from, when not the model's own (a bf16 model's FP32 masters, on the
    CPU: ``lpe.stages.mmlu``); the members' kept tensors are then those. ``keep_decoded``: keep
    each member's weights decoded after its first use, for calls on small batches (memory: M
    copies of the model's quantized weights in its dtype; docs/apply.md has the numbers).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        fmt: NumberFormat | str | int = "int5",
        members: int = 10,
        seed: int = 0,
        policy: QuantPolicy | None = None,
        *,
        with_rtn: bool = False,
        progress: str = "",
        weights: Mapping[str, torch.Tensor] | None = None,
        keep_decoded: bool = False,
    ) -> None:
        super().__init__()
        self.keep_decoded, self._decoded = keep_decoded, {}
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.model = model
        self.policy = policy or policy_for(model)
        self.seed = seed
        draws = [(RTN, 0)] * with_rtn + [(BSR, member_seed(seed, k)) for k in range(members)]
        source = untied(weights) if weights is not None else model_tensors(model)
        state = {name: t.detach() for name, t in source.items()}
        # the weights the members were drawn from, as save() stamps them: the model may change
        # after construction, the members do not
        self.weights_sha256 = tensors_sha256(state)
        # a weight stored (in, out) is rounded as (out, in): its scales per output channel
        rows = {
            n
            for n in transposed_weights(model)
            if n in state and self.policy.quantizes(n, state[n])
        }
        state = {name: t.t() if name in rows else t for name, t in state.items()}
        with torch.no_grad():
            self.shared = draw_shared_base(state, number_format(fmt), draws, self.policy, progress)
        self.shared.transposed = frozenset(rows)
        self.temperature = 1.0

    @classmethod
    def from_shared_base(
        cls, model: torch.nn.Module, shared: SharedBase, seed: int | None = None
    ) -> LowPrecisionEnsemble:
        """The ensemble of an already encoded :class:`SharedBase` of ``model``'s weights (its
        ensemble ``seed``, when known, for the record)."""
        ensemble = cls.__new__(cls)
        torch.nn.Module.__init__(ensemble)
        ensemble.model, ensemble.shared, ensemble.seed = model, shared, seed
        ensemble.keep_decoded, ensemble._decoded = False, {}
        ensemble.policy = stored_policy(shared)
        ensemble.weights_sha256 = None  # unknown: save() stamps the model's weights then
        ensemble.temperature = 1.0
        return ensemble

    # -- the members ---------------------------------------------------------------------------

    @property
    def fmt(self) -> NumberFormat:
        return self.shared.fmt

    def _indices(self, method: str) -> list[int]:
        return [m for m, made in enumerate(self.shared.methods) if made == method]

    def __len__(self) -> int:
        """M, the LPE-BSR members (the RTN member, when stored, is not one of them)."""
        return len(self._indices(BSR))

    def members(self) -> Iterator[Member]:
        """The LPE-BSR members in order, each decoded when asked for (one alive at a time)."""
        return (self.shared.member(m) for m in self._indices(BSR))

    def rtn(self) -> Member | None:
        """The rounding-to-nearest member, when it was stored (``with_rtn``), else None."""
        stored = self._indices(RTN)
        return self.shared.member(stored[0]) if stored else None

    # -- evaluation ----------------------------------------------------------------------------

    def member_outputs(self, member: Member, *args, **kwargs):
        """``model(*args, **kwargs)`` with ``member``'s weights (the model's own stay as they
        are)."""
        return run_with(self.model, member_weights(self.model, member), *args, **kwargs)

    def _opener(self):
        """The spine's ``open`` of this call's members (by index): each member's weights as
        :func:`run_with` takes them, decoded when it is opened, or with ``keep_decoded`` kept
        after its first use, for the model's device and dtype as they are at this call (looked
        up once per call, not per member)."""
        if not self.keep_decoded:
            return lambda m: contextlib.nullcontext(
                member_weights(self.model, self.shared.member(m))
            )
        first = next(iter(model_tensors(self.model).values()), None)
        where = None if first is None else (first.device, first.dtype)
        self._decoded = {k: v for k, v in self._decoded.items() if k[1] == where}

        def opened(m: int):
            if (m, where) not in self._decoded:
                self._decoded[m, where] = member_weights(self.model, self.shared.member(m))
            return contextlib.nullcontext(self._decoded[m, where])

        return opened

    def member_log_probs(self, *args, **kwargs) -> torch.Tensor:
        """``(M, ..., C)``: each member's log-probabilities on one batch (eval mode)."""
        return spine.each_member(self.model, self._indices(BSR), self._opener(), *args, **kwargs)

    def log_probs(self, *args, **kwargs) -> torch.Tensor:
        """``(..., C)``: log of the mean member probability on one batch (eval mode), at the
        ensemble's temperature (1 until :meth:`calibrate`). Members are accumulated as they
        come."""
        return self._ensemble(*args, **kwargs)[0]

    def _ensemble(self, *args, **kwargs) -> tuple[torch.Tensor, bool]:
        """:meth:`log_probs`, and whether the model's outputs carry ``.logits``."""
        log_probs, with_logits = spine.mean_of_members(
            self.model, self._indices(BSR), self._opener(), *args, **kwargs
        )
        return self._at_temperature(log_probs), with_logits

    def forward(self, *args, **kwargs) -> torch.Tensor | EnsembleOutput:
        """:meth:`log_probs`; for a model whose outputs carry ``.logits`` (a Hugging Face model),
        an :class:`EnsembleOutput` whose ``.logits`` they are, so that code written for the
        model (``model(**inputs).logits``) takes the ensemble in its place."""
        log_probs, with_logits = self._ensemble(*args, **kwargs)
        return EnsembleOutput(logits=log_probs) if with_logits else log_probs

    def _at_temperature(self, log_probs: torch.Tensor) -> torch.Tensor:
        if self.temperature == 1.0:
            return log_probs
        return torch.log_softmax(log_probs / self.temperature, dim=-1)

    def stream(
        self, loader: Iterable, members: Iterable[Member] | None = None, device=None
    ) -> Iterator[tuple[Member | None, torch.Tensor, torch.Tensor, float]]:
        """Each member (``members``, default the LPE-BSR ones; None stands for the model's own
        weights) on every batch of ``loader`` (``(inputs, labels)`` batches, read once per
        member), through the evaluation spine (:func:`lpe.evaluation.spine.stream`): yields the
        member, its ``(N, C)`` FP32 log-probabilities (on the CPU), the ``(N,)`` labels and the
        seconds its forward passes took (eval mode). The member is dequantized once for all
        batches.

        The loader is read once per member, so it must give the same batches in the same order
        every time: a one-shot iterator or a shuffling ``DataLoader`` is refused before any work
        (:func:`check_rereadable`), and every pass after the first is checked against the first
        (its labels and a checksum of its inputs): a loader that changed stops the evaluation
        with an error instead of mixing other images into the ensemble."""
        check_rereadable(loader)
        device = device or _device_of(self.model)
        members = self.members() if members is None else members
        checked = _CheckedLoader(loader)
        for done in spine.stream(self.model, members, open_member(self.model), checked, device):
            # the checksums are not part of the inference time
            yield done.member, done.log_probs, checked.labels(), done.seconds - checked.seconds

    def evaluate(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C)`` ensemble log-probabilities (at the ensemble's temperature) and ``(N,)``
        labels on ``loader``, members streamed (see :meth:`stream`)."""
        ensemble, labels = Accumulator(), None
        for _, log_probs, seen, _ in self.stream(loader):
            ensemble.add(log_probs)
            labels = seen
        return self._at_temperature(ensemble.value()), labels

    def calibrate(self, loader: Iterable) -> float:
        """Fit the ensemble's temperature on ``loader`` (held-out data, never the evaluated
        data: ``lpe.evaluation.temperature``), keep it for later predictions, return it."""
        self.temperature = 1.0
        log_probs, labels = self.evaluate(loader)
        self.temperature = fit_temperature(log_probs[None], labels)
        if (warning := bound_warning("the ensemble", self.temperature)) is not None:
            warnings.warn(warning.removeprefix("warning: "), stacklevel=2)
        return self.temperature

    # -- storage -------------------------------------------------------------------------------

    @property
    def bits(self) -> int:
        """Storage of the members as saved (the shared-base accounting; ``docs/file_format.md``)."""
        return self.shared.bits

    def paper_bits(self) -> int:
        """Storage as the paper counts it: M full members (codes, scales and kept tensors each)."""
        return self.shared.member_file_bits * len(self)

    def save(self, path: str | Path, provenance: dict[str, str] | None = None) -> int:
        """Write the members as one shared-base file (``docs/file_format.md``), with the hash of
        the weights the members were drawn from (``weights_sha256``: the model's as they were at
        construction, not as they are now) for :meth:`load` to check, and the temperature;
        return its counted bits."""
        drawn_from = self.weights_sha256 or tensors_sha256(model_tensors(self.model))
        meta = {
            "weights_sha256": drawn_from,
            "temperature": repr(float(self.temperature)),
            **(provenance or {}),
        }
        if self.seed is not None:
            meta["ensemble_seed"] = str(self.seed)
        return save_shared_base(path, self.shared, meta)

    def get_extra_state(self) -> dict:
        """The members in :meth:`state_dict` (under ``_extra_state``, beside the model's own
        tensors under ``model.``): the file's tensors and metadata (``docs/file_format.md``), so
        ``torch.save(ensemble.state_dict())`` keeps the ensemble and ``torch.load`` reads it back
        with ``weights_only=True`` (tensors and strings only)."""
        tensors, meta = to_tensors(self.shared)
        meta["temperature"] = repr(float(self.temperature))
        if self.weights_sha256 is not None:
            meta["weights_sha256"] = self.weights_sha256
        if self.seed is not None:
            meta["ensemble_seed"] = str(self.seed)
        return {"tensors": tensors, "metadata": meta}

    def set_extra_state(self, state: dict) -> None:
        """The members of a :meth:`state_dict` (``load_state_dict``): they, their format and
        their number replace this ensemble's; the model's own tensors load as any module's."""
        meta = state["metadata"]
        self.shared = from_tensors(state["tensors"], meta, "the state dict's ensemble")
        self._decoded = {}
        self.policy = stored_policy(self.shared)
        self.seed = int(meta["ensemble_seed"]) if "ensemble_seed" in meta else None
        self.weights_sha256 = meta.get("weights_sha256")
        self.temperature = float(meta.get("temperature", 1.0))

    @classmethod
    def load(cls, path: str | Path, model: torch.nn.Module) -> LowPrecisionEnsemble:
        """The ensemble saved in ``path``, around ``model``: the model it was made from (its
        weights' hash, or for files without one its kept tensors, must match)."""
        shared, meta = load_shared_base(path)
        state = model_tensors(model)
        if "weights_sha256" in meta:
            if meta["weights_sha256"] != tensors_sha256(state):
                raise ArtifactError(
                    f"{path} was made from other weights than this model's (weights_sha256 "
                    "differs): load it with the model it was saved from"
                )
        elif any(
            n not in state or not torch.equal(t, state[n].cpu()) for n, t in shared.kept.items()
        ):
            raise ArtifactError(f"{path} was made from another model: its FP32 tensors differ")
        seed = int(meta["ensemble_seed"]) if "ensemble_seed" in meta else None
        ensemble = cls.from_shared_base(model, shared, seed)
        ensemble.weights_sha256 = meta.get("weights_sha256")
        ensemble.temperature = float(meta.get("temperature", 1.0))
        return ensemble


def check_rereadable(loader: Iterable) -> None:
    """Refuse, before any work, a loader that cannot be read the same way once per member: a
    one-shot iterator (a generator) or a ``DataLoader`` that shuffles or samples at random."""
    if iter(loader) is loader:
        raise ValueError(
            f"the loader is a one-shot iterator ({type(loader).__name__}): the ensemble reads it "
            "once per member; pass a list of batches or a DataLoader(..., shuffle=False)"
        )
    sampler = getattr(loader, "sampler", None)
    if isinstance(loader, torch.utils.data.DataLoader) and not isinstance(
        sampler, torch.utils.data.SequentialSampler
    ):
        raise ValueError(
            f"the DataLoader samples with {type(sampler).__name__} (shuffle=True?): the ensemble "
            "reads it once per member, so each member would see other images in another order; "
            "use DataLoader(..., shuffle=False)"
        )


class _CheckedLoader:
    """A loader read once per member, each pass checked against the first: its labels and a
    checksum of its inputs must be the same (a shuffling or random loader would mix other
    images into the ensemble). ``seconds``: the time the last pass spent on the checks."""

    def __init__(self, loader: Iterable) -> None:
        self.loader, self.first, self.seconds = loader, None, 0.0
        self._labels, self._sums = [], []

    def __iter__(self) -> Iterator[torch.Tensor]:
        self._labels, self._sums, self.seconds = [], [], 0.0
        for x, y in self.loader:
            yield x
            start = time.perf_counter()
            self._labels.append(y)
            self._sums.append(float(x.double().sum()))
            self.seconds += time.perf_counter() - start

    def labels(self) -> torch.Tensor:
        """The pass's labels, once it is checked against the first pass."""
        if not self._labels:
            raise ValueError("the loader gave no batches")
        labels = torch.cat(self._labels)
        self.first = self.first or (labels, self._sums)
        if not (torch.equal(labels, self.first[0]) and self._sums == self.first[1]):
            raise ValueError(
                "the loader gave other batches on another pass (a shuffling or random "
                "loader?): the ensemble reads it once per member, so it must give the same "
                "inputs in the same order every time (DataLoader(..., shuffle=False))"
            )
        return labels


def stored_policy(shared: SharedBase) -> QuantPolicy:
    """The stored split as a policy: exactly the stored FP32 tensors are kept."""
    return QuantPolicy(exclude=tuple(shared.kept), min_ndim=1)


def _device_of(model: torch.nn.Module) -> torch.device:
    tensor = next(iter(model.state_dict().values()), None)
    return tensor.device if tensor is not None else torch.device("cpu")
