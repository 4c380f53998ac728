"""The evaluation spine (lpe.evaluation.spine): the one member loop, its sources and accumulator."""

import ast
import contextlib
from pathlib import Path

import pytest
import torch

from lpe.core import metrics
from lpe.evaluation import spine

LPE = Path(__file__).resolve().parents[2] / "lpe"
SPINE = LPE / "evaluation/spine.py"
# what evaluates a model with a member's weights, or accumulates members: called in a loop, it
# is a member loop (the spine's alone). Writing weights into a model is not on the list: a fast
# source saves posterior draws as checkpoints that way (lpe.methods.de), which evaluates nothing.
MEMBER_RUNS = {
    "run_with", "functional_call", "member_weights", "log_softmax_of", "forward_log_probs",
    "predict_log_probs", "RunningLogMean",
}  # fmt: skip
LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
         ast.GeneratorExp)  # fmt: skip


def called(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return None


def member_loops(source: str) -> list[str]:
    """``line: name`` of every call of ``MEMBER_RUNS`` inside a loop (a comprehension's too)."""
    found = set()
    for loop in ast.walk(ast.parse(source)):
        if isinstance(loop, LOOPS):
            for node in ast.walk(loop):
                if (name := called(node)) in MEMBER_RUNS:
                    found.add(f"{node.lineno}: {name}")
    return sorted(found)


def test_no_member_loop_outside_the_spine():
    found = {}
    for path in sorted(LPE.rglob("*.py")):
        if path != SPINE and (hits := member_loops(path.read_text())):
            found[str(path.relative_to(LPE))] = hits
    assert found == {}


def test_the_check_sees_a_planted_member_loop():
    planted = (
        "for member in members:\n"
        "    weights = member_weights(model, member)\n"
        "    out.append(predict_log_probs(model, x, 100, device, weights=weights))\n"
        "lps = [log_softmax_of(torch.func.functional_call(model, w, (x,))) for w in ws]\n"
    )
    assert member_loops(planted) == [
        "2: member_weights", "3: predict_log_probs", "4: functional_call", "4: log_softmax_of"
    ]  # fmt: skip
    assert member_loops("weights = member_weights(model, member)\n") == []  # not in a loop
    assert member_loops(SPINE.read_text()) != []  # the spine's own loop is seen


def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_every_source_runs_the_model_with_its_weights_and_leaves_the_model_unwritten():
    model, x = tiny_model(), torch.randn(10, 4)
    own = {n: t.clone() for n, t in model.state_dict().items()}
    vectors = [torch.randn(sum(p.numel() for p in model.parameters())) for _ in range(3)]
    done = spine.evaluate(
        model, vectors, spine.open_vector(model, torch.device("cpu")), x, 4, torch.device("cpu")
    )
    assert done.log_probs.shape == (3, 10, 3) and len(done.seconds) == 3
    for vector, log_probs in zip(vectors, done.log_probs, strict=True):
        copy = tiny_model()
        torch.nn.utils.vector_to_parameters(vector, copy.parameters())
        assert torch.equal(log_probs, torch.log_softmax(copy(x), -1).detach())
    assert all(torch.equal(t, own[n]) for n, t in model.state_dict().items())
    # a context that sets the model up and yields None runs the model's own weights as it left them
    scaled = []

    @contextlib.contextmanager
    def halved(k):
        scaled.append(k)
        yield {n: t / 2 for n, t in own.items()} if k else None

    done = spine.evaluate(model, [0, 1], halved, x, 100, torch.device("cpu"), calibration_x=x[:2])
    assert scaled == [0, 1]
    assert torch.equal(done.log_probs[0], torch.log_softmax(model(x), -1).detach())
    assert not torch.equal(done.log_probs[0], done.log_probs[1])
    assert torch.equal(done.calibration, done.log_probs[:, :2])


def test_the_accumulator_is_the_ensemble_its_members_loss_and_their_seconds():
    members = torch.log_softmax(torch.randn(4, 6, 3, dtype=torch.float64), -1)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    running = spine.Accumulator(labels)
    for k, log_probs in enumerate(members):
        running.add(log_probs, seconds=k + 0.5)
    torch.testing.assert_close(running.value(), metrics.ensemble_log_probs(members))
    member_nll = -members.gather(-1, labels.expand(4, 6)[..., None]).mean()
    assert running.avg_loss() == pytest.approx(float(member_nll))
    assert running.count == 4 and running.seconds == 8.0
    kept = spine.Accumulator(keep=True)
    for log_probs in members:
        kept.add(log_probs)
    assert torch.equal(kept.members(), members)
    with pytest.raises(ValueError, match="no members"):
        spine.Accumulator().value()


def test_a_vector_of_the_wrong_length_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="a vector of 5 values for 67 parameters"):
        spine.vector_weights(model, torch.zeros(5))
