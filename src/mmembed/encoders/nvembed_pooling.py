"""NV-Embed latent-attention pooling, the head MM-Embed puts on top of its bidirectional Mistral.

What the block computes (NV-Embed, Lee et al. 2024), per token state ``h`` of the language model:

1. cross-attention where the **token states are the queries** and a bank of trained latent vectors gives
   the keys and values (one ``to_kv`` matrix yields both), after a LayerNorm on each side; the result goes
   through ``to_out`` and is added back to ``h`` (residual);
2. a GEGLU feed-forward block (``Linear d -> 2*4d``, ``a * gelu(gate)``, ``Linear 4d -> d``) after a
   LayerNorm, also residual;
3. a mean over the positions of a pooling mask (MM-Embed masks padding *and* the instruction prefix).

Because the keys and values come from the latents only, step 1-2 transform every token **independently**
of the other tokens: the pooled vector is the masked mean of ``g(h_t)`` for one fixed function ``g``. We
use that to run ``g`` only on the pooled positions and in chunks (the attention's inner width is
8 heads x 4096 = 32768 for MM-Embed, so materialising it for a whole padded batch costs gigabytes).

Parameter names here are ours; :data:`PUBLISHED_KEYS` maps the names in the published checkpoints
(``latent_attention_model.*`` in nvidia/NV-Embed-v1 and nvidia/MM-Embed) to them explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: published name (after the ``latent_attention_model.`` prefix) -> our parameter name
PUBLISHED_KEYS: dict[str, str] = {
    "latents": "latents",
    "cross_attend_blocks.0.norm.weight": "token_norm.weight",
    "cross_attend_blocks.0.norm.bias": "token_norm.bias",
    "cross_attend_blocks.0.norm_context.weight": "latent_norm.weight",
    "cross_attend_blocks.0.norm_context.bias": "latent_norm.bias",
    "cross_attend_blocks.0.fn.to_q.weight": "to_q.weight",
    "cross_attend_blocks.0.fn.to_kv.weight": "to_kv.weight",
    "cross_attend_blocks.0.fn.to_out.weight": "to_out.weight",
    "cross_attend_blocks.1.norm.weight": "ff_norm.weight",
    "cross_attend_blocks.1.norm.bias": "ff_norm.bias",
    "cross_attend_blocks.1.fn.net.0.weight": "ff_in.weight",
    "cross_attend_blocks.1.fn.net.0.bias": "ff_in.bias",
    "cross_attend_blocks.1.fn.net.2.weight": "ff_out.weight",
    "cross_attend_blocks.1.fn.net.2.bias": "ff_out.bias",
}


class LatentAttentionPooling(nn.Module):
    """Latent-attention block + masked mean pooling.

    Args:
        hidden_size: width of the token states (and of the latents).
        num_latents: how many latent vectors (512 in NV-Embed / MM-Embed).
        num_heads: attention heads (8).
        head_dim: width of one head (4096 in NV-Embed, so the inner width is ``num_heads * head_dim``).
        mlp_mult: the GEGLU block's expansion (4).
        token_chunk: how many token states go through the block at once (bounds memory; exact either way).
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_latents: int = 512,
        num_heads: int = 8,
        head_dim: int = 4096,
        mlp_mult: int = 4,
        token_chunk: int = 2048,
    ) -> None:
        super().__init__()
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.token_chunk = token_chunk
        self.latents = nn.Parameter(torch.empty(num_latents, hidden_size))
        self.token_norm = nn.LayerNorm(hidden_size)
        self.latent_norm = nn.LayerNorm(hidden_size)
        self.to_q = nn.Linear(hidden_size, inner, bias=False)
        self.to_kv = nn.Linear(hidden_size, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, hidden_size, bias=False)
        self.ff_norm = nn.LayerNorm(hidden_size)
        self.ff_in = nn.Linear(hidden_size, 2 * mlp_mult * hidden_size)
        self.ff_out = nn.Linear(mlp_mult * hidden_size, hidden_size)

    def _latent_kv(self) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.to_kv(self.latent_norm(self.latents)).chunk(2, dim=-1)
        heads = lambda t: t.view(t.shape[0], self.num_heads, self.head_dim).transpose(0, 1)  # noqa: E731
        return heads(k), heads(v)  # (heads, latents, head_dim)

    def transform_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """Apply the latent-attention + GEGLU block to token states ``(..., hidden)``; same shape out.

        Each token is transformed on its own (the latents are the only keys/values), so any reshaping
        or chunking of ``states`` gives the same result.
        """
        shape = states.shape
        flat = states.reshape(-1, shape[-1])
        k, v = self._latent_kv()
        outs = []
        for start in range(0, flat.shape[0], self.token_chunk):
            x = flat[start : start + self.token_chunk]
            q = self.to_q(self.token_norm(x))
            q = q.view(x.shape[0], self.num_heads, self.head_dim).transpose(0, 1)  # (heads, n, head_dim)
            attn = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
            attn = attn.transpose(0, 1).reshape(x.shape[0], -1)
            x = self.to_out(attn) + x
            a, gate = self.ff_in(self.ff_norm(x)).chunk(2, dim=-1)
            x = self.ff_out(a * F.gelu(gate)) + x
            outs.append(x)
        return torch.cat(outs, dim=0).reshape(shape)

    def forward(self, hidden_states: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of the transformed states: ``(batch, seq, hidden)``, ``(batch, seq)`` -> ``(batch, hidden)``.

        Only positions with ``pool_mask`` set are transformed (the others do not reach the mean). The mean
        is taken in float32. A row with an empty mask is an error (the caller guarantees at least one token).
        """
        mask = pool_mask.bool()
        counts = mask.sum(dim=1)
        if bool((counts == 0).any()):
            raise ValueError("latent-attention pooling got an item with no token to pool")
        picked = self.transform_tokens(hidden_states[mask]).float()  # (n_pooled, hidden), row-major order
        rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]
        sums = torch.zeros(mask.shape[0], picked.shape[-1], dtype=torch.float32, device=picked.device)
        sums.index_add_(0, rows, picked)
        return sums / counts.unsqueeze(1).to(torch.float32)
