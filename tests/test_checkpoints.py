import pytest

from lpe.artifacts import ArtifactError
from lpe.checkpoints import checkpoint_info, load_checkpoint


def test_checkpoint_round_trips(checkpoint):
    state, info = load_checkpoint(checkpoint)
    assert info.model == "vit_mini_t" and info.backward_passes == 7
    assert checkpoint_info(checkpoint) == info
    info.build().load_state_dict(state)


def test_truncated_checkpoint_names_the_file_and_what_to_do(checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(ArtifactError) as err:
        load_checkpoint(checkpoint)
    assert str(checkpoint) in str(err.value) and "rerun the workflow" in str(err.value)


def test_corrupted_checkpoint_is_refused(checkpoint):
    raw = bytearray(checkpoint.read_bytes())
    raw[-5] ^= 0x10
    checkpoint.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_checkpoint(checkpoint)


def test_a_member_file_is_not_a_checkpoint(tmp_path, vit_state):
    from lpe.members import quantize, save_member
    from lpe.numbers import IntFormat

    path = tmp_path / "m.safetensors"
    save_member(path, quantize(vit_state, IntFormat(4), "rtn"), {})
    with pytest.raises(ArtifactError, match="not an LPE checkpoint"):
        checkpoint_info(path)
