"""Offline text tokenizers for the generator families, built from in-memory vocabularies.

No model hub is reachable, so the tiny generators cannot download the CLIP BPE or T5
SentencePiece vocabularies. Both are rebuilt here, deterministically, from a small word list:

- :func:`build_clip_tokenizer`: a CLIP byte-level BPE tokenizer (``transformers.CLIPTokenizer``)
  whose vocabulary holds every byte symbol (bare and with the ``</w>`` end-of-word marker), one
  merge chain per listed word (so each becomes a single token) and the two special tokens.
  Unknown words still tokenize, byte by byte.
- :func:`build_t5_tokenizer`: a T5 unigram tokenizer (``transformers.T5Tokenizer``) whose pieces
  are the listed words (``▁word``) with high scores plus every printable ASCII character, so any
  ASCII prompt tokenizes without ``<unk>``.

Both save with ``save_pretrained`` (``tokenizer.json``) and reload with ``from_pretrained``.
"""

from __future__ import annotations

import string
from typing import Any

# Words of the prompts the pipeline feeds the generators: fixed task prompts, negative-prompt
# descriptors, and the synthetic world's vocabulary (colours, shapes, textures, positions).
PROMPT_WORDS: tuple[str, ...] = (
    "remove", "the", "specified", "object", "extend", "image", "naturally", "nsfw", "blurry",
    "low", "quality", "bad", "anatomy", "watermark", "text", "distorted", "ugly", "artifacts",
    "a", "an", "of", "in", "on", "with", "and", "at", "left", "right", "top", "bottom", "center",
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "white", "black", "grey", "gray",
    "brown", "cyan", "magenta", "circle", "square", "triangle", "star", "disc", "ring", "cross",
    "rectangle", "ellipse", "stripe", "stripes", "striped", "dots", "dotted", "checker",
    "checkered", "gradient", "noise", "plain", "textured", "background", "big", "small", "large",
    "tiny", "bright", "dark", "word", "letters", "sign", "saying", "written", "fill", "region",
    "scene", "photo", "picture", "high", "detailed", "sharp", "clean",
)  # fmt: skip

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"
T5_SPACE = "\u2581"  # SentencePiece's word-boundary marker


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character map of byte-level BPE (CLIP's and Qwen2's)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def clip_vocabulary(words: tuple[str, ...] = PROMPT_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP BPE vocabulary and merges for ``words``; returns ``(vocab, merges)``.

    CLIP lower-cases text and marks the last symbol of each word with ``</w>``; each word gets a
    left-to-right merge chain ending in ``word</w>``, so BPE turns it into one token.
    """
    byte_map = bytes_to_unicode()
    symbols = [byte_map[b] for b in range(256)]
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + END_OF_WORD] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in words:
        parts = [byte_map[b] for b in word.lower().encode("utf-8")]
        parts[-1] = parts[-1] + END_OF_WORD
        current = parts[0]
        for nxt in parts[1:]:
            pair = (current, nxt)
            current = current + nxt
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            if current not in vocab:
                vocab[current] = len(vocab)
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return vocab, merges


def build_clip_tokenizer(words: tuple[str, ...] = PROMPT_WORDS, model_max_length: int = 77) -> Any:
    """An offline ``CLIPTokenizer`` (byte-level BPE) over ``words``.

    ``model_max_length`` must be set: the Flux/SD pipelines pad and truncate to it (77 for CLIP).
    """
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary(words)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def t5_vocabulary(words: tuple[str, ...] = PROMPT_WORDS) -> list[tuple[str, float]]:
    """T5 unigram pieces ``[(piece, log-score), ...]``: specials, words, then single characters.

    Whole words score higher than their characters, so the unigram model prefers them; every
    printable ASCII character (bare and word-initial) is a piece, so no ASCII text maps to ``<unk>``.
    """
    pieces: list[tuple[str, float]] = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0)]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    add(T5_SPACE, -2.0)
    for w in words:
        add(T5_SPACE + w, -1.0)
    chars = [c for c in string.printable if c not in string.whitespace]
    for c in chars:
        add(T5_SPACE + c, -5.0)
    for c in chars:
        add(c, -6.0)
    return pieces


def build_t5_tokenizer(words: tuple[str, ...] = PROMPT_WORDS, model_max_length: int = 512) -> Any:
    """An offline ``T5Tokenizer`` (unigram) over ``words`` with T5's 100 ``<extra_id_*>`` tokens."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=t5_vocabulary(words), model_max_length=model_max_length)


def vocab_size(tokenizer: Any) -> int:
    """Number of token ids a text encoder's embedding must cover for ``tokenizer``."""
    return len(tokenizer)
