"""A native checkpoint's projector is built in its stored layer order, not the inferred official one."""

import torch

from styleexpert_core import ProjectorConfig, StyleExpertCheckpoint, StyleProjector, load_checkpoint, save_native
from styleexpert_core.projector import build_projector

REVERSED = ProjectorConfig(layers=(-20, -11, -2), num_tokens=16, style_tokens=2, width=32, out_dim=4)


def test_projector_follows_the_stored_layer_order(tmp_path):
    torch.manual_seed(0)
    trained = StyleProjector(REVERSED)
    save_native(StyleExpertCheckpoint(projector=trained.state_dict(), projector_config=REVERSED),
                tmp_path / "reversed.safetensors")
    ckpt = load_checkpoint(tmp_path / "reversed.safetensors")
    assert ckpt.projector_config.layers == (-20, -11, -2)
    hidden = torch.randn(2, 21, 16, 32)
    with torch.no_grad():
        expected = trained(hidden)
        torch.testing.assert_close(ckpt.build_projector()(hidden), expected)
        # The latent's first block comes from layer -20; a projector built from the tensors alone
        # (official order -2, -11, -20) puts another layer there.
        block = REVERSED.style_tokens * REVERSED.out_dim
        inferred = build_projector(ckpt.projector, "tensors only")(hidden)
        assert not torch.allclose(inferred[:, :block], expected[:, :block])
