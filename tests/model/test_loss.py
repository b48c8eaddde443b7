"""The masked loss (eq. 1) against a hand computation; 0 is a rating, not a gap."""

from __future__ import annotations

import math

import torch

from deeprec.step.loss import masked_mse, masked_sse


def test_masked_loss_matches_hand_computation_with_zero_ratings() -> None:
    target = torch.tensor([[0.0, 4.0, 0.0], [2.0, 0.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # (0,0) is a real 0 rating
    pred = torch.tensor([[0.5, 3.0, 9.0], [7.0, -3.0, 4.0]])
    # observed: (0,0): 0.5-0 ; (0,1): 3-4 ; (1,2): 4-5 -> squares 0.25, 1, 1
    assert masked_sse(pred, target, mask).item() == 2.25
    assert math.isclose(masked_mse(pred, target, mask).item(), 2.25 / 3)


def test_masked_loss_ignores_unobserved_entries_whatever_their_value() -> None:
    target = torch.tensor([[1.0, 2.0]])
    mask = torch.tensor([[1.0, 0.0]])
    a = masked_mse(torch.tensor([[1.5, 100.0]]), target, mask)
    b = masked_mse(torch.tensor([[1.5, -7.0]]), target, mask)
    assert a.item() == b.item() == 0.25


def test_masked_loss_of_an_empty_mask_is_zero_not_nan() -> None:
    zero = masked_mse(torch.ones(2, 2), torch.zeros(2, 2), torch.zeros(2, 2))
    assert zero.item() == 0.0
