"""The public contract: one signature and one docstring per operation.

Every backend module (``attnbook.numpy``, ``attnbook.torch``, ``attnbook.tensorflow``) implements each function
below with exactly this signature; :func:`implements` copies the docstring onto the implementation and refuses,
at import time, an implementation whose signature has drifted. The top-level ``attnbook.<name>`` functions are
dispatchers built from these stubs (see ``attnbook/__init__.py``).

Shape letters used in every docstring:

=====  ==========================================================
``...``  leading batch / head axes (broadcast between arguments)
``B``    batch size
``H``    number of heads
``Lq``   query length (number of queries)
``Lk``   key length (number of keys = number of values)
``d``    query/key feature size
``dv``   value feature size
``D``    model width of multi-head attention (``D = H * d``)
=====  ==========================================================
"""

from __future__ import annotations

import inspect

_COMMON = """
    Conventions shared by every attention function:

    * ``mask`` is boolean, **True = may attend**, broadcastable to the score shape ``(..., Lq, Lk)``
      (it may not add axes that the scores do not have).
    * ``causal=True`` lets query ``i`` see keys ``j <= i`` (top-left aligned, like PyTorch's ``is_causal``); it
      combines with ``mask`` by logical *and*.
    * A query row with no key left to attend to (every key masked, or ``Lk == 0``) gets weights 0 and output 0:
      never NaN, never a uniform average.
    * The output has the dtype of the inputs; float16 and bfloat16 inputs compute their scores (with a float32
      ``bias`` as given) and their softmax in float32.
    * A score of ``-inf`` (a ``-inf`` bias, or a product that overflows) masks its key; any finite score, even
      ``finfo.min``, is a key like any other. The bias of a masked key is never read. A bias of ``+inf`` or NaN on
      a key a row may attend makes that row NaN.
    * NaN or infinity in ``query``, ``key`` or ``value`` propagate to the output without being checked (a check
      would cost a device synchronisation); which entries they reach is not specified, as a fused kernel may skip
      a block that the explicit path multiplies by a zero weight (``0 * inf`` is NaN).
    * Any axis may have size 0: an empty batch or ``Lq = 0`` gives an empty output, ``Lk = 0`` rows of zeros,
      ``d = 0`` scores of 0 (``scale`` 1) and ``dv = 0`` an output with no features.
    * Integer arguments are Python or NumPy integers (not bools) up to ``2**63 - 1``; real ones, Python or NumPy
      numbers; flags, Python or NumPy bools.
    * TensorFlow: every function also runs inside ``tf.function`` with sizes unknown when it is traced
      (``tf.TensorSpec([None, None, 64])``); the rank must be known.
"""


def softmax(x, axis=-1, mask=None):
    """Numerically stable softmax, optionally restricted to the entries where ``mask`` is True.

    Args:
        x: floating-point array of any shape.
        axis: the axis to normalise over (negative values count from the end).
        mask: optional boolean array broadcastable to ``x.shape``; ``False`` entries get probability exactly 0.

    Returns:
        An array of ``x``'s shape and dtype whose slices along ``axis`` sum to 1, or are all 0 when every entry
        of the slice is masked (or ``-inf``). The maximum is subtracted before exponentiating, so logits of any
        finite magnitude give finite results.

    Raises:
        TypeError: ``x`` is not a floating-point array of this backend, or ``mask`` is not boolean.
        ValueError: ``axis`` is out of range, or ``mask`` does not broadcast to ``x.shape``.
    """


def scaled_dot_product_attention(query, key, value, mask=None, bias=None, *, causal=False, scale=None,
                                 dropout=0.0, seed=None, return_weights=False):
    """Scaled dot-product attention, ``softmax(query @ key^T * scale + bias) @ value``.

    Args:
        query: ``(..., Lq, d)`` floating-point array.
        key: ``(..., Lk, d)``, same dtype as ``query``.
        value: ``(..., Lk, dv)``, same dtype as ``query``.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may attend.
        bias: optional floating-point array broadcastable to ``(..., Lq, Lk)``, added to the scaled scores
            (relative-position biases, ALiBi, additive masks with ``-inf``).
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        scale: multiplier of the scores; ``None`` means ``1 / sqrt(d)``. Must be a finite number > 0 that the
            compute dtype holds (a scale that would become 0 or inf in float32 is refused).
        dropout: probability in ``[0, 1)`` of zeroing each attention weight (kept weights are divided by
            ``1 - dropout``). Applied whenever it is > 0: pass 0 at inference.
        seed: optional integer in ``[0, 2**63)`` that makes dropout reproducible within one framework.
        return_weights: if True, also return the attention weights (after dropout).

    Returns:
        ``output`` of shape ``(..., Lq, dv)``, or ``(output, weights)`` with weights ``(..., Lq, Lk)``.
    {common}
    Raises:
        TypeError: an argument is not an array of this backend, a dtype is wrong (integer inputs, a
            non-boolean mask, mixed dtypes), or a flag has the wrong type.
        ValueError: shapes disagree or do not broadcast, ``scale``/``dropout``/``seed`` are out of range, or
            arrays live on different devices.
    """


def additive_attention(query, key, value, w_query, w_key, v, mask=None, *, causal=False,
                       return_weights=False):
    """Additive (Bahdanau, "concat") attention, ``score(q, k) = v . tanh(q @ w_query + k @ w_key)``.

    Args:
        query: ``(..., Lq, dq)``.
        key: ``(..., Lk, dk)``; ``dk`` may differ from ``dq``.
        value: ``(..., Lk, dv)``.
        w_query: ``(dq, h)`` projection of the queries into the hidden scoring space.
        w_key: ``(dk, h)`` projection of the keys.
        v: ``(h,)`` the scoring vector.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may attend.
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        return_weights: if True, also return the weights ``(..., Lq, Lk)``.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, weights)``.

    The score tensor ``(..., Lq, Lk, h)`` is materialised, so memory grows as ``Lq * Lk * h``.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and for parameters whose shape does
        not match ``dq``, ``dk`` or each other's hidden size ``h``.
    """


def bilinear_attention(query, key, value, w, mask=None, *, causal=False, return_weights=False):
    """Bilinear (Luong "general") attention, ``score(q, k) = q @ w @ k``.

    Args:
        query: ``(..., Lq, dq)``.
        key: ``(..., Lk, dk)``; ``dk`` may differ from ``dq``.
        value: ``(..., Lk, dv)``.
        w: ``(dq, dk)``.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may attend.
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        return_weights: if True, also return the weights ``(..., Lq, Lk)``.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, weights)``. The scores are not scaled.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and when ``w`` is not ``(dq, dk)``.
    """


def multi_head_attention(query, key, value, params, num_heads, mask=None, bias=None, *, causal=False,
                         dropout=0.0, seed=None, return_weights=False):
    """Multi-head attention (Vaswani et al., 2017) with explicit parameters.

    Each input is projected (``y = x @ w + b``), split into ``num_heads`` contiguous slices of the model width
    ``D`` (head ``h`` uses columns ``h*D/H:(h+1)*D/H``), attended per head with
    :func:`scaled_dot_product_attention`, concatenated and projected by ``w_o``.

    Args:
        query: ``(B, Lq, Dq)``.
        key: ``(B, Lk, Dk)``.
        value: ``(B, Lk, Dv)``.
        params: mapping with ``w_q (Dq, D)``, ``w_k (Dk, D)``, ``w_v (Dv, D)``, ``w_o (D, Do)`` and optional
            biases ``b_q``, ``b_k``, ``b_v`` of shape ``(D,)`` and ``b_o (Do,)``, all arrays of this backend
            with the inputs' dtype. The same dict format moves weights between the three frameworks.
        num_heads: ``H``, a positive integer dividing ``D``.
        mask: optional boolean array broadcastable to ``(B, H, Lq, Lk)``; a padding mask over keys is
            ``(B, 1, 1, Lk)``.
        bias: optional floating-point array broadcastable to ``(B, H, Lq, Lk)``.
        causal, dropout, seed: as :func:`scaled_dot_product_attention` (per head).
        return_weights: if True, also return the per-head weights ``(B, H, Lq, Lk)``.

    Returns:
        ``output (B, Lq, Do)``, or ``(output, weights)``.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and when ``params`` misses a key, has an
        unknown key or a wrongly shaped entry, or ``num_heads`` does not divide ``D``.
    """


def flash_attention(query, key, value, mask=None, bias=None, *, causal=False, scale=None, block_size=None,
                    return_lse=False):
    """Exact scaled dot-product attention computed tile by tile with the online softmax, in O(Lq * d) extra memory.

    The same result as :func:`scaled_dot_product_attention` (without dropout), but the ``(..., Lq, Lk)`` score
    matrix is never materialised: queries and keys are processed in blocks of ``block_size``, and each query block
    keeps a running maximum ``m``, a running normaliser ``l`` and an unnormalised output ``acc`` that are rescaled by
    ``exp(m_old - m_new)`` whenever a new key block raises the maximum (Milakov & Gimelshein, 2018; the block
    recurrence of FlashAttention-2). With ``causal=True``, key blocks that lie entirely above the diagonal are
    skipped, not computed.

    Args:
        query, key, value, mask, bias, causal, scale: as :func:`scaled_dot_product_attention`.
        block_size: positive integer tile size for queries and keys; ``None`` picks tiles suited to the backend:
            a fixed number of scores (2^21 in NumPy and PyTorch, 2^23 in TensorFlow) shared by all the batch and
            head axes, so that the extra memory does not grow with the number of heads either.
        return_lse: if True, also return the log-sum-exp of each query's scaled scores, shape ``(..., Lq)``
            (``-inf`` for a row with no key to attend to), in the softmax's compute dtype.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, lse)``.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and for a ``block_size`` that is not a
        positive integer. Inside a TensorFlow graph the tiles are laid out when it is traced, so ``Lq`` and ``Lk``
        must be known then (the batch axes and ``d`` need not be).
    """


def causal_mask(lq, lk=None):
    """Boolean ``(lq, lk)`` mask, True where key ``j <= i`` (top-left aligned). ``lk`` defaults to ``lq``."""


def padding_mask(lengths, max_len=None):
    """Boolean ``(B, max_len)`` mask, True where position ``j < lengths[b]``.

    ``lengths`` is a 1-D integer array of this backend; ``max_len`` defaults to ``max(lengths)`` (0 for an empty
    batch; a scalar tensor inside a TensorFlow graph, which makes the mask ``(B, None)`` there). To mask padded
    *keys*, index it as ``m[:, None, :]`` for scores ``(B, Lq, Lk)`` or ``m[:, None, None, :]`` for multi-head
    scores ``(B, H, Lq, Lk)``.
    """


def mask_from_keep(keep):
    """Boolean mask from a "1 = attend, 0 = ignore" mask (Keras, Hugging Face ``attention_mask``).

    Accepts booleans or integers 0/1; any other integer value raises ``ValueError`` (inside a TensorFlow graph,
    where the values are known only when it runs, ``tf.errors.InvalidArgumentError`` with the same message).
    """


def mask_from_ignore(ignore):
    """Boolean mask from a boolean "True = ignore" mask (``torch.nn.MultiheadAttention``'s ``key_padding_mask``
    and boolean ``attn_mask``): the logical negation."""


def mask_from_additive(additive, threshold=-1e4):
    """Boolean mask from an additive float mask: True where ``additive > threshold``, compared in float64 (exact
    for every dtype and any real threshold; NaN is refused).

    Additive masks hold 0 for "attend" and a large negative number (``-inf``, ``-1e9``, ``-1e4``,
    ``finfo.min``) for "ignore". Soft biases between the two are lost by the conversion: pass such an array as
    ``bias`` instead.
    """


def mask_to_additive(mask, dtype="float32"):
    """Additive float mask from a boolean mask: 0 where True, ``-inf`` where False (``dtype`` by name)."""


def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    """The sinusoidal positional encoding of Vaswani et al. (2017), shape ``(length, d_model)``.

    ``PE[p, 2i] = sin(p / base^(2i/d_model))`` and ``PE[p, 2i+1] = cos(p / base^(2i/d_model))``; an odd
    ``d_model`` drops the last cosine column. ``base`` is a finite number greater than 1.
    """


SPECS = {f.__name__: f for f in (
    softmax, scaled_dot_product_attention, additive_attention, bilinear_attention, multi_head_attention,
    flash_attention, causal_mask, padding_mask, mask_from_keep, mask_from_ignore, mask_from_additive, mask_to_additive,
    sinusoidal_positional_encoding,
)}

for _f in SPECS.values():
    _f.__doc__ = _f.__doc__.replace("{common}", _COMMON) if "{common}" in _f.__doc__ else _f.__doc__


def implements(fn):
    """Decorator for backend functions: check the signature against the spec and copy its docstring."""
    spec = SPECS[fn.__name__]
    want, got = inspect.signature(spec), inspect.signature(fn)
    if want != got:
        raise AssertionError(f"{fn.__module__}.{fn.__name__}{got} drifted from the spec {spec.__name__}{want}")
    fn.__doc__ = spec.__doc__
    return fn
