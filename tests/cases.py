"""Attention test cases built in NumPy, run on any backend, and checked against the
oracle.

A case is a dict: ``fn`` (the attnbook function name), ``args`` (positional NumPy
    arrays or a params dict),
``num_heads`` (multi-head only), ``mask`` (bool or None), ``bias`` (float or None)
and ``causal``.
"""

import numpy as np

import oracle

FUNCTIONS = [
    "scaled_dot_product_attention",
    "additive_attention",
    "bilinear_attention",
    "multi_head_attention",
]
VARIANTS = [
    "none",
    "mask",
    "broadcast_mask",
    "causal",
    "causal_mask",
    "bias",
    "mask_bias",
]
HAS_BIAS = {"scaled_dot_product_attention", "multi_head_attention"}


def mha_params(rng, dq, dk, dv, d_model, d_out, bias=True):
    p = {
        "w_q": rng.normal(size=(dq, d_model)) / np.sqrt(dq),
        "w_k": rng.normal(size=(dk, d_model)) / np.sqrt(dk),
        "w_v": rng.normal(size=(dv, d_model)) / np.sqrt(dv),
        "w_o": rng.normal(size=(d_model, d_out)) / np.sqrt(d_model),
    }
    if bias:
        p.update(
            b_q=0.1 * rng.normal(size=d_model),
            b_k=0.1 * rng.normal(size=d_model),
            b_v=0.1 * rng.normal(size=d_model),
            b_o=0.1 * rng.normal(size=d_out),
        )
    return p


def random_mask(rng, shape, p=0.7):
    m = rng.random(shape) < p
    m[..., 0] = True  # no fully masked rows here: they have their own tests
    return m


def make_case(fn, variant="none", seed=0, lq=4, lk=5, batch=(2, 3)):
    """Lq != Lk, two leading axes, unit-scale inputs."""
    rng = np.random.default_rng(seed)
    case = {
        "fn": fn,
        "mask": None,
        "bias": None,
        "causal": variant in ("causal", "causal_mask"),
    }
    if fn == "multi_head_attention":
        b, h = batch[0], 2
        dq, dk, dv, d_model, d_out = 6, 5, 4, 6, 3
        case["args"] = [
            rng.normal(size=(b, lq, dq)),
            rng.normal(size=(b, lk, dk)),
            rng.normal(size=(b, lk, dv)),
            mha_params(rng, dq, dk, dv, d_model, d_out),
        ]
        case["num_heads"] = h
        score = (b, h, lq, lk)
        bshape = (1, h, lq, lk)
        bmask = (b, 1, 1, lk)  # a key padding mask
    else:
        dq = 3
        dk = 3 if fn == "scaled_dot_product_attention" else 2
        dv = 2
        args = [
            rng.normal(size=batch + (lq, dq)),
            rng.normal(size=batch + (lk, dk)),
            rng.normal(size=batch + (lk, dv)),
        ]
        if fn == "additive_attention":
            hidden = 4
            args += [
                rng.normal(size=(dq, hidden)),
                rng.normal(size=(dk, hidden)),
                rng.normal(size=hidden),
            ]
        elif fn == "bilinear_attention":
            args += [rng.normal(size=(dq, dk)) / np.sqrt(dq)]
        case["args"] = args
        score = batch + (lq, lk)
        bshape = batch[-1:] + (lq, lk)
        bmask = batch[-1:] + (1, lk)
    if variant in ("mask", "causal_mask", "mask_bias"):
        case["mask"] = random_mask(rng, score)
    elif variant == "broadcast_mask":
        case["mask"] = random_mask(rng, bmask)
    if variant in ("bias", "mask_bias"):
        if fn not in HAS_BIAS:
            return None
        case["bias"] = rng.normal(size=bshape)
    return case


def convert(B, case, dtype):
    """The case's arrays as native tensors of ``dtype`` (masks stay boolean)."""

    def conv(a):
        if isinstance(a, dict):
            return B.params(a, dtype)
        return B.asarray(a, dtype)

    args = [conv(a) for a in case["args"]]
    if case["fn"] == "multi_head_attention":
        args.append(case["num_heads"])
    kwargs = {"causal": case["causal"]}
    if case["mask"] is not None:
        kwargs["mask"] = B.asarray(case["mask"], "bool")
    if case["bias"] is not None:
        kwargs["bias"] = B.asarray(case["bias"], dtype)
    return args, kwargs


def run(B, case, dtype, **extra):
    """Run ``case`` on backend ``B``; returns (output, weights) as float64 NumPy plus
    the native output."""
    args, kwargs = convert(B, case, dtype)
    out, weights = getattr(B.mod, case["fn"])(
        *args, **kwargs, return_weights=True, **extra
    )
    return B.to_numpy(out), B.to_numpy(weights), out, weights


def rounded(B, case, dtype):
    """The case with every float array replaced by the float64 values it holds in
    ``dtype`` on ``B``."""

    def rnd(a):
        if isinstance(a, dict):
            return {k: B.round_trip(v, dtype) for k, v in a.items()}
        return B.round_trip(a, dtype)

    out = dict(case, args=[rnd(a) for a in case["args"]])
    if case["bias"] is not None:
        out["bias"] = rnd(case["bias"])
    return out


def reference(case, **extra):
    """The oracle's (output, weights) for ``case``."""
    fn = getattr(oracle, case["fn"])
    args = list(case["args"])
    if case["fn"] == "multi_head_attention":
        args.append(case["num_heads"])
    kwargs = {"causal": case["causal"], "mask": case["mask"]}
    if case["fn"] in HAS_BIAS:
        kwargs["bias"] = case["bias"]
    return fn(*args, **kwargs, **extra)
