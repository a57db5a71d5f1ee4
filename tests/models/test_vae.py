"""The VAE: shapes, one optimiser step, the masked reconstruction, and its checkpoint files."""

import json

import pytest
import torch

from xrdid.instrument import get_instrument
from xrdid.models.vae import XRDVAE, LossWeights, VAEConfig, has_vae, load_vae, save_vae, squared_error, vae_loss

TINY = VAEConfig(n_points=512, stem_channels=8, stage_channels=(8, 16), hidden=32, latent=4, classifier_hidden=16, dropout=0.0)


def tiny_model():
    torch.manual_seed(0)
    return XRDVAE(TINY)


def test_forward_shapes():
    out = tiny_model()(torch.rand(3, 2, 512))
    assert out["mu"].shape == out["logvar"].shape == (3, 4)
    assert out["recon_logits"].shape == (3, 512)
    assert out["sg"].shape == (3, 230) and out["cs"].shape == (3, 7)


def test_grid_must_fit_the_strides():
    with pytest.raises(ValueError, match="multiple of"):
        VAEConfig(n_points=500, stage_channels=(8, 16))


def test_one_step_lowers_the_loss():
    model = tiny_model()
    x = torch.rand(16, 2, 512)
    x[:, 1] = 1.0
    sg, cs = torch.randint(0, 230, (16,)), torch.randint(0, 7, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    w = LossWeights()
    model.eval()  # no sampling of z, no batch-norm update: the same function before and after
    with torch.no_grad():
        before, _ = vae_loss(model(x), x, sg, cs, w)
    model.train()
    loss, _ = vae_loss(model(x, sample=False), x, sg, cs, w)
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after, _ = vae_loss(model(x), x, sg, cs, w)
    assert after.item() < before.item()


def test_points_outside_the_coverage_are_not_reconstructed():
    x = torch.zeros(1, 2, 8)
    x[0, 0] = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1.0])
    x[0, 1] = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0.0])
    logits = torch.full((1, 8), -30.0)  # t̂ ≈ 0 everywhere
    # Only the two covered points with y = 1 count: (√1 − 0)² each.
    assert squared_error(logits, x).item() == pytest.approx(2.0, abs=1e-6)


def test_checkpoint_round_trip_beside_a_cnn(tmp_path):
    model = tiny_model().eval()
    inst = get_instrument({"preset": "cu", "n_points": 512})
    (tmp_path / "model.json").write_text("{}")  # a CNN's file in the same directory is left alone
    save_vae(model, inst, tmp_path, extra={"novelty": {"n": 1}})
    assert has_vae(tmp_path) and (tmp_path / "model.json").read_text() == "{}"
    loaded, inst2, meta = load_vae(tmp_path)
    x = torch.rand(2, 2, 512)
    with torch.no_grad():
        assert torch.allclose(model(x)["recon_logits"], loaded(x)["recon_logits"])
    assert inst2 == inst and meta["novelty"] == {"n": 1} and meta["config"]["latent"] == 4
    # Shipped in the package beside the CNN: as readable as any file this process creates.
    (tmp_path / "reference").write_text("")
    mode = (tmp_path / "reference").stat().st_mode & 0o777
    assert {(tmp_path / f).stat().st_mode & 0o777 for f in ("vae.json", "vae.pt")} == {mode}


def test_load_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no xrdid VAE here"):
        load_vae(tmp_path)
    save_vae(tiny_model(), get_instrument({"preset": "cu", "n_points": 512}), tmp_path)
    meta = json.loads((tmp_path / "vae.json").read_text())
    (tmp_path / "vae.json").write_text(json.dumps({**meta, "format": "other/9"}))
    with pytest.raises(ValueError, match="vae.json: unsupported checkpoint format 'other/9'"):
        load_vae(tmp_path)
    (tmp_path / "vae.json").write_text(json.dumps(meta))
    (tmp_path / "vae.pt").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="vae.pt: could not load weights safely"):
        load_vae(tmp_path)
