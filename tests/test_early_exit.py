"""The text encoder's early exit gives the pipeline's own prompt embeddings, bit for bit."""

from __future__ import annotations

import pytest
import torch

from plantain_core.models.early_exit import early_exit
from plantain_core.models import TinyLoader, tiny


@pytest.fixture(scope="module")
def pipe():
    return TinyLoader().load("tiny", "cpu").pipeline


def _encode(pipe, layers, *, exit_early: bool):
    prompts = ["a red cube on a table", "a blue sphere in the rain, seen from far away"]
    with torch.inference_mode():
        if exit_early:
            with early_exit(pipe.text_encoder, layers):
                return pipe.encode_prompt(prompt=prompts, device="cpu", max_sequence_length=512,
                                          text_encoder_out_layers=layers)[0]
        return pipe.encode_prompt(prompt=prompts, device="cpu", max_sequence_length=512,
                                  text_encoder_out_layers=layers)[0]


@pytest.mark.parametrize("layers", [tiny.TEXT_OUT_LAYERS, (1,), (2, 1), (1, 3, 2)])
def test_early_exit_embeddings_are_bit_identical(pipe, layers):
    full = _encode(pipe, layers, exit_early=False)
    early = _encode(pipe, layers, exit_early=True)
    assert torch.equal(full, early)
    assert "forward" not in vars(pipe.text_encoder)  # the swap is undone


def test_early_exit_stops_after_the_deepest_layer_needed(pipe):
    ran = []
    handles = [layer.register_forward_hook(lambda m, a, o, k=k: ran.append(k))
               for k, layer in enumerate(pipe.text_encoder.model.layers, start=1)]
    try:
        _encode(pipe, (1,), exit_early=True)
        assert ran == [1]  # layers 2.. and the LM head never ran
        ran.clear()
        _encode(pipe, (1,), exit_early=False)
        assert ran == list(range(1, len(pipe.text_encoder.model.layers) + 1))
    finally:
        for h in handles:
            h.remove()


def test_an_encoder_of_another_shape_is_left_alone():
    class Other(torch.nn.Module):
        def forward(self, x):
            return x + 1

    enc = Other()
    with early_exit(enc, (1, 2)):
        assert enc(torch.zeros(1)).item() == 1.0
    assert "forward" not in vars(enc)
