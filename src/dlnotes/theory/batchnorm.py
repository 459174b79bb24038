"""Batch normalisation in training mode: forward pass and hand-derived backward pass."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from dlnotes.theory._arrays import Array, as_float_array


def _check_batch_norm(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float
) -> tuple[Array, Array, Array]:
    x = as_float_array(x, "x")
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(
            f"x must be a batch (N, ..., C) with N ≥ 2 examples to normalise, got shape {x.shape}"
        )
    channels = x.shape[-1]
    gamma = as_float_array(gamma, "gamma", ndim=1)
    beta = as_float_array(beta, "beta", ndim=1)
    if gamma.shape != (channels,) or beta.shape != (channels,):
        raise ValueError(
            f"gamma and beta must have shape ({channels},), got {gamma.shape} and {beta.shape}"
        )
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    return x, gamma, beta


def batch_norm(x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, eps: float = 1e-3) -> Array:
    """Batch normalisation in training mode: normalise each channel with the batch's statistics.

    Over every axis but the last (the batch, and height and width for images):
    ``μ = mean(x)``, ``v = mean((x − μ)²)`` (the biased variance, as Keras uses),
    ``x̂ = (x − μ) / √(v + ε)`` and ``y = γ x̂ + β``.

    Args:
        x: A batch ``(N, C)`` or ``(N, H, W, C)``.
        gamma: Scale per channel, ``(C,)``.
        beta: Shift per channel, ``(C,)``.
        eps: Added to the variance (Keras' default 1e-3).

    Returns:
        ``y``, with the shape of ``x``.

    Raises:
        ValueError: For a batch of fewer than two examples, mismatched shapes or ``eps`` ≤ 0.
    """
    x, gamma, beta = _check_batch_norm(x, gamma, beta, eps)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes)
    variance = ((x - mean) ** 2).mean(axis=axes)
    y: Array = gamma * (x - mean) / np.sqrt(variance + eps) + beta
    return y


def batch_norm_grads(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, de_dy: ArrayLike, eps: float = 1e-3
) -> tuple[Array, Array, Array]:
    """Backward pass of :func:`batch_norm` (training mode), given the upstream gradient.

    With ``M`` values per channel, ``σ = √(v + ε)`` and sums over those M values:

    * ``∂e/∂β = Σ g``, ``∂e/∂γ = Σ g x̂``;
    * ``∂e/∂x = γ / (M σ) · (M g − Σ g − x̂ Σ g x̂)``.

    The last one is not ``γ g / σ``: every value of the batch moved the mean and the variance, so
    every value's gradient has a share in every other's.

    Args:
        x: The forward input, ``(N, C)`` or ``(N, H, W, C)``.
        gamma: Scale per channel.
        beta: Shift per channel (the gradients do not depend on it; checked for its shape).
        de_dy: Upstream gradient, the shape of ``x``.
        eps: The forward pass's ε.

    Returns:
        ``(de_dx, de_dgamma, de_dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.

    Raises:
        ValueError: For mismatched shapes (see :func:`batch_norm`).
    """
    x, gamma, beta = _check_batch_norm(x, gamma, beta, eps)
    g = as_float_array(de_dy, "de_dy")
    if g.shape != x.shape:
        raise ValueError(f"de_dy must have the shape of x {x.shape}, got {g.shape}")
    axes = tuple(range(x.ndim - 1))
    count = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    sigma = np.sqrt(((x - mean) ** 2).mean(axis=axes) + eps)
    x_hat = (x - mean) / sigma
    sum_g, sum_g_x_hat = g.sum(axis=axes), (g * x_hat).sum(axis=axes)
    de_dx = gamma / (count * sigma) * (count * g - sum_g - x_hat * sum_g_x_hat)
    return de_dx, sum_g_x_hat, sum_g
