"""Prompt encoding: the pipeline's encoder call vs an early exit (the runner uses
``plantain_core.models.early_exit``, the same technique, since session 2).

``Flux2KleinPipeline._get_qwen3_prompt_embeds`` runs the whole ``Qwen3ForCausalLM``
(every decoder layer, the final norm and the LM head over all 512 padded tokens) with
``output_hidden_states=True`` and then keeps only the hidden states of layers
``text_encoder_out_layers`` — (9, 18, 27) of Qwen3-4B's 36 for Klein 4B. Layers 28–36
and the LM head (151,936 × 2,560 per token) are computed for nothing: by the analytic
count about a third of the encoder's FLOPs (``klein_encoder_flops``).

:func:`encode_early_exit` computes the same embeddings with forward hooks on the needed
decoder layers and stops the forward after the last one (``Qwen3Model`` only, no LM
head). ``run()`` checks that both give the same numbers and times them interleaved on
a CPU-sized Qwen3 with Qwen3-4B's depth (36 layers, out layers 9/18/27) but a narrow
width, so only the skipped layers show (the LM head's share needs the real vocabulary
and width: ``--full-klein`` measures that on a GPU).
"""

from __future__ import annotations

from typing import Any, Sequence

from .common import interleaved, log, ratio

#: Qwen3-4B (the Klein 4B text encoder), from its published config.
QWEN3_4B = {"hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
            "tie_word_embeddings": True, "rope_theta": 1000000.0}
OUT_LAYERS = (9, 18, 27)


def tokenize(tokenizer, prompts: Sequence[str], max_length: int = 512):
    """input_ids and attention_mask exactly as the pipeline builds them (chat template, padded)."""
    import torch

    ids, masks = [], []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=False)
        enc = tokenizer(text, return_tensors="pt", padding="max_length", truncation=True, max_length=max_length)
        ids.append(enc["input_ids"])
        masks.append(enc["attention_mask"])
    return torch.cat(ids), torch.cat(masks)


def _stack(hidden_states, layers):
    import torch

    x = torch.stack([hidden_states[k] for k in layers], dim=1)
    b, c, t, h = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, c * h)


def encode_reference(text_encoder, input_ids, attention_mask, layers=OUT_LAYERS):
    """What the pipeline does: the full model with every hidden state, then the chosen ones."""
    out = text_encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    return _stack(out.hidden_states, layers)


def encode_early_exit(text_encoder, input_ids, attention_mask, layers=OUT_LAYERS):
    """The same embeddings through the runner's own early exit (``plantain_core.models.early_exit``):
    the forward stops after the deepest layer needed, no LM head."""
    from plantain_core.models.early_exit import early_exit

    with early_exit(text_encoder, layers):
        out = text_encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                           use_cache=False)
    return _stack(out.hidden_states, layers)


def klein_encoder_flops(tokens: int = 512, layers=OUT_LAYERS, cfg=QWEN3_4B) -> dict[str, float]:
    """Analytic FLOPs per prompt of the full encoder call vs the early exit (Qwen3-4B)."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    per_layer = 2 * tokens * (h * (q + 2 * kv) + q * h + 3 * h * inter) + 4 * tokens * tokens * q
    lm_head = 2 * tokens * h * cfg["vocab_size"]
    full = cfg["num_hidden_layers"] * per_layer + lm_head
    early = max(layers) * per_layer
    return {"full_tflop": full / 1e12, "early_exit_tflop": early / 1e12, "saved_fraction": 1 - early / full}


def run(quick: bool = False) -> dict[str, Any]:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from plantain_core.models import tiny

    from .throughput_bench import make_pairs

    tok = tiny.build_tokenizer()
    cfg = Qwen3Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id, hidden_size=64, intermediate_size=256,
                      num_hidden_layers=36, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                      max_position_embeddings=1024)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = Qwen3ForCausalLM(cfg).eval()
    prompts = [s.prompt for p in make_pairs(4) for s in p.stimuli()]  # one chunk of 8, as the runner encodes
    ids, mask = tokenize(tok, prompts)
    with torch.inference_mode():
        ref = encode_reference(enc, ids, mask)
        new = encode_early_exit(enc, ids, mask)
        # the tiny model's own encoder: out layers (1, 2, 3) of 3, the last one normed
        tiny_pipe = tiny.build_tiny_pipeline()
        t_ids, t_mask = tokenize(tiny_pipe.tokenizer, prompts)
        tiny_diff = float((encode_reference(tiny_pipe.text_encoder, t_ids, t_mask, tiny.TEXT_OUT_LAYERS)
                           - encode_early_exit(tiny_pipe.text_encoder, t_ids, t_mask, tiny.TEXT_OUT_LAYERS))
                          .abs().max())
    diff = float((ref - new).abs().max() / ref.abs().max())

    def full():
        with torch.inference_mode():
            encode_reference(enc, ids, mask)

    def early():
        with torch.inference_mode():
            encode_early_exit(enc, ids, mask)

    log("prompt encoding: full encoder call vs early exit (36-layer narrow Qwen3, out layers 9/18/27)")
    times = interleaved({"full": full, "early_exit": early}, rounds=3 if quick else 6, warmup=1)
    return {
        "encoder": "Qwen3ForCausalLM, 36 layers (Qwen3-4B depth), hidden 64, tiny byte vocabulary; 8 prompts x 512 tokens",
        "out_layers": list(OUT_LAYERS),
        "ratio_full_over_early_exit": ratio(times, "full", "early_exit"),
        "max_rel_diff": diff,
        "tiny_encoder_max_abs_diff": tiny_diff,
        "klein_4b_analytic": {k: round(v, 3) for k, v in klein_encoder_flops().items()},
    }
