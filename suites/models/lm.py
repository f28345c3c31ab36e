"""A small decoder-only language model, written as such models are: token embedding, pre-norm blocks of
rotary attention with grouped-query heads over a KV cache and a SwiGLU MLP, RMSNorm, and a head tied to the
embedding.

One call runs ``tokens`` (``[batch, steps]`` ids) at cache position ``position`` (a 0-d int32 array, so
that every decode step runs the same program) and returns the logits and the cache with their keys and
values written in: ``lm(prompt, cache, position=0)`` is the prefill, ``lm(token, cache, position=p)`` a
decode step. The cache is an input like the tokens (batch first, so that devices split it with the batch),
and it is kept in the dtype it is given: a bfloat16 variant keeps a bfloat16 cache.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

Cache = dict[str, jax.Array]


def rotary(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """``x`` (``[batch, steps, heads, head_dim]``) rotated pairwise by its positions' angles."""
    half = x.shape[-1] // 2
    frequencies = 1.0 / (base ** (jnp.arange(half, dtype=jnp.float32) / half))
    # The outer product of integer positions and float frequencies, as a matmul (as most rotary
    # implementations write it): it derives from the position alone, no weight.
    angles = jnp.einsum("t,k->tk", positions, frequencies)[None, :, None, :]
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    first, second = x[..., :half], x[..., half:]
    return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


class Attention(nnx.Module):
    """Causal self-attention with ``kv_heads`` key/value heads shared by groups of query heads."""

    def __init__(self, dim: int, heads: int, kv_heads: int, *, rngs: nnx.Rngs) -> None:
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.query = nnx.Linear(dim, heads * self.head_dim, use_bias=False, rngs=rngs)
        self.key = nnx.Linear(dim, kv_heads * self.head_dim, use_bias=False, rngs=rngs)
        self.value = nnx.Linear(dim, kv_heads * self.head_dim, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(heads * self.head_dim, dim, use_bias=False, rngs=rngs)

    def __call__(
        self, x: jax.Array, keys: jax.Array, values: jax.Array, position: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        batch, steps, _ = x.shape
        positions = position + jnp.arange(steps, dtype=jnp.int32)
        q = rotary(self.query(x).reshape(batch, steps, self.heads, self.head_dim), positions)
        k = rotary(self.key(x).reshape(batch, steps, self.kv_heads, self.head_dim), positions)
        v = self.value(x).reshape(batch, steps, self.kv_heads, self.head_dim)
        keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype), (0, position, 0, 0))
        values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype), (0, position, 0, 0))
        groups = self.heads // self.kv_heads
        q = q.reshape(batch, steps, self.kv_heads, groups, self.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, keys.astype(q.dtype)) / math.sqrt(self.head_dim)
        visible = jnp.arange(keys.shape[1])[None, :] <= positions[:, None]  # [steps, cache length]
        scores = jnp.where(visible, scores, jnp.finfo(scores.dtype).min)
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
        mixed = jnp.einsum("bkgts,bskd->btkgd", weights, values.astype(q.dtype))
        return self.out(mixed.reshape(batch, steps, -1)), keys, values


class Block(nnx.Module):
    """Attention and a SwiGLU MLP, each behind an RMSNorm and added back to the residual stream."""

    def __init__(self, dim: int, heads: int, kv_heads: int, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.attention_norm = nnx.RMSNorm(dim, rngs=rngs)
        self.attention = Attention(dim, heads, kv_heads, rngs=rngs)
        self.mlp_norm = nnx.RMSNorm(dim, rngs=rngs)
        self.gate = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
        self.up = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
        self.down = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs)

    def __call__(
        self, x: jax.Array, keys: jax.Array, values: jax.Array, position: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        attended, keys, values = self.attention(self.attention_norm(x), keys, values, position)
        x = x + attended
        h = self.mlp_norm(x)
        return x + self.down(nnx.silu(self.gate(h)) * self.up(h)), keys, values


class DecoderLM(nnx.Module):
    """``lm(tokens, cache, position)`` → ``(logits, cache)``; ``lm.empty_cache(batch)`` to start from."""

    def __init__(
        self, vocab: int = 512, dim: int = 128, depth: int = 2, heads: int = 4, kv_heads: int = 2,
        hidden: int = 256, max_length: int = 64, *, rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        self.max_length = max_length
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.blocks = nnx.List([Block(dim, heads, kv_heads, hidden, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.RMSNorm(dim, rngs=rngs)

    def empty_cache(self, batch: int, dtype: jnp.dtype = jnp.float32) -> Cache:
        attention = self.blocks[0].attention
        shape = (batch, len(self.blocks), self.max_length, attention.kv_heads, attention.head_dim)
        return {"keys": jnp.zeros(shape, dtype), "values": jnp.zeros(shape, dtype)}

    def __call__(self, tokens: jax.Array, cache: Cache, position: jax.Array) -> tuple[jax.Array, Cache]:
        x = self.embed(tokens)
        keys, values = [], []
        for layer, block in enumerate(self.blocks):
            x, k, v = block(x, cache["keys"][:, layer], cache["values"][:, layer], position)
            keys.append(k)
            values.append(v)
        logits = self.embed.attend(self.norm(x))  # the head is the embedding, transposed
        return logits, {"keys": jnp.stack(keys, axis=1), "values": jnp.stack(values, axis=1)}
