import json

import pytest
import torch

from xrdid.instrument import get_instrument
from xrdid.models import CNNConfig, XRDClassifier, load_checkpoint, save_checkpoint
from xrdid.models.cnn import loss_fn


def tiny_model(n_points=512):
    torch.manual_seed(0)
    return XRDClassifier(CNNConfig(n_points=n_points, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0))


def test_forward_shapes():
    model = tiny_model()
    sg, cs = model(torch.rand(3, 2, 512))
    assert sg.shape == (3, 230) and cs.shape == (3, 7)


def test_one_step_lowers_the_loss():
    model = tiny_model()
    x = torch.rand(16, 2, 512)
    sg, cs = torch.randint(0, 230, (16,)), torch.randint(0, 7, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    before = loss_fn(model(x), sg, cs)
    opt.zero_grad()
    before.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after = loss_fn(model(x), sg, cs)
        model.train()
    assert after.item() < before.item()


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model()
    model.eval()
    inst = get_instrument({"preset": "cu", "n_points": 512})
    save_checkpoint(model, inst, tmp_path / "ck")
    loaded, inst2, meta = load_checkpoint(tmp_path / "ck")
    x = torch.rand(2, 2, 512)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], loaded(x)[0])
    assert inst2 == inst
    assert meta["crystal_systems"][0] == "triclinic" and len(meta["space_groups"]) == 230
    plain = tmp_path / "plain"
    plain.mkdir()  # the directory gets the mode mkdir gives, not mkdtemp's private 0o700
    assert ((tmp_path / "ck").stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_checkpoint_from_elsewhere_cannot_run_code(tmp_path):
    model = tiny_model()
    save_checkpoint(model, get_instrument({"preset": "cu", "n_points": 512}), tmp_path / "ck")

    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))

    torch.save({"payload": Evil()}, tmp_path / "ck" / "weights.pt")
    with pytest.raises(ValueError, match="could not load weights safely"):
        load_checkpoint(tmp_path / "ck")
    assert not (tmp_path / "PWNED").exists()


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="not an xrdid checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("architecture", ["resnet", "convnext", "plain"])
def test_architectures_shapes_step_and_round_trip(architecture, tmp_path):
    torch.manual_seed(0)
    cfg = CNNConfig(n_points=256, stem_channels=8, stage_channels=(8, 16), hidden=32, dropout=0.0, architecture=architecture)
    model = XRDClassifier(cfg)
    x = torch.rand(8, 2, 256)
    sg, cs = torch.randint(0, 230, (8,)), torch.randint(0, 7, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = loss_fn(model(x), sg, cs)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert loss_fn(model(x), sg, cs).item() < before.item()
    model.eval()
    save_checkpoint(model, get_instrument({"preset": "cu", "n_points": 256}), tmp_path / "ck")
    loaded, _, meta = load_checkpoint(tmp_path / "ck")
    assert meta["config"]["architecture"] == architecture
    with torch.no_grad():
        assert torch.allclose(model(x)[0], loaded(x)[0])


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        CNNConfig(architecture="transformer")


def test_old_checkpoint_config_without_architecture_loads():
    d = CNNConfig(n_points=256).to_dict()
    del d["architecture"], d["depth"]
    assert CNNConfig.from_dict(d).architecture == "resnet"
