"""Reading padded batches with a recurrent network, without packing (chapter 04 derives both).

Chapter 04 shows these with ``inspect.getsource`` and builds its classifier on them; chapter 05's
GRU baseline reuses them. On a CPU, two GRUs on padded input are several times faster than one
bidirectional ``nn.GRU`` on a packed batch (chapter 04 times both), with the same numbers.

Example:
    >>> out, _ = gru(x)                               # x: (batch, time, features), padding at the end
    >>> final = last_valid_step(out, lengths)         # (batch, hidden): each row's state at length - 1
"""

from __future__ import annotations

import torch


def last_valid_step(out, lengths):
    """out (batch, time, hidden) -> (batch, hidden): the state at index lengths[b] - 1 of each row."""
    index = (lengths - 1).to(out.device).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
    return out.gather(dim=1, index=index).squeeze(1)


def reverse_within_length(x, lengths):
    """Reverse the first lengths[b] steps of each row of x (batch, time, features); padding stays put."""
    steps = torch.arange(x.shape[1], device=x.device)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def bidirectional_outputs(left_to_right, right_to_left, x, lengths):
    """Both directions' outputs (batch, time, hidden) of two ``batch_first`` GRUs/RNNs over padded x.

    The right-to-left one reads each row reversed within its length, so neither ever reads the
    padding before a valid step; its output is returned in *its* reading order (index t = the t-th
    character from the end), so each direction's final state is at ``lengths - 1``.
    """
    return left_to_right(x)[0], right_to_left(reverse_within_length(x, lengths))[0]
