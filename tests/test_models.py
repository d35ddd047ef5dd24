"""Model families: the published parameter counts and the architecture switches."""
from __future__ import annotations

import pytest
import torch

from landscape.models import build_model, count_params


@pytest.mark.parametrize("skip,bn,expected", [
    (True, True, 272_474), (True, False, 270_906), (False, True, 269_722), (False, False, 268_346),
])
def test_resnet20_matches_the_write_ups_parameter_counts(skip, bn, expected):
    m = build_model("resnet", {"depth": 20, "skip": skip, "batch_norm": bn}, (3, 32, 32))
    assert count_params(m) == expected
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fmnist_cnn_has_422k_parameters_and_bn_adds_only_bn():
    plain = build_model("cnn", {"channels": [32, 64], "fc": [128]}, (1, 28, 28))
    bn = build_model("cnn", {"channels": [32, 64], "fc": [128], "batch_norm": True}, (1, 28, 28))
    assert count_params(plain) == 421_642
    # BN drops the two conv biases (96) and adds scale+shift per channel (192)
    assert count_params(bn) == 421_642 - 96 + 192
    assert bn(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_mlp_widths_and_flattening():
    m = build_model("mlp", {"widths": [32, 16]}, (1, 28, 28))
    assert count_params(m) == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


def test_zero_init_residual_makes_every_block_start_as_identity_then_relu():
    m = build_model("resnet", {"depth": 20, "batch_norm": False, "zero_init_residual": True}, (1, 28, 28))
    block = m.blocks[0]
    x = torch.randn(2, 16, 8, 8).relu()
    assert torch.allclose(block(x), x)


def test_bad_depth_is_refused():
    with pytest.raises(ValueError, match="depth = 21 must be 6n\\+2"):
        build_model("resnet", {"depth": 21}, (3, 32, 32))
