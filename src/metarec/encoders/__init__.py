"""Pretrained content encoders, their on-disk cache, and item content as vectors."""

from metarec.encoders.base import HashingEncoder, TextEncoder
from metarec.encoders.cache import EmbeddingCache, encode_cached
from metarec.encoders.content import ContentConfig, item_content, make_encoder

__all__ = [
    "ContentConfig",
    "EmbeddingCache",
    "HashingEncoder",
    "TextEncoder",
    "encode_cached",
    "item_content",
    "make_encoder",
]
