"""A GPT-style decoder for the FSDP scaling benchmark: pre-norm blocks of causal self-attention
(``scaled_dot_product_attention``) and a GELU MLP, in an ``nn.ModuleList`` (kiln's FSDP shards
each block), untied input and output embeddings (a weight shared across FSDP units would need
care that this benchmark is not about).

``SIZES["1b"]`` has 1.04e9 parameters: 18 blocks of width 2048 (16 heads, MLP 8192) and a
32,000-token vocabulary, 1,024-token sequences. ``SIZES["tiny"]`` is a CPU smoke size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Size:
    width: int
    depth: int
    heads: int
    vocab: int
    seq: int


SIZES = {
    "1b": Size(width=2048, depth=18, heads=16, vocab=32_000, seq=1024),
    "tiny": Size(width=64, depth=2, heads=4, vocab=128, seq=32),
}


class Block(nn.Module):
    def __init__(self, size: Size) -> None:
        super().__init__()
        self.heads = size.heads
        self.norm1, self.norm2 = nn.LayerNorm(size.width), nn.LayerNorm(size.width)
        self.qkv = nn.Linear(size.width, 3 * size.width, bias=False)
        self.proj = nn.Linear(size.width, size.width, bias=False)
        self.up = nn.Linear(size.width, 4 * size.width, bias=False)
        self.down = nn.Linear(4 * size.width, size.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, c // self.heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, c))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class Decoder(nn.Module):
    def __init__(self, size: Size) -> None:
        super().__init__()
        self.embed = nn.Embedding(size.vocab, size.width)
        self.position = nn.Embedding(size.seq, size.width)
        self.blocks = nn.ModuleList(Block(size) for _ in range(size.depth))
        self.norm = nn.LayerNorm(size.width)
        self.head = nn.Linear(size.width, size.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over every position (in fp32)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def parameters(size: Size) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Decoder(size).parameters())
