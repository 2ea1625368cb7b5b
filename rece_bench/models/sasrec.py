"""SASRec, the variant the paper trains (pmixer/SASRec.pytorch; REFERENCE section 3).

Shape letters (B, L, D, C, H, N) as in ``docs/notation.md``.

Item ids in sequences are 1..C with 0 as padding (left padding: the last item sits at position L-1). The item
table holds the C catalogue rows only and is tied to the output: ``item_embeddings()`` returns it whole, so a loss
scores item ``i`` (1-based) at column ``i - 1``. A pad position looks up row 0 and is zeroed right after, so it
neither contributes nor receives a gradient. pmixer's zero pad row would do the same, but a (C + 1)-row table makes
the loss see a slice of it, and autograd pays for the slice with a zeroed (C + 1, D) copy of the loss's gradient
every step. (A sparse gradient for the input lookup would save one more (C, D) buffer, but autograd adds it to the
loss's dense one out of place, which measured no faster, and MemTracker cannot read sparse storages.)

One departure from pmixer, on purpose: attention ignores pad keys (pmixer lets real positions attend to the zeroed
pad positions, so a sequence's output depends on how much padding precedes it). Each position may always attend to
itself, so a pad query never sees an empty row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rece_bench.errors import UserError

LAYER_NORM_EPS = 1e-8


@dataclass(frozen=True)
class SASRecConfig:
    num_items: int  # C, the catalogue without the pad id
    max_len: int = 200
    dim: int = 64
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.3

    def __post_init__(self) -> None:
        for name in ("num_items", "max_len", "dim", "n_blocks", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"SASRec {name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise UserError(f"SASRec dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"SASRec dropout must be in [0, 1), got {self.dropout!r}")


class CausalSelfAttention(nn.Module):
    """Multi-head attention(query, keys=values=x) with a causal mask that also hides pad keys."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.n_heads, dim // self.n_heads).transpose(1, 2)  # (B, H, L, D/H)

        attended = F.scaled_dot_product_attention(
            heads(self.q_proj(query)),
            heads(self.k_proj(x)),
            heads(self.v_proj(x)),
            attn_mask=allowed,  # (B, 1, L, L) True where a query may look
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, dim))  # (B, H, L, D/H) -> (B, L, D)


class PointWiseFeedForward(nn.Module):
    """Linear(D, D) -> dropout -> ReLU -> Linear(D, D) -> dropout: width D, no 4x expansion, as pmixer."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SASRecBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attention = CausalSelfAttention(dim, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.ffn = PointWiseFeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        query = self.attn_norm(x)
        x = query + self.attention(query, x, allowed)  # the residual comes from the normalised query
        x = self.ffn_norm(x)
        x = x + self.ffn(x)
        return x * keep  # re-zero pad positions


class SASRec(nn.Module):
    """forward(seq (B, L) long) -> hidden states (B, L, D); item_embeddings() -> (C, D)."""

    revision = 2  # budget probes key on it; 2: no pad row, so a step holds one (C + 1, D) gradient buffer less

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Parameter(torch.empty(config.num_items, config.dim))  # (C, D), column i - 1 = item i
        torch.empty(config.num_items + 1, config.dim).normal_()  # the draws pmixer's nn.Embedding makes here
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SASRecBlock(config.dim, config.n_heads, config.dropout) for _ in range(config.n_blocks)
        )
        self.final_norm = nn.LayerNorm(config.dim, eps=LAYER_NORM_EPS)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform on every matrix, zero biases. The item table is drawn as pmixer's (C + 1)-row table
        with its pad row dropped: the same values and the same draws from the generator, so a seed trains as it
        did when the table had a pad row."""
        for name, param in self.named_parameters():
            if param is self.item_emb:
                with torch.no_grad():
                    param.copy_(nn.init.xavier_uniform_(param.new_empty(param.shape[0] + 1, param.shape[1]))[1:])
            elif param.dim() >= 2:
                nn.init.xavier_uniform_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb  # (C, D), the parameter itself: no slice for autograd to pad back

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        batch, length = seq.shape
        if length > self.config.max_len:
            raise UserError(f"sequence length {length} exceeds max_len {self.config.max_len}")
        # Left padding: the last item always sits at position max_len - 1.
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=seq.device)
        keep = (seq != 0).unsqueeze(-1)  # (B, L, 1)
        rows = F.embedding((seq - 1).clamp_(min=0), self.item_emb)  # (B, L, D); pads read row 0
        x = rows * math.sqrt(self.config.dim) + self.pos_emb(positions)
        x = self.emb_dropout(x) * keep  # pad positions zeroed: row 0 gets nothing from them
        allowed = self._attention_mask(seq)
        for block in self.blocks:
            x = block(x, allowed, keep)
        return self.final_norm(x)

    @staticmethod
    def _attention_mask(seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()  # (L, L)
        real_key = (seq != 0)[:, None, None, :]  # (B, 1, 1, L)
        itself = torch.eye(length, dtype=torch.bool, device=seq.device)  # (L, L)
        return causal & (real_key | itself)  # (B, 1, L, L)
