"""lpe.LowPrecisionEnsemble on other people's models: a timm ViT, a timm CNN with BatchNorm and
depthwise convolutions, tiny Hugging Face causal LMs. Each is checked against a hand-written loop
over the members (each member's weights loaded into a copy of the model), bit for bit."""

import copy
import math

import numba
import pytest
import timm
import torch

from lpe import LowPrecisionEnsemble
from lpe.core.artifacts import ArtifactError
from lpe.evaluation.spine import member_weights
from lpe.evaluation.temperature import fit_temperature
from lpe.formats.number_formats import get_format
from lpe.formats.policy import QuantPolicy, policy_for
from lpe.formats.rounding import dequantize
from lpe.members.files import member_seed, quantize

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def tiny_vit():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT).eval()


def tiny_cnn():
    """EfficientNet-Lite0's layout (depthwise convolutions, BatchNorm), 5 classes, with BatchNorm
    statistics that are not the initial ones (so a member that lost them would show)."""
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=5)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


def hand_written(model, fmt, members, seed, *inputs):
    """The ensemble the long way: each member drawn with quantize(), loaded into a copy of the
    model; the members' log-softmax and their average in probability."""
    state, seen = {}, set()
    for k, v in model.state_dict(keep_vars=True).items():  # a tied tensor once, first name
        if id(v) not in seen:
            seen.add(id(v))
            state[k] = v.detach().clone()
    policy = policy_for(model)
    # GPT-2's Conv1D stores (in, out): rounded transposed, one scale per output channel
    stored_in_out = {
        f"{n}.weight" for n, m in model.named_modules() if type(m).__name__ == "Conv1D"
    }
    stored_in_out &= {n for n, t in state.items() if policy.quantizes(n, t)}
    state = {n: t.t() if n in stored_in_out else t for n, t in state.items()}
    outputs = []
    for k in range(members):
        member = quantize(state, get_format(fmt), "bsr", member_seed(seed, k), policy)
        copied = copy.deepcopy(model)
        target = copied.state_dict(keep_vars=True)
        with torch.no_grad():
            for name, codes in member.codes.items():
                value = dequantize(member.fmt, codes, member.scales[name])
                target[name].copy_(value.t() if name in stored_in_out else value)
            for name, value in member.kept.items():
                target[name].copy_(value)
        with torch.no_grad():
            out = copied(*inputs)
        logits = out.logits if hasattr(out, "logits") else out
        outputs.append(torch.log_softmax(logits.float(), -1))
    stacked = torch.stack(outputs)
    return stacked, torch.logsumexp(stacked, 0) - math.log(members)


@pytest.mark.parametrize("build", [tiny_vit, tiny_cnn], ids=["timm-vit", "timm-cnn"])
@pytest.mark.parametrize("fmt", ["int4", "fp6_e2m3"])
def test_the_ensemble_equals_a_hand_written_loop_over_its_members(build, fmt):
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ensemble = LowPrecisionEnsemble(model, fmt, members=3, seed=4)
    member_lps = ensemble.member_log_probs(x)
    assert member_lps.shape == (3, 6, 5)
    assert not torch.equal(member_lps[0], member_lps[1])  # BSR members differ
    members, expected = hand_written(model, fmt, 3, 4, x)
    assert torch.equal(member_lps, members)  # each member bit for bit
    # the ensemble accumulates members as they come (a running log-sum-exp): the last bits
    assert torch.allclose(ensemble(x), expected, rtol=0, atol=1e-6)
    for name, tensor in model.state_dict().items():  # the model's own weights are untouched
        assert torch.equal(tensor, before[name]), name


def test_the_cnn_policy_keeps_its_stem_head_and_batchnorm():
    ensemble = LowPrecisionEnsemble(tiny_cnn(), "int5", members=2)
    member = next(ensemble.members())
    assert "conv_stem.weight" in member.kept and "classifier.weight" in member.kept
    assert all(name in member.kept for name in member.kept if ".bn" in name)
    assert not any(".bn" in name for name in member.codes)
    depthwise = [n for n in member.codes if "conv_dw" in n]
    assert depthwise and all(member.codes[n].shape[1] == 1 for n in depthwise)


def test_the_model_is_left_as_it_was_also_after_an_exception():
    model = tiny_cnn().train()  # the caller's mode: training (BatchNorm on batch statistics)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ensemble = LowPrecisionEnsemble(model, "int4", members=2)
    x = torch.randn(2, 3, 32, 32)
    evaluated = ensemble(x)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    model.eval()
    assert torch.equal(ensemble(x), evaluated)  # members run in eval mode either way
    model.train()
    with pytest.raises(Exception):  # noqa: B017 (whatever the model raises on a wrong shape)
        ensemble(torch.randn(2, 5, 32, 32))
    assert model.training
    for name, tensor in model.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(tensor, before[name]), name


def loader_of(seed, n=12, batch=4):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 5, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_save_and_load_round_trip_and_other_weights_are_refused(tmp_path):
    model = tiny_cnn()
    x = torch.randn(4, 3, 32, 32)
    ensemble = LowPrecisionEnsemble(model, "nf4", members=3, seed=2)
    temperature = ensemble.calibrate(loader_of(7))
    path = tmp_path / "e.safetensors"
    bits = ensemble.save(path)
    again = LowPrecisionEnsemble.load(path, model)
    assert (len(again), again.seed, again.temperature, again.bits) == (3, 2, temperature, bits)
    assert again.rtn() is None  # RTN is stored only when asked
    assert torch.equal(again(x), ensemble(x))
    for a, b in zip(again.members(), ensemble.members(), strict=True):
        assert all(torch.equal(a.codes[n], b.codes[n]) for n in a.codes)
    other = tiny_cnn()  # another random initialisation: other weights
    with pytest.raises(ArtifactError, match="made from other weights"):
        LowPrecisionEnsemble.load(path, other)


def test_the_rtn_member_costs_one_more_bit_per_quantized_weight(tmp_path):
    model = tiny_vit()
    without = LowPrecisionEnsemble(model, "int5", members=4)
    with_rtn = LowPrecisionEnsemble(model, "int5", members=4, with_rtn=True)
    quantized = sum(c.numel() for c in next(without.members()).codes.values())
    planes = lambda e: sum(p.size for p in e.shared.planes.values())  # noqa: E731
    assert planes(with_rtn) - planes(without) == sum(
        (c.numel() + 7) // 8 for c in next(without.members()).codes.values()
    )
    assert with_rtn.bits - without.bits == pytest.approx(quantized, rel=0.01)
    rtn = with_rtn.rtn()
    state = model.state_dict()
    direct = quantize(state, get_format("int5"), "rtn", policy=policy_for(model))
    assert all(torch.equal(rtn.codes[n], c) for n, c in direct.codes.items())
    # the same LPE-BSR members either way
    for a, b in zip(with_rtn.members(), without.members(), strict=True):
        assert all(torch.equal(a.codes[n], b.codes[n]) for n in a.codes)


def test_calibrate_fits_the_ensembles_temperature_on_the_given_data_only():
    model = tiny_vit()
    ensemble = LowPrecisionEnsemble(model, "int4", members=2)
    held_out = loader_of(3)
    x = torch.cat([xb for xb, _ in held_out])
    y = torch.cat([yb for _, yb in held_out])
    raw = torch.cat([ensemble.log_probs(xb) for xb, _ in held_out])  # the same batches
    expected = fit_temperature(raw[None], y)
    assert ensemble.calibrate(held_out) == pytest.approx(expected, rel=1e-9)
    assert ensemble.temperature == expected
    at_t = ensemble.evaluate(held_out)[0]
    assert torch.allclose(at_t, torch.log_softmax(raw / expected, -1), atol=1e-6)
    assert torch.allclose(ensemble.log_probs(x[:4]), at_t[:4], atol=1e-6)


def test_drawing_and_evaluating_leave_the_callers_thread_counts_alone():
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    try:
        ensemble = LowPrecisionEnsemble(tiny_vit(), "fp6_e2m3", members=2)  # the numba kernels
        ensemble(torch.randn(2, 3, 32, 32))
        assert torch.get_num_threads() == 1
        assert numba.get_num_threads() == numba_threads
    finally:
        torch.set_num_threads(torch_threads)


def tiny_lm(family: str):
    import transformers

    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                         n_positions=64)  # fmt: skip
        return transformers.GPT2LMHeadModel(config).eval()
    config = transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_causal_lm_ensemble_averages_next_token_probabilities(family):
    model = tiny_lm(family)
    tokens = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    ensemble = LowPrecisionEnsemble(model, "int4", members=3, seed=1)
    member = next(ensemble.members())
    embeddings = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    # a tied head (GPT-2's) is the embedding table itself: kept once, under its first name
    names = {}
    for n, t in model.state_dict(keep_vars=True).items():
        names.setdefault(id(t), n)
    assert names[id(embeddings)] in member.kept and names[id(head)] in member.kept
    assert len(member.codes) > 0  # the attention and MLP weights are quantized
    log_probs = ensemble(tokens).logits  # as the model's output: code for it takes the ensemble
    assert torch.equal(log_probs, ensemble.log_probs(tokens))
    assert log_probs.shape == (2, 7, 100)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 7), atol=1e-5)
    members, expected = hand_written(model, "int4", 3, 1, tokens)
    assert torch.equal(ensemble.member_log_probs(tokens), members)
    assert torch.allclose(log_probs, expected, rtol=0, atol=1e-6)


def test_the_python_example_that_opens_docs_apply_runs(tmp_path, monkeypatch):
    """docs/apply.md's example, at most 12 lines, run as written on a generated Imagenette-like
    folder (WordNet-id class folders), offline: random weights and 2 members instead of 10."""
    from pathlib import Path

    from helpers import image_folder

    from lpe.data.images import imagenet_wnids

    text = (Path(__file__).resolve().parents[2] / "docs" / "apply.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    val = tmp_path / "imagenette2-320" / "val"
    image_folder(val, 2, per_class=5, size=32)
    wnids = imagenet_wnids()
    for c, index in enumerate((0, 217)):  # tench and English springer, as Imagenette's
        (val / f"n{c:08d}").rename(val / wnids[index])
    code = code.replace("pretrained=True", "pretrained=False").replace("members=10", "members=2")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "docs/apply.md", "exec"), namespace)  # noqa: S102 (the docs' own code)
    log_probs, labels = namespace["log_probs"], namespace["labels"]
    assert log_probs.shape == (8, 1000) and set(labels.tolist()) <= {0, 217}
    same, ensemble = namespace["same"], namespace["ensemble"]
    assert same.temperature == ensemble.temperature != 1.0 and len(same) == 2


def test_a_loader_that_cannot_be_read_the_same_way_for_every_member_is_refused():
    model = tiny_cnn()
    ensemble = LowPrecisionEnsemble(model, "int5", members=2, seed=0)
    batches = loader_of(3, n=16)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    dataset = torch.utils.data.TensorDataset(x, y)
    expected, labels = ensemble.evaluate(batches)
    # a DataLoader without shuffling is read the same way every time: the same ensemble
    same, same_labels = ensemble.evaluate(torch.utils.data.DataLoader(dataset, batch_size=4))
    assert torch.equal(same_labels, labels) and torch.allclose(same, expected, atol=1e-6)
    with pytest.raises(ValueError, match="shuffle=True"):
        ensemble.evaluate(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True))
    with pytest.raises(ValueError, match="one-shot iterator"):
        ensemble.calibrate(iter(batches))

    class Reshuffled:  # re-iterable, but another order on every pass
        passes = 0

        def __iter__(self):
            self.passes += 1
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.passes))
            return iter([(x[order[i : i + 4]], y[order[i : i + 4]]) for i in range(0, 16, 4)])

    with pytest.raises(ValueError, match="other batches on another pass"):
        ensemble.evaluate(Reshuffled())


def test_the_file_vouches_for_the_weights_the_members_were_drawn_from(tmp_path):
    model = tiny_cnn()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    ensemble = LowPrecisionEnsemble(model, "int5", members=2, seed=0)
    with torch.no_grad():  # the caller changes the model after the members were drawn
        next(model.parameters()).add_(1.0)
    path = tmp_path / "e.safetensors"
    ensemble.save(path)
    with pytest.raises(ArtifactError, match="made from other weights"):
        LowPrecisionEnsemble.load(path, model)  # the changed weights
    model.load_state_dict(original)
    LowPrecisionEnsemble.load(path, model)  # the weights the members come from


class _WithExtraState(torch.nn.Module):
    """A module with get_extra_state (state_dict holds a dict beside the tensors), returning a
    tuple when asked to."""

    def __init__(self, as_tuple=False):
        super().__init__()
        self.hidden, self.out, self.as_tuple = (
            torch.nn.Linear(4, 8),
            torch.nn.Linear(8, 3),
            as_tuple,
        )

    def get_extra_state(self):
        return {"version": 1}

    def set_extra_state(self, state):
        pass

    def forward(self, x):
        logits = self.out(self.hidden(x))
        return (logits, x) if self.as_tuple else logits


def test_extra_state_is_not_a_weight_and_a_tuple_output_is_a_clear_error(tmp_path):
    x = torch.randn(5, 4)
    ensemble = LowPrecisionEnsemble(_WithExtraState(), "int4", members=2)
    assert ensemble(x).shape == (5, 3)
    assert "out.weight" in next(ensemble.members()).codes  # the first layer stays FP32 by role
    ensemble.save(tmp_path / "e.safetensors")
    LowPrecisionEnsemble.load(tmp_path / "e.safetensors", ensemble.model)
    with pytest.raises(TypeError, match="returned a tuple, not logits"):
        LowPrecisionEnsemble(_WithExtraState(as_tuple=True), "int4", members=2)(x)


class _Tied(torch.nn.Module):
    """A decoder whose weight is its encoder's (``dec.weight = enc.weight``), both quantizable."""

    def __init__(self):
        super().__init__()
        self.stem, self.enc, self.dec = (torch.nn.Linear(6, 8), torch.nn.Linear(8, 8),
                                         torch.nn.Linear(8, 8))  # fmt: skip
        self.dec.weight = self.enc.weight  # tied: one tensor under two names

    def forward(self, x):
        return self.dec(torch.relu(self.enc(self.stem(x))))


def test_a_tied_weight_is_rounded_stored_and_counted_once(tmp_path):
    model = _Tied()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    ensemble = LowPrecisionEnsemble(
        model, "int4", members=2, seed=0, policy=QuantPolicy(exclude=())
    )
    member = next(ensemble.members())
    assert "enc.weight" in member.codes and "dec.weight" not in member.codes | member.kept
    # the member's one rounding, written into a copy of the tied model, gives the same output
    tied = copy.deepcopy(model)
    with torch.no_grad():
        for name, value in member_weights(tied, member).items():
            tied.get_parameter(name).copy_(value)
    assert tied.dec.weight is tied.enc.weight
    with torch.no_grad():
        expected = torch.log_softmax(tied(x), -1)
    assert torch.allclose(ensemble.member_log_probs(x)[0], expected, atol=1e-6)
    quantized = sum(c.numel() for c in member.codes.values())
    assert quantized == sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2)
    ensemble.save(tmp_path / "e.safetensors")
    again = LowPrecisionEnsemble.load(tmp_path / "e.safetensors", model)
    assert torch.equal(again(x), ensemble(x))


def test_gpt2_conv1d_weights_get_one_scale_per_output_channel(tmp_path):
    """GPT-2's Conv1D stores its weight (in, out): its scales are per output channel (per column
    of the stored weight), as docs/apply.md says, and the file keeps that through a round trip."""
    model = tiny_lm("gpt2")
    ensemble = LowPrecisionEnsemble(model, "int4", members=2, seed=0)
    member = next(ensemble.members())
    name = "transformer.h.0.mlp.c_fc.weight"  # Conv1D(128, 32): stored (32 in, 128 out)
    weight = model.get_parameter(name).detach()
    assert weight.shape == (32, 128) and name in member.codes
    expected = weight.abs().amax(dim=0, keepdim=True).t() / 7  # INT-4: qmax 7, per output column
    assert torch.allclose(member.scales[name], expected)
    decoded = member_weights(model, member)[name]
    assert decoded.shape == weight.shape
    units = decoded / expected.t()  # on each output column's own grid, a step from the weight
    assert torch.allclose(units, units.round(), atol=1e-4)
    assert (decoded - weight).abs().le(expected.t() * (1 + 1e-5)).all()
    ensemble.save(tmp_path / "gpt2.safetensors")
    again = LowPrecisionEnsemble.load(tmp_path / "gpt2.safetensors", model)
    assert torch.equal(member_weights(model, next(again.members()))[name], decoded)


def test_the_members_travel_with_the_state_dict(tmp_path):
    """The ensemble is a Module whose members are part of its state: torch.save of its
    state_dict keeps them (readable with weights_only=True), and load_state_dict into another
    ensemble of the same model gives back the saved members, format, M and temperature."""
    model = tiny_vit()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ensemble = LowPrecisionEnsemble(model, "int4", members=3, seed=5)
    ensemble.temperature = 1.25
    torch.save(ensemble.state_dict(), tmp_path / "ensemble.pt")
    state = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    assert any(key.startswith("model.") for key in state)  # the FP32 model, as any module's
    other = LowPrecisionEnsemble(model, "fp6_e2m3", members=1, seed=0)
    other.load_state_dict(state)
    assert (other.fmt.name, len(other), other.seed, other.temperature) == ("int4", 3, 5, 1.25)
    assert torch.equal(other(x), ensemble(x))
    for a, b in zip(other.members(), ensemble.members(), strict=True):
        assert all(torch.equal(a.codes[n], b.codes[n]) for n in b.codes)
    other.save(tmp_path / "e.safetensors")  # and it vouches for the same weights
    assert torch.equal(LowPrecisionEnsemble.load(tmp_path / "e.safetensors", model)(x), other(x))


def test_keep_decoded_decodes_each_member_once_and_changes_no_output():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = LowPrecisionEnsemble(model, "int4", members=3, seed=2)
    kept = LowPrecisionEnsemble(model, "int4", members=3, seed=2, keep_decoded=True)
    decoded = {id(plain): [], id(kept): []}
    for ensemble in (plain, kept):
        member, calls = ensemble.shared.member, decoded[id(ensemble)]
        ensemble.shared.member = lambda m, member=member, calls=calls: calls.append(m) or member(m)
    for _ in range(3):
        assert torch.equal(kept(x), plain(x))
    assert torch.equal(kept.member_log_probs(x), plain.member_log_probs(x))
    assert decoded[id(plain)] == [0, 1, 2] * 4 and decoded[id(kept)] == [0, 1, 2]
    model.double()  # another dtype: decoded again, in it
    assert kept(x.double()).dtype == torch.float32 and decoded[id(kept)] == [0, 1, 2] * 2
