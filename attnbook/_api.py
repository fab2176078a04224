"""The public contract: one signature and one docstring per operation.

Every backend module (``attnbook.numpy``, ``attnbook.torch``,
``attnbook.tensorflow``) implements each function below with exactly this signature;
:func:`implements` copies the docstring onto the implementation and refuses, at
import time, an implementation whose signature has drifted. The top-level
``attnbook.<name>`` functions are dispatchers built from these stubs (see
``attnbook/__init__.py``).

Shape letters used in every docstring:

=====  ==========================================================
``...``  leading batch / head axes (broadcast between arguments) ``B``    batch size
``H``    number of heads ``Lq``   query length (number of queries) ``Lk``   key
length (number of keys = number of values) ``d``    query/key feature size ``dv``
value feature size ``da``   hidden size of additive scoring (``w_query (dq, da)``,
``w_key (dk, da)``, ``v (da,)``) ``Hkv``  number of key/value heads (grouped-query
attention; ``H`` must be a multiple) ``D``    model width of multi-head attention
(``D = H * d``)
=====  ==========================================================
"""

from __future__ import annotations

import inspect

_COMMON = """
    Conventions shared by every attention function:

    * ``mask`` is boolean, **True = may attend**, broadcastable to the score shape
      ``(..., Lq, Lk)`` (it may not add axes that the scores do not have).
    * ``causal=True`` lets query ``i`` see keys ``j <= i`` (top-left aligned, like
      PyTorch's ``is_causal``); it combines with ``mask`` by logical *and*.
    * A query row with no key left to attend to (every key masked, or ``Lk == 0``)
      gets weights 0 and output 0: never NaN, never a uniform average.
    * The output has the dtype of the inputs; float16 and bfloat16 inputs compute
      their scores (with a float32 ``bias`` as given) and their softmax in float32.
    * A score of ``-inf`` (a ``-inf`` bias, or a product that overflows) masks its
      key; any finite score, even ``finfo.min``, is a key like any other. The bias of
      a masked key is never read. A bias of ``+inf`` or NaN on a key a row may attend
      makes that row NaN.
    * NaN or infinity in ``query``, ``key`` or ``value`` propagate to the output
      without being checked (a check would cost a device synchronisation); which
      entries they reach is not specified, as a fused kernel may skip a block that
      the explicit path multiplies by a zero weight (``0 * inf`` is NaN).
    * Any axis may have size 0: an empty batch or ``Lq = 0`` gives an empty output,
      ``Lk = 0`` rows of zeros, ``d = 0`` scores of 0 (``scale`` 1) and ``dv = 0`` an
      output with no features.
    * Integer arguments are Python or NumPy integers (not bools) up to ``2**63 - 1``;
      real ones, Python or NumPy numbers; flags, Python or NumPy bools.
    * TensorFlow: every function also runs inside ``tf.function`` with sizes unknown
      when it is traced (``tf.TensorSpec([None, None, 64])``); the rank must be
      known.
"""


_OPTIONS = """
    The options of today's models, defined once for
    :func:`scaled_dot_product_attention` and :func:`flash_attention` (and, through
    them, :func:`multi_head_attention`):

    * **Positions.** Query ``i`` sits at position ``p_i = i`` with
      ``align="top_left"`` (PyTorch's ``is_causal``, JAX) or ``p_i = i + Lk - Lq``
      with ``align="bottom_right"`` (FlashAttention,
      ``torch.nn.attention.bias.causal_lower_right``): the last query sits at the
      last key, as when ``Lq`` new tokens are decoded against a cache of ``Lk`` keys.
      Key ``j`` sits at position ``j``.
    * ``causal=True``: query ``i`` may attend key ``j`` iff ``j <= p_i``. With
      ``bottom_right`` and ``Lq > Lk`` the first ``Lq - Lk`` rows have no key at all:
      weights 0, output 0, log-sum-exp ``-inf``.
    * ``window=(left, right)``: query ``i`` may attend key ``j`` iff ``p_i - left <=
      j <= p_i + right``, both ends inclusive (so ``(w - 1, 0)`` is a causal window
      of ``w`` keys); ``None`` on a side leaves it unbounded. This is
      FlashAttention's ``window_size`` with ``None`` for its ``-1``. ``causal=True``
      is ``right = 0``.
    * The key structure ANDs ``mask``, ``causal`` and ``window``.
    * ``enable_gqa=True`` (grouped-query / multi-query attention): axis -3 of
      ``query`` holds ``H`` heads, axis -3 of ``key`` and ``value`` ``Hkv`` heads,
      ``H % Hkv == 0``, and query head ``h`` uses key/value head ``h // (H // Hkv)``
      (PyTorch's ``enable_gqa``). Keys and values are never repeated in memory: the
      query heads are grouped instead, ``(..., Hkv, H // Hkv, Lq, d)``. ``mask``,
      ``bias`` and ``sink`` broadcast to the shapes with ``H`` heads.
    * ``softcap=c`` (a finite number > 0): the scaled scores become ``c * tanh(scores
      / c)`` before ``bias`` and the masks (Gemma 2, Grok; FlashAttention's
      ``softcap``), so that no score exceeds ``c`` in size.
    * ``sink``: a floating-point array broadcastable to ``(..., Lq)`` holding one
      logit per row (one per head: shape ``(H, 1)``) that joins the row's softmax
      denominator and contributes no value (GPT-OSS' attention sinks,
      FlashAttention-4's ``learnable_sink``): the weights of a row then sum to ``1 -
      sigmoid(sink - lse)``, less than 1, and the log-sum-exp includes the sink. A
      row with no key puts all
      its mass on the sink: weights 0, output 0. Differentiable in PyTorch and
          TensorFlow.
    * The order is fixed: ``scale``, ``softcap``, ``+ bias``, the masks, the softmax
      with the sink, dropout, the weighted sum of ``value``.
"""


def softmax(x, axis=-1, mask=None):
    """Numerically stable softmax, optionally restricted to the entries where
    ``mask`` is True.

    Args:
        x: floating-point array of any shape.
        axis: the axis to normalise over (negative values count from the end).
        mask: optional boolean array broadcastable to ``x.shape``; ``False`` entries
            get probability exactly 0.

    Returns:
        An array of ``x``'s shape and dtype whose slices along ``axis`` sum to 1, or
        are all 0 when every entry of the slice is masked (or ``-inf``). The maximum
        is subtracted before exponentiating, so logits of any finite magnitude give
        finite results.

    Raises:
        TypeError: ``x`` is not a floating-point array of this backend, or ``mask``
            is not boolean.
        ValueError: ``axis`` is out of range, or ``mask`` does not broadcast to
            ``x.shape``.
    """


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    *,
    causal=False,
    window=None,
    align="top_left",
    enable_gqa=False,
    softcap=None,
    sink=None,
    scale=None,
    dropout=0.0,
    seed=None,
    return_weights=False,
):
    """Scaled dot-product attention, ``softmax(query @ key^T * scale + bias) @
    value``.

    Args:
        query: ``(..., Lq, d)`` floating-point array (``(..., H, Lq, d)`` with
            ``enable_gqa``).
        key: ``(..., Lk, d)``, same dtype as ``query`` (``(..., Hkv, Lk, d)`` with
            ``enable_gqa``).
        value: ``(..., Lk, dv)``, same dtype as ``query`` (``(..., Hkv, Lk, dv)``
            with ``enable_gqa``).
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may
            attend.
        bias: optional floating-point array broadcastable to ``(..., Lq, Lk)``, added
            to the scaled scores (relative-position biases, ALiBi, additive masks
            with ``-inf``).
        causal: if True, query ``i`` attends only to keys ``j <= p_i`` (see
            ``align``).
        window: ``None`` or ``(left, right)``, each a non-negative integer or
            ``None``: query ``i`` attends only to keys ``p_i - left <= j <= p_i +
            right``.
        align: ``"top_left"`` (``p_i = i``) or ``"bottom_right"`` (``p_i = i + Lk -
            Lq``), for ``causal`` and ``window``.
        enable_gqa: if True, ``H`` query heads share ``Hkv`` key/value heads on axis
            -3.
        softcap: ``None`` or a finite number ``c > 0``: scores become ``c *
            tanh(scores / c)``.
        sink: optional floating-point array broadcastable to ``(..., Lq)``: a logit
            per row that joins the softmax denominator and contributes no value.
        scale: multiplier of the scores; ``None`` means ``1 / sqrt(d)``. Must be a
            finite number > 0 that the compute dtype holds (a scale that would become
            0 or inf in float32 is refused).
        dropout: probability in ``[0, 1)`` of zeroing each attention weight (kept
            weights are divided by ``1 - dropout``). Applied whenever it is > 0: pass
            0 at inference.
        seed: optional integer in ``[0, 2**63)`` that makes dropout reproducible
            within one framework.
        return_weights: if True, also return the attention weights (after dropout).

    Returns:
        ``output`` of shape ``(..., Lq, dv)``, or ``(output, weights)`` with weights
        ``(..., Lq, Lk)``.
    {common}{options}
    Raises:
        TypeError: an argument is not an array of this backend, a dtype is wrong
            (integer inputs, a non-boolean mask, mixed dtypes), or a flag has the
            wrong type.
        ValueError: shapes disagree or do not broadcast,
            ``scale``/``dropout``/``seed``/``softcap``/``window`` are out of range,
            ``align`` is unknown, heads do not group, or arrays live on different
            devices.
    """


def additive_attention(
    query,
    key,
    value,
    w_query,
    w_key,
    v,
    mask=None,
    *,
    causal=False,
    return_weights=False,
):
    """Additive (Bahdanau, "concat") attention, ``score(q, k) = tanh(q @ w_query + k
    @ w_key) @ v``.

    Args:
        query: ``(..., Lq, dq)``.
        key: ``(..., Lk, dk)``; ``dk`` may differ from ``dq``.
        value: ``(..., Lk, dv)``.
        w_query: ``(dq, da)`` projection of the queries into the hidden scoring space
            (``U_q`` in the book).
        w_key: ``(dk, da)`` projection of the keys (``U_k``).
        v: ``(da,)`` the scoring vector.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may
            attend.
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        return_weights: if True, also return the weights ``(..., Lq, Lk)``.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, weights)``.

    The score tensor ``(..., Lq, Lk, da)`` is materialised, so memory grows as ``Lq *
    Lk * da``. {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and for
            parameters whose shape does not match ``dq``, ``dk`` or each other's hidden
            size ``da``.
    """


def bilinear_attention(
    query, key, value, w, mask=None, *, causal=False, return_weights=False
):
    """Bilinear (Luong "general") attention, ``score(q, k) = q @ w @ k``.

    Args:
        query: ``(..., Lq, dq)``.
        key: ``(..., Lk, dk)``; ``dk`` may differ from ``dq``.
        value: ``(..., Lk, dv)``.
        w: ``(dq, dk)``.
        mask: optional boolean array broadcastable to ``(..., Lq, Lk)``, True = may
            attend.
        causal: if True, query ``i`` attends only to keys ``j <= i``.
        return_weights: if True, also return the weights ``(..., Lq, Lk)``.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, weights)``. The scores are not
        scaled.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and when
            ``w`` is not ``(dq, dk)``.
    """


def multi_head_attention(
    query,
    key,
    value,
    params,
    num_heads,
    mask=None,
    bias=None,
    *,
    num_kv_heads=None,
    causal=False,
    window=None,
    align="top_left",
    softcap=None,
    rope=None,
    dropout=0.0,
    seed=None,
    return_weights=False,
):
    """Multi-head attention (Vaswani et al., 2017) with explicit parameters, and its
    grouped-query variants.

    Each input is projected (``y = x @ w + b``), split into ``num_heads`` contiguous
    slices of the model width ``D`` (head ``h`` uses columns ``h*d:(h+1)*d`` with ``d
    = D/H``), attended per head with :func:`scaled_dot_product_attention`,
    concatenated and projected by ``w_o``. With ``num_kv_heads = Hkv`` the keys and
    values are projected to ``Hkv`` heads only, each shared by ``H / Hkv`` query
    heads (GQA; ``Hkv = 1`` is multi-query attention, MQA).

    Args:
        query: ``(B, Lq, Dq)``.
        key: ``(B, Lk, Dk)``.
        value: ``(B, Lk, Dv)``.
        params: mapping with ``w_q (Dq, D)``, ``w_k (Dk, Hkv*d)``, ``w_v (Dv,
            Hkv*d)``, ``w_o (D, Do)`` and optional biases ``b_q (D,)``, ``b_k``,
            ``b_v`` of shape ``(Hkv*d,)`` and ``b_o (Do,)``, all arrays of this
            backend with the inputs' dtype. The same dict format moves weights
            between the three frameworks.
        num_heads: ``H``, a positive integer dividing ``D``.
        mask: optional boolean array broadcastable to ``(B, H, Lq, Lk)``; a padding
            mask over keys is ``(B, 1, 1, Lk)``.
        bias: optional floating-point array broadcastable to ``(B, H, Lq, Lk)``.
        num_kv_heads: ``None`` (``= H``, plain multi-head attention) or a positive
            integer dividing ``H``.
        causal, window, align, softcap, dropout, seed: as
            :func:`scaled_dot_product_attention` (per head).
        rope: ``None``, or the base of rotary position embeddings
            (:func:`rotary_embedding`, rotate-half convention) applied to the
            projected queries and keys of every head, at the positions ``align``
            gives them (``p_i`` for query ``i``, ``j`` for key ``j``): ``10000.0`` in
            RoFormer and Llama 2, ``500000.0`` in Llama 3.
        return_weights: if True, also return the per-head weights ``(B, H, Lq, Lk)``.

    Returns:
        ``output (B, Lq, Do)``, or ``(output, weights)``.
    {common}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and when
            ``params`` misses a key, has an unknown key or a wrongly shaped entry, or
            ``num_heads`` does not divide ``D``.
    """


def flash_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    *,
    causal=False,
    window=None,
    align="top_left",
    enable_gqa=False,
    softcap=None,
    sink=None,
    scale=None,
    block_size=None,
    return_lse=False,
):
    """Exact scaled dot-product attention computed tile by tile with the online
    softmax, in O(Lq * d) extra memory.

    The same result as :func:`scaled_dot_product_attention` (without dropout), but the
    ``(..., Lq, Lk)`` score matrix is never materialised: queries and keys are processed
    in blocks of ``block_size``, and each query block keeps a running maximum ``m``, a
    running normaliser ``l`` and an unnormalised output ``acc`` that are rescaled by
    ``exp(m_old - m_new)`` whenever a new key block raises the maximum (Milakov &
    Gimelshein, 2018; the block recurrence of FlashAttention-2). Each query block
    computes only the keys that ``causal``, ``window`` and ``align`` let one of its rows
    see, so a causal call does about half the work and a sliding window of ``w`` keys
    costs ``O(Lq * w)``, not ``O(Lq * Lk)``; the sink joins at the end, through the
    log-sum-exp.

    Args:
        query, key, value, mask, bias, causal, window, align, enable_gqa, softcap,
            sink, scale: as :func:`scaled_dot_product_attention`.
        block_size: positive integer tile size for queries and keys; ``None`` picks
            tiles suited to the backend: a fixed number of scores (2^21 in NumPy and
            PyTorch, 2^23 in TensorFlow) shared by all the batch and head axes, so
            that the extra memory does not grow with the number of heads either.
        return_lse: if True, also return the log-sum-exp of each query's scores
            (scaled, soft-capped, biased, and with the sink), shape ``(..., Lq)``
            (``-inf`` for a row with no key and no sink), in the softmax's compute
            dtype.

    Returns:
        ``output (..., Lq, dv)``, or ``(output, lse)``.
    {common}{options}
    Raises:
        TypeError / ValueError: as :func:`scaled_dot_product_attention`, and for a
            ``block_size`` that is not a positive integer. Inside a TensorFlow graph the
            tiles are laid out when it is traced, so ``Lq`` and ``Lk`` must be known
            then (the batch axes and ``d`` need not be).
    """


def causal_mask(lq, lk=None, *, align="top_left"):
    """Boolean ``(lq, lk)`` mask, True where key ``j <= p_i`` (``p_i = i`` top-left,
    ``i + lk - lq`` bottom-right). ``lk`` defaults to ``lq``."""


def window_mask(lq, lk, window, *, align="top_left"):
    """Boolean ``(lq, lk)`` mask, True where ``p_i - left <= j <= p_i + right`` for
    ``window = (left, right)`` (``None`` on a side: unbounded), with ``p_i`` as in
    :func:`causal_mask`. ``window=(w - 1, 0)`` is a causal sliding window of ``w``
    keys; it is what ``window=`` of the attention functions applies, written out."""


def document_mask(segments_q, segments_k=None):
    """Boolean ``(..., Lq, Lk)`` mask for packed sequences: True where query ``i``
    and key ``j`` carry the same segment (document) id, ``segments_q[..., i] ==
    segments_k[..., j]``.

    ``segments_q`` is an integer array ``(..., Lq)`` of this backend, ``segments_k``
    one of shape ``(..., Lk)`` (default: ``segments_q``). Combine with
    ``causal=True`` for packed causal language modelling: each document then attends
    only to its own past.
    """


def rotary_embedding(x, positions=None, *, base=10000.0, interleaved=False):
    """Rotary position embedding (RoPE, Su et al. 2021) of ``x (..., L, d)``, ``d``
    even.

    Feature pair ``r`` (``r = 0 .. d/2 - 1``) of the vector at position ``p`` is rotated
    by the angle ``p * base^(-2r/d)``. ``interleaved=False`` pairs feature ``r`` with
    ``r + d/2`` ("rotate half": GPT-NeoX, Hugging Face's Llama and
    ``apply_rotary_pos_emb``); ``interleaved=True`` pairs ``2r`` with ``2r + 1``
    (RoFormer, GPT-J, Meta's Llama code). Rotations compose, so ``<R_p q, R_p' k> = <q,
    R_{p'-p} k>``: a dot product of rotated vectors depends only on the offset ``p' -
    p``.

    Args:
        x: floating-point ``(..., L, d)``.
        positions: ``None`` (``0 .. L-1``) or a numeric array of this backend
            broadcastable to ``(..., L)``.
        base: a finite number greater than 1.
        interleaved: the pairing, as above.

    Returns:
        An array of ``x``'s shape and dtype (computed in float32 for
        float16/bfloat16, angles in float64).
    """


def alibi_slopes(num_heads, dtype="float32"):
    """The ALiBi slopes of Press et al. (2022), shape ``(num_heads,)``.

    For ``H`` a power of two, head ``h`` (``h = 1 .. H``) has slope ``2^(-8h/H)``;
    otherwise the paper's rule: the slopes of the largest power of two ``m < H``,
    then every other slope of ``2m``, up to ``H`` slopes.
    """


def alibi_bias(num_heads, lq, lk, *, align="top_left", dtype="float32"):
    """The ALiBi bias ``(num_heads, lq, lk)``: ``-slope_h * |p_i - j|``, a penalty
    linear in the distance between query position ``p_i`` (as in :func:`causal_mask`)
    and key ``j``. With ``causal=True`` only ``j <= p_i`` is seen, where it equals
    the paper's ``-slope_h * (p_i - j)``; pass it as ``bias``."""


def padding_mask(lengths, max_len=None):
    """Boolean ``(B, max_len)`` mask, True where position ``j < lengths[b]``.

    ``lengths`` is a 1-D integer array of this backend; ``max_len`` defaults to
    ``max(lengths)`` (0 for an empty batch; a scalar tensor inside a TensorFlow
    graph, which makes the mask ``(B, None)`` there). To mask padded *keys*, index it
    as ``m[:, None, :]`` for scores ``(B, Lq, Lk)`` or ``m[:, None, None, :]`` for
    multi-head scores ``(B, H, Lq, Lk)``.
    """


def mask_from_keep(keep):
    """Boolean mask from a "1 = attend, 0 = ignore" mask (Keras, Hugging Face
    ``attention_mask``).

    Accepts booleans or integers 0/1; any other integer value raises ``ValueError``
    (inside a TensorFlow graph, where the values are known only when it runs,
    ``tf.errors.InvalidArgumentError`` with the same message).
    """


def mask_from_ignore(ignore):
    """Boolean mask from a boolean "True = ignore" mask
    (``torch.nn.MultiheadAttention``'s ``key_padding_mask`` and boolean
    ``attn_mask``): the logical negation."""


def mask_from_additive(additive, threshold=-1e4):
    """Boolean mask from an additive float mask: True where ``additive > threshold``,
    compared in float64 (exact for every dtype and any real threshold; NaN is
    refused).

    Additive masks hold 0 for "attend" and a large negative number (``-inf``,
    ``-1e9``, ``-1e4``, ``finfo.min``) for "ignore". Soft biases between the two are
    lost by the conversion: pass such an array as ``bias`` instead.
    """


def mask_to_additive(mask, dtype="float32"):
    """Additive float mask from a boolean mask: 0 where True, ``-inf`` where False
    (``dtype`` by name)."""


def sinusoidal_positional_encoding(length, d_model, base=10000.0, dtype="float32"):
    """The sinusoidal positional encoding of Vaswani et al. (2017), shape ``(length,
    d_model)``.

    ``PE[p, 2i] = sin(p / base^(2i/d_model))`` and ``PE[p, 2i+1] = cos(p /
    base^(2i/d_model))``; an odd ``d_model`` drops the last cosine column. ``base``
    is a finite number greater than 1.
    """


SPECS = {
    f.__name__: f
    for f in (
        softmax,
        scaled_dot_product_attention,
        additive_attention,
        bilinear_attention,
        multi_head_attention,
        flash_attention,
        causal_mask,
        window_mask,
        document_mask,
        padding_mask,
        mask_from_keep,
        mask_from_ignore,
        mask_from_additive,
        mask_to_additive,
        sinusoidal_positional_encoding,
        rotary_embedding,
        alibi_slopes,
        alibi_bias,
    )
}

for _f in SPECS.values():
    _f.__doc__ = _f.__doc__.replace("{common}", _COMMON).replace("{options}", _OPTIONS)


def implements(fn):
    """Decorator for backend functions: check the signature against the spec and copy
    its docstring."""
    spec = SPECS[fn.__name__]
    want, got = inspect.signature(spec), inspect.signature(fn)
    if want != got:
        raise AssertionError(
            f"{fn.__module__}.{fn.__name__}{got} drifted from the spec "
            f"{spec.__name__}{want}"
        )
    fn.__doc__ = spec.__doc__
    return fn
