"""The text encoder stopped after the deepest layer a pipeline reads.

``Flux2KleinPipeline`` runs the whole ``Qwen3ForCausalLM`` (every decoder layer, the final
norm and the LM head over all 512 padded tokens) with ``output_hidden_states=True``, then
keeps only ``hidden_states[k]`` for ``k`` in ``text_encoder_out_layers`` — (9, 18, 27) of
Qwen3-4B's 36 layers for Klein 4B. Layers past the deepest one and the LM head are
computed for nothing: about a third of the encoder's FLOPs (``benchmarks/encode_bench.py``).

:func:`early_exit` swaps the encoder's ``forward`` for the block: hooks take the needed
layers' outputs and stop the forward after the deepest, and the pipeline receives the
same ``hidden_states[k]`` (the last layer's as the final norm gives it, as transformers
does). The embeddings are bit-identical (tested).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Sequence


class _Stop(Exception):
    pass


@contextlib.contextmanager
def early_exit(text_encoder, layers: Sequence[int]):
    """Within the block, ``text_encoder(...)`` computes only up to ``max(layers)``; an
    encoder without the Qwen3 layout (``.model.layers``, ``.model.norm``) is left as is."""
    model = getattr(text_encoder, "model", None)
    blocks = getattr(model, "layers", None)
    if blocks is None or getattr(model, "norm", None) is None or not layers or \
            not all(1 <= k <= len(blocks) for k in layers):
        yield
        return
    n_layers, deepest = len(blocks), max(layers)

    def forward(input_ids=None, attention_mask=None, output_hidden_states=None, use_cache=None, **kwargs):
        got = {}

        def make(k):
            def hook(_module, _args, output):
                h = output[0] if isinstance(output, tuple) else output
                got[k] = model.norm(h) if k == n_layers else h
                if k == deepest:
                    raise _Stop
            return hook

        handles = [blocks[k - 1].register_forward_hook(make(k)) for k in sorted(set(layers))]
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return SimpleNamespace(hidden_states=tuple(got.get(k) for k in range(n_layers + 1)))

    text_encoder.forward = forward  # an instance attribute: shadows the class's forward for this block only
    try:
        yield
    finally:
        del text_encoder.forward
