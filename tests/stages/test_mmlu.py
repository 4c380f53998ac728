"""The LLM path offline: a tiny random Llama, a tokenizer trained here, a few fake MMLU rows."""

import csv

import numpy as np
import pytest
import torch
from helpers import make_tiny_llama, write_mmlu

from lpe.data.mmlu import MMLUError, build_prompts, read_split
from lpe.models.llm import load_model
from lpe.stages.mmlu import answer_log_probs, answer_token_ids
from lpe.stages.mmlu import main as mmlu
from lpe.stages.score import score_files


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return make_tiny_llama(tmp_path_factory.mktemp("llama"))


def test_prompts_are_k_shot_with_the_subjects_dev_questions(tmp_path):
    root = write_mmlu(tmp_path / "mmlu")
    prompts, labels = build_prompts(root, "test", shots=2)
    assert len(prompts) == 6 and labels.tolist() == [1, 0, 2] * 2
    first = prompts[0]
    assert first.startswith("The following are multiple choice questions (with answers) about")
    assert first.count("Answer:") == 3 and first.endswith("D. 4\nAnswer:")
    assert "Answer: B\n\n" in first  # a shot with its answer


def test_members_are_scored_on_the_four_answer_letters(tmp_path, tiny_llama):
    root = write_mmlu(tmp_path / "mmlu")
    common = ["predict", "--model", str(tiny_llama), "--mmlu", str(root), "--shots", "1",
              "--device", "cpu"]  # fmt: skip
    mmlu([*common, "--out", str(tmp_path / "fp32.npz")])
    mmlu([*common, "--format", "int4", "--members", "3", "--seed", "1",
          "--out", str(tmp_path / "bsr.npz")])  # fmt: skip
    with np.load(tmp_path / "fp32.npz") as f, np.load(tmp_path / "bsr.npz") as g:
        assert f["log_probs"].shape == (1, 6, 4) and g["log_probs"].shape == (3, 6, 4)
        np.testing.assert_allclose(np.exp(g["log_probs"]).sum(-1), 1.0, rtol=1e-5)
        assert not np.allclose(g["log_probs"][0], g["log_probs"][1])  # members differ
        assert str(g["model"]) == "tiny/llama" and int(g["bits"]) == 4
        assert g["member_bits"][0] < f["member_bits"][0]  # embeddings and head kept FP32
    scores = score_files([tmp_path / "fp32.npz", tmp_path / "bsr.npz"])
    assert set(scores["method"]) == {"fp32", "lpe-bsr"} and scores["nll"].notna().all()


def test_the_fp32_answer_log_probs_match_a_direct_forward(tmp_path, tiny_llama):
    model, tokenizer = load_model(tiny_llama)
    prompts, _ = build_prompts(write_mmlu(tmp_path / "mmlu"), "test", shots=1)
    batched = answer_log_probs(model, tokenizer, prompts, "cpu", batch_size=4)
    ids = answer_token_ids(tokenizer)
    with torch.no_grad():
        logits = model(**tokenizer(prompts[:1], return_tensors="pt")).logits[0, -1, ids]
    torch.testing.assert_close(batched[0], torch.log_softmax(logits, -1), atol=1e-4, rtol=1e-4)


def test_a_malformed_or_missing_mmlu_copy_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(MMLUError, match="does not exist; expected ROOT/dev/<subject>_dev.csv"):
        read_split(tmp_path / "nowhere", "test")
    root = write_mmlu(tmp_path / "mmlu")
    with (root / "test" / "bad_test.csv").open("w", newline="") as f:
        csv.writer(f).writerow(["Q?", "a", "b", "c", "d", "E"])
    with pytest.raises(MMLUError, match=r"bad_test.csv row 1 is malformed"):
        read_split(root, "test")


def test_a_bf16_models_members_are_rounded_from_its_fp32_masters(tmp_path, tiny_llama):
    """The stage's members (the library's, rounded from FP32 masters on the CPU) are the ones
    quantize() makes of the FP32 model, whatever dtype the model runs in: the bf16 run's bits
    and its members' first answers match a direct computation."""
    from lpe.evaluation.spine import member_weights
    from lpe.formats.number_formats import int_format
    from lpe.formats.policy import QuantPolicy
    from lpe.members.files import member_seed, quantize

    root = write_mmlu(tmp_path / "mmlu")
    out = tmp_path / "bf16.npz"
    mmlu(["predict", "--model", str(tiny_llama), "--mmlu", str(root), "--shots", "1",
          "--device", "cpu", "--format", "int4", "--members", "2", "--dtype", "bfloat16",
          "--out", str(out)])  # fmt: skip
    saved = np.load(out)
    masters = load_model(tiny_llama)[0].state_dict()
    # written out here, not taken from the stage: the attention and MLP projections of every
    # layer are quantized; the token embeddings, the norms and the output head stay FP32
    projections = [n for n in masters if n.endswith("_proj.weight")]
    policy = QuantPolicy(exclude=tuple(n for n in masters if n not in projections))
    model, tokenizer = load_model(tiny_llama, "bfloat16")
    prompts, _ = build_prompts(root, "test", shots=1)
    for k in range(2):
        member = quantize(masters, int_format(4), "bsr", member_seed(0, k), policy)
        assert sorted(member.codes) == sorted(projections) and projections
        assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(member.kept)
        assert saved["member_bits"][k] == member.bits
        weights = member_weights(model, member)
        direct = answer_log_probs(model, tokenizer, prompts, "cpu", 4, weights=weights)
        assert np.array_equal(saved["log_probs"][k], direct.numpy())


def test_bfloat16_weights_keep_an_fp32_head_and_stay_close_to_fp32(tmp_path, tiny_llama):
    model, tokenizer = load_model(tiny_llama, "bfloat16")
    assert model.lm_head.weight.dtype == torch.float32
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    prompts, _ = build_prompts(write_mmlu(tmp_path / "mmlu"), "test", shots=1)
    bf16 = answer_log_probs(model, tokenizer, prompts, "cpu")
    fp32 = answer_log_probs(*load_model(tiny_llama), prompts, "cpu")
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)  # the dtype is honoured ...
    torch.testing.assert_close(bf16, fp32, atol=0.05, rtol=0)  # ... and close to FP32


def test_an_interrupted_member_run_resumes_from_its_saved_members(
    tmp_path, tiny_llama, monkeypatch
):
    import lpe.stages.mmlu

    root = write_mmlu(tmp_path / "mmlu")
    args = ["predict", "--model", str(tiny_llama), "--mmlu", str(root), "--shots", "1",
            "--device", "cpu", "--format", "int4", "--members", "3"]  # fmt: skip
    mmlu([*args, "--out", str(tmp_path / "clean.npz")])
    forward = lpe.stages.mmlu.answer_log_probs
    calls = []

    def dies_on_the_third_member(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return forward(*a, **k)

    monkeypatch.setattr(lpe.stages.mmlu, "answer_log_probs", dies_on_the_third_member)
    out = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        mmlu([*args, "--out", str(out)])
    parts = tmp_path / "resumed.npz.members"
    assert sorted(p.name for p in parts.glob("member*.npz")) == ["member000.npz", "member001.npz"]
    calls.clear()

    def counted(*a, **k):
        calls.append(1)
        return forward(*a, **k)

    monkeypatch.setattr(lpe.stages.mmlu, "answer_log_probs", counted)
    mmlu([*args, "--out", str(out)])
    assert len(calls) == 1  # only the member that was lost
    with np.load(tmp_path / "clean.npz") as f, np.load(out) as g:
        np.testing.assert_array_equal(f["log_probs"], g["log_probs"])
        np.testing.assert_array_equal(f["member_bits"], g["member_bits"])
    assert not parts.exists()
    # saved members of another run are refused, not mixed in
    parts.mkdir()
    (parts / "run.json").write_text('{"seed": 99}')
    with pytest.raises(MMLUError, match="holds members of another run"):
        mmlu([*args, "--out", str(out)])
