"""The residual block y = x + ReLU(Hx + v): forward pass, hand-derived backward pass, and the
gradient norm through a deep stack with and without the skip connection."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from dlnotes.theory._arrays import Array, as_float_array


def _check_residual_shapes(x: Array, H: Array, v: Array) -> None:
    (K,) = x.shape
    if H.shape != (K, K) or v.shape != (K,):
        raise ValueError(
            "residual block needs x (K,), H (K, K), v (K,); "
            f"got x {x.shape}, H {H.shape}, v {v.shape}"
        )


def residual_block(x: ArrayLike, H: ArrayLike, v: ArrayLike) -> Array:
    """Forward pass of the residual block ``y = x + ReLU(H x + v)``.

    Args:
        x: Input, shape ``(K,)``.
        H: Weights, shape ``(K, K)``.
        v: Bias, shape ``(K,)``.

    Returns:
        ``y``, shape ``(K,)``.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = as_float_array(x, "x", ndim=1)
    H = as_float_array(H, "H", ndim=2)
    v = as_float_array(v, "v", ndim=1)
    _check_residual_shapes(x, H, v)
    return x + np.maximum(H @ x + v, 0.0)


def residual_block_grads(
    x: ArrayLike, H: ArrayLike, v: ArrayLike, de_dy: ArrayLike
) -> tuple[Array, Array, Array]:
    """Backward pass of ``y = x + ReLU(H x + v)`` given the upstream gradient ``∂e/∂y``.

    With ``u = H x + v`` and ``D = diag(1[u > 0])`` (the ReLU Jacobian; we take 0 at ``u = 0``)
    and ``δ = D ∂e/∂yᵀ``:

    * ``∂e/∂xᵀ = (I + D H)ᵀ ∂e/∂yᵀ = ∂e/∂yᵀ + Hᵀ δ`` — the identity term is the skip path;
    * ``∂e/∂v = δ``;
    * ``∂e/∂H = δ xᵀ`` — an outer product with the *input* ``x``.

    The forward pass must therefore keep ``x`` and the mask ``1[u > 0]`` for the backward pass.

    Args:
        x: Input, shape ``(K,)``.
        H: Weights, shape ``(K, K)``.
        v: Bias, shape ``(K,)``.
        de_dy: Upstream gradient, shape ``(K,)``.

    Returns:
        ``(de_dx, de_dH, de_dv)`` with the shapes of ``x``, ``H`` and ``v``.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = as_float_array(x, "x", ndim=1)
    H = as_float_array(H, "H", ndim=2)
    v = as_float_array(v, "v", ndim=1)
    de_dy = as_float_array(de_dy, "de_dy", ndim=1)
    _check_residual_shapes(x, H, v)
    if de_dy.shape != x.shape:
        raise ValueError(f"de_dy must have the shape of y {x.shape}, got {de_dy.shape}")
    mask = (H @ x + v > 0).astype(np.float64)
    delta = mask * de_dy
    return de_dy + H.T @ delta, np.outer(delta, x), delta


def stack_gradient_norms(
    x: ArrayLike,
    weights: ArrayLike,
    biases: ArrayLike,
    *,
    residual: bool = True,
    de_dy: ArrayLike | None = None,
) -> Array:
    """Backpropagate through a stack of blocks and return ``‖∂e/∂x_l‖`` at every depth.

    Each block computes ``x_{l+1} = x_l + ReLU(H_l x_l + v_l)`` (``residual=True``) or
    ``x_{l+1} = ReLU(H_l x_l + v_l)`` (a plain network). The error is ``e = gᵀ x_L`` for the
    given upstream gradient ``g`` (default: all ones).

    Args:
        x: Input, shape ``(K,)``.
        weights: ``(L, K, K)`` stack of matrices ``H_l``.
        biases: ``(L, K)`` stack of biases ``v_l``.
        residual: Use the skip connection.
        de_dy: Gradient at the output, shape ``(K,)``.

    Returns:
        Array of ``L + 1`` norms: index 0 is the input of the stack, index L its output.

    Raises:
        ValueError: If the shapes do not fit together.
    """
    x = as_float_array(x, "x", ndim=1)
    weights = as_float_array(weights, "weights", ndim=3)
    biases = as_float_array(biases, "biases", ndim=2)
    depth, size = weights.shape[0], x.shape[0]
    if weights.shape != (depth, size, size) or biases.shape != (depth, size):
        raise ValueError(
            f"need weights (L, {size}, {size}) and biases (L, {size}); "
            f"got {weights.shape} and {biases.shape}"
        )
    inputs = [x]
    for H, v in zip(weights, biases, strict=True):
        activation = np.maximum(H @ inputs[-1] + v, 0.0)
        inputs.append(inputs[-1] + activation if residual else activation)
    gradient = np.ones(size) if de_dy is None else as_float_array(de_dy, "de_dy", ndim=1)
    if gradient.shape != (size,):
        raise ValueError(f"de_dy must have shape ({size},), got {gradient.shape}")
    norms = [float(np.linalg.norm(gradient))]
    for layer in range(depth - 1, -1, -1):
        H, v, block_input = weights[layer], biases[layer], inputs[layer]
        if residual:
            gradient = residual_block_grads(block_input, H, v, gradient)[0]
        else:
            gradient = H.T @ ((H @ block_input + v > 0) * gradient)
        norms.append(float(np.linalg.norm(gradient)))
    return np.array(norms[::-1])
