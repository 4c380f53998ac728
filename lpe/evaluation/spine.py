"""The evaluation spine: the one place where members are run and accumulated.

Every ensemble of the suite and of the library is evaluated here, whatever makes its members:

- **the forward with given weights**: :func:`run_with` runs the one model instance with a
  member's weights (``torch.func.functional_call``; the model's own are neither read nor written)
  and :func:`forward_log_probs` does so over batches of inputs (tensors, or keyword dicts for a
  Hugging Face model);
- **one protocol for member sources**: a source is an iterable of members plus an ``open``
  function; ``open(member)`` is a context manager that yields the weights the model runs that
  member with (a mapping of tensors), or None (the model's own weights, as the context left them:
  MC dropout's masks, the FP32 model). An LPE-BSR member (:func:`open_member`: its dequantized
  weights), a BMA draw or a point of a loss landscape (:func:`open_vector`: a flat vector's
  views), a noise member (its noisy copy) and a dropout mask all enter the same way;
- **one member loop**: :func:`stream` opens each member in turn (one alive at a time), evaluates
  it on the inputs (and the calibration inputs) and yields its log-probabilities and the seconds
  its forward passes took; :func:`evaluate` collects a stream for the stages (members stacked,
  or evaluated K at a time with ``torch.vmap`` on a GPU), :func:`each_member` and
  :func:`mean_of_members` serve one call of the ensemble object;
- **one accumulator**: :class:`Accumulator` computes the ensemble's log-probabilities as members
  come (``lpe.core.metrics.RunningLogMean``), the members' average loss and their seconds.

A test (tests/evaluation/test_spine.py) reads the package's syntax trees: no loop outside this
module runs a model with a member's weights.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch

from lpe.core.metrics import RunningLogMean
from lpe.members.files import Member

Weights = Mapping[str, torch.Tensor] | None
"""What a member runs with: a mapping of the model's tensors (the rest stay the model's own), or
None for the model's own weights (as the member's context left them)."""


# -- the forward with given weights ----------------------------------------------------------


def log_softmax_of(output) -> torch.Tensor:
    """FP32 log-softmax over the last dimension of a model's output: a tensor of logits, or an
    object with ``.logits`` (Hugging Face models)."""
    logits = output.logits if hasattr(output, "logits") else output
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"the model returned a {type(output).__name__}, not logits: an ensemble needs a "
            "tensor of logits or an output with .logits (wrap the model so that its forward "
            "returns its logits, e.g. the first element of its tuple)"
        )
    return torch.log_softmax(logits.float(), dim=-1)


def run_with(model: torch.nn.Module, weights: Weights, *args, **kwargs):
    """``model(*args, **kwargs)`` with ``weights`` in place of its own, which are neither read nor
    written (None: the model's own). A tied tensor (a language model's embedding and output
    head, ``dec.weight = enc.weight``) is given under its first name only
    (``lpe.formats.policy.untied``) and the tie carries it to the others (``tie_weights``)."""
    if weights is None:
        return model(*args, **kwargs)
    return torch.func.functional_call(model, dict(weights), args, kwargs, tie_weights=True)


def member_weights(model: torch.nn.Module, member: Member) -> dict[str, torch.Tensor]:
    """Every tensor of ``model``'s state as the LPE member ``member`` has it (dequantized codes
    and kept tensors), on the device and in the dtype of the model's own tensor of that name:
    what :func:`run_with` runs the member with. The member must cover the model's state exactly
    (as ``load_state_dict(strict=True)``)."""
    target = member.state_of(model)
    weights = {}
    for name in member.codes:
        t = target[name]
        weights[name] = member.weight(name, t.device).to(t.dtype)
    for name, value in member.kept.items():
        weights[name] = value.to(device=target[name].device, dtype=target[name].dtype)
    return weights


def batches(x, batch_size: int):
    """Input batches of a tensor (sliced) or of a loader of ``(inputs, labels)`` (image folders)."""
    if isinstance(x, torch.Tensor):
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size]
    else:
        for xb, _ in x:
            yield xb


def _on(device: torch.device, batch):
    """A batch on ``device``: a tensor, or a dict of keyword inputs (non-tensors as they are)."""
    if isinstance(batch, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch.to(device)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module, eval_mode: bool = True):
    """``model`` in eval mode (BatchNorm's running statistics, no dropout) with each module's own
    mode restored after, also after an exception; ``eval_mode=False`` keeps the modes as the
    member's context set them (MC dropout). Gradients are off (``no_grad``, not
    ``inference_mode``: the ensemble object's outputs are the caller's, to use as any tensor)."""
    modes = [(module, module.training) for module in model.modules()] if eval_mode else []
    if eval_mode:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def forward_log_probs(
    model: torch.nn.Module,
    inputs: Iterable,
    device: torch.device,
    weights: Weights = None,
    *,
    read: Callable[[Any], torch.Tensor] = log_softmax_of,
) -> torch.Tensor:
    """``(N, ...)`` FP32 log-probabilities on the CPU of ``model`` run with ``weights`` on each
    batch of ``inputs`` (a tensor: the model's positional input; a dict: its keyword inputs),
    concatenated. ``read`` turns an output into log-probabilities (default: the log-softmax of
    its logits). The model's modes are the caller's (:func:`evaluating`)."""
    out = []
    for batch in inputs:
        batch = _on(device, batch)
        output = (
            run_with(model, weights, **batch)
            if isinstance(batch, dict)
            else run_with(model, weights, batch)
        )
        out.append(read(output).cpu())
    return torch.cat(out)


def predict_log_probs(
    model: torch.nn.Module,
    x,
    batch_size: int,
    device: torch.device,
    eval_mode: bool = True,
    *,
    weights: Weights = None,
) -> torch.Tensor:
    """``(N, ...) -> (N, C)`` float32 log-softmax of ``model`` on ``x`` (a tensor, sliced into
    ``batch_size`` batches, or a loader of ``(inputs, labels)``), on the CPU; with ``weights``, of
    the model run with those weights instead of its own. In eval mode by default;
    ``eval_mode=False`` keeps the modules' modes as the caller set them."""
    with evaluating(model, eval_mode):
        return forward_log_probs(model, batches(x, batch_size), device, weights)


# -- member sources ---------------------------------------------------------------------------


def open_member(model: torch.nn.Module) -> Callable:
    """The ``open`` of the suite's and the object's members: an LPE member (``Member``) runs with
    its dequantized weights (:func:`member_weights`, made when it is opened and freed when it is
    closed), a mapping with itself, None with the model's own weights."""

    def opened(member):
        if isinstance(member, Member):
            return contextlib.nullcontext(member_weights(model, member))
        return contextlib.nullcontext(member)

    return opened


def vector_weights(model: torch.nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    """A flat parameter vector (``parameters_to_vector``'s order) as the model's parameters, by
    name: views of the vector (no copy), buffers left the model's own."""
    parameters = dict(model.named_parameters())
    if (count := sum(p.numel() for p in parameters.values())) != vector.numel():
        raise ValueError(f"a vector of {vector.numel()} values for {count} parameters")
    weights, start = {}, 0
    for name, parameter in parameters.items():
        weights[name] = vector[start : start + parameter.numel()].view_as(parameter)
        start += parameter.numel()
    return weights


def open_vector(model: torch.nn.Module, device: torch.device):
    """The ``open`` of flat parameter vectors (a BMA draw, a point of a loss landscape): each
    runs as the model's parameters (:func:`vector_weights`), moved to ``device``."""

    def opened(vector: torch.Tensor):
        return contextlib.nullcontext(vector_weights(model, vector.to(device)))

    return opened


# -- the member loop --------------------------------------------------------------------------


class Pass(NamedTuple):
    """One member evaluated: the member, its ``(N, C)`` log-probabilities, the seconds its forward
    passes took (the device synchronised) and its log-probabilities on the calibration inputs
    (None when none were given)."""

    member: Any
    log_probs: torch.Tensor
    seconds: float
    calibration: torch.Tensor | None


def stream(
    model: torch.nn.Module,
    members: Iterable,
    open: Callable,
    inputs: Iterable,
    device: torch.device,
    *,
    calibration: Iterable | None = None,
    eval_mode: bool = True,
    forward: Callable[[Weights], torch.Tensor] | None = None,
) -> Iterator[Pass]:
    """Each of ``members``, opened with ``open`` (the member-source protocol above), evaluated on
    the batches of ``inputs`` (read once per member, so re-readable) and then of ``calibration``
    (when given), one member alive at a time. ``forward``: a task's own evaluation of the
    model with a member's weights, in place of :func:`forward_log_probs` on ``inputs`` (a
    language model's answer scores, ``lpe.stages.mmlu``)."""
    for member in members:
        with open(member) as weights, evaluating(model, eval_mode):
            start = time.perf_counter()
            if forward is not None:
                log_probs = forward(weights)
            else:
                log_probs = forward_log_probs(model, inputs, device, weights)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            at_calibration = None
            if calibration is not None:
                at_calibration = forward_log_probs(model, calibration, device, weights)
        passed = Pass(member, log_probs, seconds, at_calibration)
        del member, weights, log_probs, at_calibration  # freed before the next member is read
        yield passed
        del passed


class Accumulator:
    """The ensemble of members as they come: ``add`` each member's ``(N, C)`` log-probabilities
    (and its seconds); ``value()`` is the log of the mean member probability so far
    (``RunningLogMean``: memory one ``(N, C)`` tensor), ``avg_loss()`` the members' mean NLL on
    the ``labels`` given, ``seconds`` their total. With ``keep``, the members' log-probabilities
    are kept instead (``members()``, ``(M, N, C)``: what the stages write, and score later)."""

    def __init__(self, labels: torch.Tensor | None = None, *, keep: bool = False) -> None:
        self.labels, self.keep = labels, keep
        self.running, self.kept, self.each_seconds = RunningLogMean(), [], []
        self.member_nll = 0.0

    @property
    def count(self) -> int:
        return len(self.each_seconds)

    @property
    def seconds(self) -> float:
        return sum(self.each_seconds)

    def add(self, log_probs: torch.Tensor, seconds: float = 0.0) -> None:
        self.each_seconds.append(seconds)
        if self.keep:
            self.kept.append(log_probs)
            return
        self.running.add(log_probs)
        if self.labels is not None:
            self.member_nll += float(-log_probs.gather(-1, self.labels[:, None]).sum())

    def value(self) -> torch.Tensor:
        """``(N, C)``: the log of the mean member probability (members not kept)."""
        return self.running.value()

    def avg_loss(self) -> float:
        """The members' mean NLL on the labels given at construction (members not kept)."""
        return self.member_nll / (self.count * len(self.labels))

    def members(self) -> torch.Tensor:
        """``(M, N, C)``: every member's log-probabilities (``keep``)."""
        return torch.stack(self.kept)


class Evaluated(NamedTuple):
    """What evaluating M members gives: their log-probs ``(M, N, C)``, bits and forward seconds
    on the evaluated split, and their log-probs on the calibration split (None if not asked)."""

    log_probs: torch.Tensor
    bits: list[int]
    seconds: list[float]
    calibration: torch.Tensor | None = None


# Members per batched call ("auto"): measured with benchmarks/ensemble_eval.py on a 2-core CPU,
# batching members with torch.func was slower than one at a time for every mini model (the forward
# is compute-bound there, and stacking multiplies the activations), so the CPU evaluates one at a
# time. On CUDA small models are launch-bound and batching is the usual win; that choice is not
# measured on this project's machine.
CUDA_BATCH_MAX_PARAMS = 2_000_000


CUDA_BATCH_MEMBERS = 8


def auto_members_per_call(model: torch.nn.Module, device: torch.device) -> int:
    from lpe.models.factory import count_params

    if device.type == "cuda" and count_params(model) <= CUDA_BATCH_MAX_PARAMS:
        return CUDA_BATCH_MEMBERS
    return 1


def _unfuse_attention(model: torch.nn.Module) -> None:
    # timm's fused attention calls scaled_dot_product_attention, which has no vmap batching rule
    # (torch falls back to a per-member loop and warns); the explicit softmax(q k^T) v batches.
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


def _batched_log_probs(model, weights: list[Mapping[str, torch.Tensor]], inputs, device):
    """``(K, N, C)`` log-softmax of K weight sets in one vmapped call per input batch."""

    def forward(params, xb):
        return torch.func.functional_call(model, params, (xb,))

    stacked = {n: torch.stack([w[n] for w in weights]).to(device) for n in weights[0]}
    batched = torch.vmap(forward, in_dims=(0, None))
    out = [log_softmax_of(batched(stacked, xb.to(device))).cpu() for xb in inputs]
    return torch.cat(out, dim=1)


def _stream_batched(model, members, open, inputs, device, *, calibration, per_call):
    """:func:`stream` with ``per_call`` members at once (``torch.vmap``; each member is charged
    ``1/per_call`` of the call's time)."""
    _unfuse_attention(model)
    members = iter(members)
    while group := [m for _, m in zip(range(per_call), members, strict=False)]:
        with contextlib.ExitStack() as stack, evaluating(model):
            weights = [stack.enter_context(open(m)) for m in group]
            start = time.perf_counter()
            log_probs = _batched_log_probs(model, weights, inputs, device)
            seconds = (time.perf_counter() - start) / len(group)
            at_calibration = [None] * len(group)
            if calibration is not None:
                at_calibration = _batched_log_probs(model, weights, calibration, device)
        for k, member in enumerate(group):
            yield Pass(member, log_probs[k], seconds, at_calibration[k])
        del group, weights, member  # freed before the next group is read


def evaluate(
    model: torch.nn.Module,
    members: Iterable,
    open: Callable,
    x,
    batch_size: int,
    device: torch.device,
    *,
    calibration_x=None,
    eval_mode: bool = True,
    members_per_call: int | str = 1,
    bits: Callable[[Any], int] | None = None,
) -> Evaluated:
    """Every member's log-probabilities on ``x`` (and ``calibration_x``), stacked: the stages'
    :func:`stream`. ``members_per_call``: members per batched call (``"auto"``: several on a GPU
    for small models, :func:`auto_members_per_call`); ``bits``: each member's storage (default
    0, for the caller to count)."""
    if members_per_call == "auto":
        members_per_call = auto_members_per_call(model, device)
    if not isinstance(members_per_call, int) or members_per_call < 1:
        raise ValueError(f"members_per_call must be 'auto' or >= 1, got {members_per_call!r}")
    inputs = Batches(x, batch_size)
    calibration = None if calibration_x is None else Batches(calibration_x, batch_size)
    if members_per_call == 1:
        passes = stream(
            model, members, open, inputs, device, calibration=calibration, eval_mode=eval_mode
        )
    else:
        passes = _stream_batched(
            model, members, open, inputs, device, calibration=calibration, per_call=members_per_call
        )
    done, at_calibration, member_bits = Accumulator(keep=True), Accumulator(keep=True), []
    for passed in passes:
        done.add(passed.log_probs, passed.seconds)
        member_bits.append(0 if bits is None else bits(passed.member))
        if passed.calibration is not None:
            at_calibration.add(passed.calibration)
        del passed  # the member is freed before the next one is read
    kept = at_calibration.members() if at_calibration.count else None
    return Evaluated(done.members(), member_bits, done.each_seconds, kept)


class Batches:
    """The batches of ``x`` (:func:`batches`), anew on every read: a stream's ``inputs``."""

    def __init__(self, x, batch_size: int) -> None:
        self.x, self.batch_size = x, batch_size

    def __iter__(self):
        return batches(self.x, self.batch_size)


def each_member(model: torch.nn.Module, members: Iterable, open: Callable, *args, **kwargs):
    """``(M, ..., C)``: each member's log-probabilities on one call ``model(*args, **kwargs)``
    (eval mode)."""
    out = []
    with evaluating(model):
        for member in members:
            with open(member) as weights:
                out.append(log_softmax_of(run_with(model, weights, *args, **kwargs)))
    return torch.stack(out)


def mean_of_members(
    model: torch.nn.Module, members: Iterable, open: Callable, *args, **kwargs
) -> tuple[torch.Tensor, bool]:
    """``(..., C)``: the log of the mean member probability on one call ``model(*args,
    **kwargs)`` (eval mode), members accumulated as they come; and whether the model's outputs
    carry ``.logits`` (a Hugging Face model)."""
    ensemble, with_logits = Accumulator(), False
    with evaluating(model):
        for member in members:
            with open(member) as weights:
                output = run_with(model, weights, *args, **kwargs)
            with_logits = hasattr(output, "logits")
            ensemble.add(log_softmax_of(output))
    return ensemble.value(), with_logits
