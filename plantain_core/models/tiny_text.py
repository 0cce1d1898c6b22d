"""Tiny CLIP and T5 tokenizers and text encoders, built in code, for the tiny pipelines.

FLUX.1 (CLIP-L + T5-XXL) and Stable Diffusion 3 (CLIP-L + CLIP-G + T5-XXL) encode
prompts with these families. The builders here give the real transformers classes
(CLIPTokenizer, T5Tokenizer, CLIPTextModel, CLIPTextModelWithProjection,
T5EncoderModel) at toy sizes with random weights: no files are read, nothing is
downloaded, and the same seed gives the same weights. The tokenizers have no merges:
CLIP's is one token per byte (the tokenizers library's byte alphabet, as CLIP's real
vocabulary starts), T5's one piece per printable ASCII character. They exercise every
call the pipelines make (fixed-length padding, truncation, batch_decode, pooled EOS
output), and their numbers mean nothing about CLIP or T5.
"""

from __future__ import annotations

import string

# --- CLIP -----------------------------------------------------------------------------

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
# The pipelines read tokenizer.model_max_length as their CLIP length (77 in the real
# checkpoints); CLIP's learned position table has exactly that many rows.
CLIP_MAX_LENGTH = 77
# SD3's second tokenizer (CLIP-G) pads with "!" rather than the end token; keep that so
# the padded positions of the two CLIP streams differ as they do for the real model.
CLIP_G_PAD = "!"

# CLIP ViT-L/14's text tower (FLUX.1's text_encoder, SD3's text_encoder) at toy size:
# the real one is hidden 768, 12 layers, 12 heads, quick_gelu, projection 768.
CLIP_L_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "max_position_embeddings": CLIP_MAX_LENGTH,
}

# OpenCLIP bigG's text tower (SD3's text_encoder_2): the real one is hidden 1280, 32
# layers, 20 heads, gelu, projection 1280. A different width from CLIP-L on purpose, so
# code that mixes the two streams up fails on shapes instead of passing silently.
CLIP_G_CONFIG = {
    "hidden_size": 48,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "projection_dim": 48,
    "hidden_act": "gelu",
    "max_position_embeddings": CLIP_MAX_LENGTH,
}

# --- T5 -------------------------------------------------------------------------------

T5_PAD = "<pad>"
T5_EOS = "</s>"
T5_UNK = "<unk>"
# T5-XXL's model_max_length; FLUX.1 asks for 512 tokens, SD3 for 256.
T5_MAX_LENGTH = 512
# One piece per printable ASCII character, with and without the word-start marker;
# anything else (accents, emoji) becomes <unk>, as plenty does for the real T5.
T5_CHARS = "".join(sorted(set(string.printable) - set(string.whitespace)))

# T5 v1.1 XXL's encoder (FLUX.1's text_encoder_2, SD3's text_encoder_3) at toy size: the
# real one is d_model 4096, d_ff 10240, 64 heads of 64, 24 layers, gated-gelu. d_model
# must be at least CLIP-L + CLIP-G hidden (SD3 zero-pads the joined CLIP states up to
# the T5 width before stacking them with the T5 tokens), hence 96 >= 32 + 48.
T5_CONFIG = {
    "d_model": 96,
    "d_kv": 16,
    "d_ff": 128,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "dropout_rate": 0.0,
    "tie_word_embeddings": False,
}


def build_clip_tokenizer(pad_token: str = CLIP_EOS):
    """A real ``CLIPTokenizer`` with a byte-level vocabulary and no merges.

    CLIP's BPE marks the last symbol of each word with ``</w>``, so every byte symbol
    comes twice: bare (inside a word) and with the suffix (ending one). The special
    tokens come last, as in the real vocabulary, so the end token has the largest id.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    # sorted: the alphabet is a set, and token ids must not depend on hash order.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return CLIPTokenizer(
        vocab=vocab,
        merges=[],
        bos_token=CLIP_BOS,
        eos_token=CLIP_EOS,
        unk_token=CLIP_EOS,
        pad_token=pad_token,
        model_max_length=CLIP_MAX_LENGTH,
    )


def build_t5_tokenizer():
    """A real ``T5Tokenizer`` (Unigram, Metaspace) with a character vocabulary.

    Ids 0, 1, 2 are <pad>, </s>, <unk> as in T5. No sentinel (<extra_id_N>) tokens: the
    encoder never sees them, and they would only lengthen the vocabulary.
    """
    from transformers import T5Tokenizer

    # Scores make Unigram prefer "▁x" over "▁" + "x" at a word start; ties never arise.
    pieces = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), ("▁", -2.0)]
    pieces += [("▁" + ch, -3.0) for ch in T5_CHARS]
    pieces += [(ch, -4.0) for ch in T5_CHARS]
    return T5Tokenizer(
        vocab=pieces,
        eos_token=T5_EOS,
        unk_token=T5_UNK,
        pad_token=T5_PAD,
        extra_ids=0,
        model_max_length=T5_MAX_LENGTH,
    )


def build_clip_text_model(tokenizer, config: dict, *, seed: int, projection: bool = False):
    """A random ``CLIPTextModel`` (or ``CLIPTextModelWithProjection``) for ``tokenizer``.

    The config's eos_token_id is the tokenizer's real end id: CLIPTextModel pools the
    hidden state at the first position holding that id (eos_token_id == 2 would select
    the legacy argmax-of-ids pooling instead).
    """
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    )
    model_class = CLIPTextModelWithProjection if projection else CLIPTextModel
    # fork_rng: building must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(text_config).eval()


def build_t5_encoder(tokenizer, config: dict = T5_CONFIG, *, seed: int):
    """A random ``T5EncoderModel`` for ``tokenizer``."""
    import torch
    from transformers import T5Config, T5EncoderModel

    t5_config = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        **config,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5EncoderModel(t5_config).eval()
