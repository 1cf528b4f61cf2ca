"""labutils.rnn: reading padded batches without packing gives the numbers of a packed nn.GRU."""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from labutils.rnn import bidirectional_outputs, last_valid_step, reverse_within_length


def padded_batch(seed=0, batch=6, steps=9, features=3):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
    lengths[0], lengths[1] = 1, steps                               # a one-step row and a full one
    x = torch.randn(batch, steps, features, generator=generator, dtype=torch.float64)
    x[torch.arange(steps) >= lengths[:, None]] = 0.0                # padding after each row
    return x, lengths


def test_last_valid_step_reads_index_length_minus_one():
    out = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    expected = torch.stack([out[0, 0], out[1, 2]])
    torch.testing.assert_close(last_valid_step(out, torch.tensor([1, 3])), expected)


def test_reverse_within_length_keeps_padding_in_place_and_is_its_own_inverse():
    x, lengths = padded_batch()
    reversed_x = reverse_within_length(x, lengths)
    for row, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(reversed_x[row, :n], x[row, :n].flip(0))
        torch.testing.assert_close(reversed_x[row, n:], x[row, n:])
    torch.testing.assert_close(reverse_within_length(reversed_x, lengths), x)


def test_two_grus_on_padded_input_equal_a_packed_bidirectional_gru():
    x, lengths = padded_batch(seed=1)
    torch.manual_seed(0)
    bigru = nn.GRU(3, 4, batch_first=True, bidirectional=True).double()
    left_to_right, right_to_left = (nn.GRU(3, 4, batch_first=True).double() for _ in range(2))
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(left_to_right, name).copy_(getattr(bigru, name))
            getattr(right_to_left, name).copy_(getattr(bigru, name + "_reverse"))
        packed_out, h_n = bigru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        packed_out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        forward_out, backward_out = bidirectional_outputs(left_to_right, right_to_left, x, lengths)
    torch.testing.assert_close(last_valid_step(forward_out, lengths), h_n[0])
    torch.testing.assert_close(last_valid_step(backward_out, lengths), h_n[1])
    valid = torch.arange(x.shape[1]) < lengths[:, None]
    torch.testing.assert_close(forward_out[valid], packed_out[..., :4][valid])
    # the packed output is in time order; ours reads right to left, so put it back in time order to compare
    backward_in_time_order = reverse_within_length(backward_out, lengths)
    torch.testing.assert_close(backward_in_time_order[valid], packed_out[..., 4:][valid])
