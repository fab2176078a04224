"""attnbook.distributed: ring attention and Ulysses on 2 and 4 local processes (gloo)
against the unsharded reference, attnbook.torch.scaled_dot_product_attention and
autograd through it.

Starting processes is the slow part (each imports torch), so one spawn per world size
runs every case and every bad input and returns all the results; the tests then read
them. Every spawn has a timeout, so a hang fails instead of blocking the suite.
"""

import time

import numpy as np
import pytest

from adapters import framework

WORLDS = (2, 4)
TIMEOUT = 90


@pytest.fixture(scope="module")
def ad():
    framework("torch")
    import attnbook.distributed

    return attnbook.distributed


# --- what the spawned processes run (module-level, so that they can import it)
# -------------------


def _bad_calls(rank, world):
    """Bad inputs, some different on each rank: name -> a call that must raise on
    every rank."""
    import torch

    import attnbook.distributed as ad

    x = torch.randn(1, 4, 4, 3)
    # a sequence cut into unequal shards
    ragged = torch.randn(1, 4, 4 if rank == 0 else 3, 3)
    mixed = torch.randn(
        1, 4, 4, 3, dtype=torch.float64 if rank == world - 1 else torch.float32
    )
    three_heads = torch.randn(1, 3, 4, 3)
    one_head, three_kv = torch.randn(1, 1, 4, 3), torch.randn(1, 3, 4, 3)
    return {
        "ring_ragged": lambda: ad.ring_attention(ragged, ragged, ragged),
        "ulysses_ragged": lambda: ad.ulysses_attention(ragged, ragged, ragged),
        "ring_dtype_across_ranks": lambda: ad.ring_attention(mixed, mixed, mixed),
        "ring_dtype_on_one_rank": lambda: ad.ring_attention(x, mixed, mixed),
        "ring_not_a_tensor_on_one_rank": lambda: ad.ring_attention(
            x.numpy() if rank == 1 else x, x, x
        ),
        "ring_causal_across_ranks": lambda: ad.ring_attention(
            x, x, x, causal=rank == 0
        ),
        "ring_scale_across_ranks": lambda: ad.ring_attention(x, x, x, scale=0.5 + rank),
        "ring_scale_too_large": lambda: ad.ring_attention(x, x, x, scale=10**400),
        "ring_layout": lambda: ad.ring_attention(x, x, x, layout="striped"),
        "ring_zigzag_odd_shard": lambda: ad.ring_attention(
            x[..., :3, :], x[..., :3, :], x[..., :3, :], layout="zigzag"
        ),
        "ring_key_length": lambda: ad.ring_attention(x, x[..., :2, :], x[..., :2, :]),
        "ulysses_heads": lambda: ad.ulysses_attention(
            three_heads, three_heads, three_heads
        ),
        "ulysses_rank": lambda: ad.ulysses_attention(x[0], x[0], x[0]),
        "ring_rank": lambda: ad.ring_attention(x[0, 0, 0], x[0, 0, 0], x[0, 0, 0]),
        # Windows and grouped heads.
        "ring_window_across_ranks": lambda: ad.ring_attention(
            x, x, x, window=(2 + rank, 0)
        ),
        "ulysses_window_across_ranks": lambda: ad.ulysses_attention(
            x, x, x, window=(2, None if rank == 0 else 1)
        ),
        "ring_window_negative": lambda: ad.ring_attention(x, x, x, window=(-1, 0)),
        "ring_window_huge": lambda: ad.ring_attention(x, x, x, window=(2**70, 0)),
        "ring_window_not_a_pair_on_one_rank": lambda: ad.ring_attention(
            x, x, x, window=3 if rank == 1 else (3, 0)
        ),
        "ring_gqa_across_ranks": lambda: ad.ring_attention(
            x, x, x, enable_gqa=rank == 0
        ),
        "ring_gqa_heads_do_not_group": lambda: ad.ring_attention(
            x, three_kv, three_kv, enable_gqa=True
        ),
        "ring_fewer_kv_heads_without_gqa": lambda: ad.ring_attention(
            x, one_head, one_head
        ),
        "ulysses_kv_heads": lambda: ad.ulysses_attention(
            x, one_head, one_head, enable_gqa=True
        ),
    }


def _run(rank, world, cases, with_errors):
    """Each case on this rank's shards: output and gradient shards and the bytes
    counted; then the bad calls, each one's exception as (type name, message)."""
    import torch
    import torch.distributed as dist

    import attnbook.distributed as ad

    results = []
    for case in cases:
        method, layout = case["method"], case["layout"]
        fn = ad.ring_attention if method == "ring" else ad.ulysses_attention
        extra = {"layout": layout} if method == "ring" else {}
        q, k, v = (
            ad.shard(case[n], rank, world, layout).requires_grad_()
            for n in ("query", "key", "value")
        )
        with ad.count_bytes() as sent:
            out = fn(
                q,
                k,
                v,
                causal=case["causal"],
                scale=case["scale"],
                window=case["window"],
                enable_gqa=case["enable_gqa"],
                **extra,
            )
            grad = ad.shard(case["grad"], rank, world, layout)
            grads = torch.autograd.grad(out, (q, k, v), grad)
        results.append({"out": out.detach(), "grads": grads, "bytes": dict(sent)})
    errors = {}
    if with_errors:
        for name, call in _bad_calls(rank, world).items():
            try:
                call()
                errors[name] = ("no error", "")
            except Exception as err:  # noqa: BLE001 - the test compares whatever was raised
                errors[name] = (type(err).__name__, str(err))
        # A process outside the group it is given is refused at once, and the group's
        # own ranks, which all call together, are not disturbed.
        pair = dist.new_group([0, 1])
        x = torch.randn(1, 2, 4, 3)
        try:
            ad.ring_attention(x, x, x, group=pair)
            errors["outside_group"] = ("no error", "")
        except ValueError as err:
            errors["outside_group"] = ("ValueError", str(err))
        dist.barrier()
    return results, errors


def _fail_on_rank_one(rank, world):
    import torch.distributed as dist

    if rank == 1:
        raise KeyError("rank one gives up")
    dist.barrier()  # rank 0 waits for a rank that will never arrive


def _sleep(rank, world):
    time.sleep(60)


# --- the cases and one spawn per world size
# ------------------------------------------------------

# Windows in positions of the whole sequence, for shards of n = 8 tokens: causal windows
# of 3 keys (less than a shard), 8 (a shard), 10 (just over one: two hops) and 19 (over
# two shards); windows that look ahead (needing the whole ring), and one-sided ones.
WINDOWS = (None, (2, 0), (7, 0), (9, 0), (18, 0), (4, 3), (1, 10), (None, 2), (5, None))


def _cases(world):
    import torch

    gen = torch.Generator().manual_seed(world)

    def case(
        method,
        layout,
        causal,
        shape,
        dtype,
        scale=None,
        dv=None,
        window=None,
        kv_heads=None,
    ):
        rand = lambda s: torch.randn(s, generator=gen, dtype=torch.float64).to(dtype)  # noqa: E731
        kv_shape = shape if kv_heads is None else shape[:-3] + (kv_heads,) + shape[-2:]
        vshape, oshape = (
            kv_shape[:-1] + (dv or shape[-1],),
            shape[:-1] + (dv or shape[-1],),
        )
        return {
            "method": method,
            "layout": layout,
            "causal": causal,
            "scale": scale,
            "window": window,
            "enable_gqa": kv_heads is not None,
            "kv_heads": kv_heads,
            "query": rand(shape),
            "key": rand(kv_shape),
            "value": rand(vshape),
            "grad": rand(oshape),
            "shape": shape,
        }

    cases = []
    for dtype in (torch.float32, torch.float64):
        for causal in (False, True):
            for layout in ("contiguous", "zigzag"):
                cases.append(case("ring", layout, causal, (3, 5, 6 * world, 8), dtype))
            cases.append(
                case("ulysses", "contiguous", causal, (2, 4, 3 * world, 8), dtype)
            )
    # 2-byte floats: shards travel in 2 bytes, the ring's gradient accumulators in
    # float32.
    cases.append(case("ring", "zigzag", True, (3, 5, 6 * world, 8), torch.bfloat16))
    cases.append(
        case("ulysses", "contiguous", True, (2, 4, 3 * world, 8), torch.float16)
    )
    # No head axis, dv != d and an explicit scale; and shards longer than one backward
    # tile.
    cases.append(
        case("ring", "zigzag", True, (2, 4 * world, 6), torch.float32, 0.3, dv=5)
    )
    cases.append(
        case(
            "ulysses",
            "contiguous",
            True,
            (1, 4, 2 * world, 6),
            torch.float64,
            0.7,
            dv=3,
        )
    )
    if world == 2:
        cases.append(case("ring", "zigzag", True, (1, 1, 1040, 4), torch.float64))
        cases.append(case("ring", "contiguous", True, (1, 1, 1040, 4), torch.float32))
    # Windows and grouped-query attention (H = 4 query heads, Hkv = 4, 2 or 1), every
    # window in both layouts, with and without causal, each head count in turn.
    for layout in ("contiguous", "zigzag"):
        for causal in (False, True):
            for i, window in enumerate(WINDOWS):
                kv_heads = (None, 2, 1)[(i + causal + (layout == "zigzag")) % 3]
                cases.append(
                    case(
                        "ring",
                        layout,
                        causal,
                        (2, 4, 8 * world, 6),
                        torch.float32,
                        window=window,
                        kv_heads=kv_heads,
                    )
                )
    # Ulysses needs H and Hkv divisible by P: H = 2P query heads on P or 2P key/value
    # heads.
    for causal in (False, True):
        for i, window in enumerate((None, (2, 0), (9, 0), (4, 3))):
            cases.append(
                case(
                    "ulysses",
                    "contiguous",
                    causal,
                    (1, 2 * world, 8 * world, 6),
                    torch.float32,
                    window=window,
                    kv_heads=(world, None)[i % 2],
                )
            )
    # dv != d with grouped heads and a window; a window across the backward pass's
    # tiles.
    cases.append(
        case(
            "ring",
            "zigzag",
            False,
            (1, 4, 8 * world, 6),
            torch.float32,
            0.4,
            dv=3,
            window=(5, 2),
            kv_heads=2,
        )
    )
    if world == 2:
        cases.append(
            case(
                "ring",
                "contiguous",
                True,
                (1, 2, 1040, 4),
                torch.float32,
                window=(600, 0),
                kv_heads=1,
            )
        )
    return cases


@pytest.fixture(scope="module")
def runs(ad):
    out = {}
    for world in WORLDS:
        cases = _cases(world)
        out[world] = {
            "cases": cases,
            "ranks": ad.spawn(_run, world, cases, True, timeout=TIMEOUT),
        }
    return out


def _reference(case):
    """Output and gradients over the whole sequence; in float64 for 2-byte inputs,
    which the distributed functions also compute in a wider type (float32)."""
    import torch

    import attnbook.torch as at

    wide = case["query"].element_size() == 2
    q, k, v = (
        case[n].double().requires_grad_() if wide else case[n].clone().requires_grad_()
        for n in ("query", "key", "value")
    )
    out = at.scaled_dot_product_attention(
        q,
        k,
        v,
        causal=case["causal"],
        scale=case["scale"],
        window=case["window"],
        enable_gqa=case["enable_gqa"],
    )
    grad = case["grad"].double() if wide else case["grad"]
    return (out, *torch.autograd.grad(out, (q, k, v), grad))


def _label(case):
    return (
        f"{case['method']}/{case['layout']}/causal={case['causal']}/{case['shape']}/"
        f"{str(case['query'].dtype).removeprefix('torch.')}/window={case['window']}/"
        f"kv_heads={case['kv_heads']}"
    )


@pytest.mark.parametrize("world", WORLDS)
def test_forward_and_backward_match_the_unsharded_reference(runs, ad, world):
    import torch

    run = runs[world]
    for i, case in enumerate(run["cases"]):
        layout = case["layout"]
        got = [ad.unshard([run["ranks"][r][0][i]["out"] for r in range(world)], layout)]
        got += [
            ad.unshard(
                [run["ranks"][r][0][i]["grads"][j] for r in range(world)], layout
            )
            for j in range(3)
        ]
        # 2-byte types: their rounding (2^-11, 2^-8), as one process gets (about 2e-3
        # here).
        tol = {
            torch.float64: 1e-10,
            torch.float32: 1e-5,
            torch.float16: 1e-3,
            torch.bfloat16: 8e-3,
        }[case["query"].dtype]
        for name, mine, ref in zip(
            ("output", "dq", "dk", "dv"), got, _reference(case), strict=False
        ):
            assert mine.dtype == case["query"].dtype, (_label(case), name)
            err = (mine.double() - ref.double()).abs().max().item()
            assert err <= tol * max(1.0, ref.abs().max().item()), (
                _label(case),
                name,
                err,
            )


@pytest.mark.parametrize("world", WORLDS)
def test_bytes_sent_equal_the_formula(runs, ad, world):
    run = runs[world]
    for i, case in enumerate(run["cases"]):
        if case["value"].shape != case["key"].shape:
            continue  # the formula takes dv = d
        want = ad.communication_bytes(
            case["method"],
            case["shape"],
            world,
            case["query"].element_size(),
            causal=case["causal"],
            kv_heads=case["kv_heads"],
            window=case["window"],
            layout=case["layout"],
        )
        for r in range(world):
            sent = run["ranks"][r][0][i]["bytes"]
            assert {k: sent[k] for k in want} == want, (_label(case), r, sent)
            assert 0 < sent["handshake"] < 1000


def test_the_formula_by_hand(ad):
    # (B, H, L, d) = (1, 2, 8, 4) float32 over 4 ranks: a shard is S = 16 elements, 64
    # bytes.
    assert ad.communication_bytes("ring", (1, 2, 8, 4), 4, 4) == {
        "forward": 2 * 3 * 64,
        "backward": 2 * 3 * 64 + 2 * 4 * 64,
    }
    # Over 2 ranks a shard is 32 elements, 128 bytes; Ulysses keeps half of each of 4
    # tensors.
    assert ad.communication_bytes("ulysses", (1, 2, 8, 4), 2, 4) == {
        "forward": 4 * 128 // 2,
        "backward": 4 * 128 // 2,
    }
    # 2-byte inputs: the ring's gradient accumulators travel in float32.
    assert (
        ad.communication_bytes("ring", (8, 4), 2, 2)["backward"]
        == 2 * 16 * 2 + 2 * 2 * 16 * 4
    )
    assert ad.communication_bytes("ring", (8, 4), 1, 4) == {"forward": 0, "backward": 0}
    for bad in (
        ("ulysses", (1, 3, 8, 4), 2, 4),
        ("ring", (7, 4), 2, 4),
        ("tree", (8, 4), 2, 4),
        ("ring", (8, 4), 2, 3),
        ("ring", (8, 4), 0, 4),
    ):
        with pytest.raises(ValueError):
            ad.communication_bytes(*bad)


def test_the_formula_with_grouped_heads_and_windows(ad):
    # (B, H, L, d) = (1, 4, 32, 2) float32 over 4 ranks: a query shard is 64 elements, a
    # key shard with Hkv = 1 key/value head 16 elements, 64 bytes.
    shape = (1, 4, 32, 2)
    mha = ad.communication_bytes("ring", shape, 4, 4)
    assert ad.communication_bytes("ring", shape, 4, 4, kv_heads=1) == {
        "forward": 2 * 3 * 64,
        "backward": 2 * 3 * 64 + 2 * 4 * 64,
    }
    assert ad.communication_bytes("ring", shape, 4, 4, kv_heads=2) == {
        k: b // 2 for k, b in mha.items()
    }  # only keys and values travel
    # Ulysses moves Q and O (256 bytes a shard) as before, K and V in Hkv / H of the
    # bytes.
    assert ad.communication_bytes("ulysses", shape, 2, 4, kv_heads=2)["forward"] == (
        2 * 512 // 2 + 2 * 256 // 2
    )
    # Causal windows over shards of n = 8 tokens: a block goes as far as the last rank
    # whose first query sees one of its keys, ceil((w - 1) / n) ranks on.
    for w, hops in (
        (1, 0),
        (3, 1),
        (8, 1),
        (9, 1),
        (10, 2),
        (17, 2),
        (18, 3),
        (100, 3),
    ):
        assert ad.ring_hops(4, 8, window=(w - 1, 0)) == hops, w
        assert ad.ring_hops(4, 8, causal=True, window=(w - 1, 5)) == hops, w
        sent = ad.communication_bytes(
            "ring", shape, 4, 4, kv_heads=1, window=(w - 1, 0)
        )
        assert sent == (
            {"forward": 2 * hops * 64, "backward": 2 * hops * 64 + 2 * (hops + 1) * 64}
            if hops
            else {"forward": 0, "backward": 0}
        )
    assert ad.ring_hops(4, 8) == ad.ring_hops(4, 8, causal=True) == 3
    # Looking ahead needs the next rank's block, P - 1 hops away; so do the zigzag's
    # late chunks.
    assert (
        ad.ring_hops(4, 8, window=(2, 1)) == ad.ring_hops(4, 8, window=(None, 1)) == 3
    )
    assert ad.ring_hops(4, 8, window=(1, 0), layout="zigzag") == 3
    assert ad.ring_hops(4, 8, window=(0, 0), layout="zigzag") == 0
    assert ad.ring_hops(1, 8, window=(2, 0)) == 0
    for bad in (
        dict(kv_heads=3),
        dict(kv_heads=0),
        dict(window=(-1, 0)),
        dict(layout="striped"),
        dict(layout="zigzag", window=(1, 0), kv_heads=1),
    ):
        method = "ulysses" if bad.get("layout") == "zigzag" else "ring"
        with pytest.raises((TypeError, ValueError)):
            ad.communication_bytes(method, shape, 4, 4, **bad)
    with pytest.raises(ValueError, match="does not split over 4 ranks"):
        ad.communication_bytes("ulysses", shape, 4, 4, kv_heads=2)  # Hkv = 2 < P
    with pytest.raises(ValueError, match="needs a head axis"):
        ad.communication_bytes("ring", (32, 2), 4, 4, kv_heads=1)
    with pytest.raises(ValueError, match="even shard length"):
        ad.ring_hops(4, 7, layout="zigzag")


EXPECTED_ERRORS = {
    "ring_ragged": (
        "ValueError",
        "the shards have different lengths (axis -2 of query): 4 on rank 0",
    ),
    "ulysses_ragged": ("ValueError", "the shards have different lengths"),
    "ring_dtype_across_ranks": ("TypeError", "query has dtype float32 on rank"),
    "ring_dtype_on_one_rank": (
        "TypeError",
        "on rank {last} of {world}: arrays must share one dtype",
    ),
    "ring_not_a_tensor_on_one_rank": (
        "TypeError",
        "on rank 1 of {world}: query must be a torch.Tensor, got numpy.ndarray",
    ),
    "ring_causal_across_ranks": (
        "ValueError",
        "causal differs across ranks: True on rank 0 and False on rank",
    ),
    "ring_scale_across_ranks": (
        "ValueError",
        "scale differs across ranks: 0.5 on rank 0",
    ),
    "ring_layout": (
        "ValueError",
        "layout must be 'contiguous' or 'zigzag', got 'striped'",
    ),
    "ring_zigzag_odd_shard": (
        "ValueError",
        "layout='zigzag' needs an even shard length",
    ),
    "ring_key_length": ("ValueError", "must be shards of the same length"),
    "ulysses_heads": (
        "ValueError",
        "H = 3 (axis 1 of query (1, 3, 4, 3)) must be divisible by",
    ),
    "ulysses_rank": ("ValueError", "query must have rank 4 (B, H, L/P, d)"),
    "ring_rank": (
        "ValueError",
        "query must have rank >= 2 (..., L, d), got shape (3,)",
    ),
    "ring_scale_too_large": (
        "ValueError",
        "scale must be a positive finite number or None, got an integer of 1329 bits",
    ),
    "ring_window_across_ranks": (
        "ValueError",
        "window differs across ranks: (2, 0) on rank 0",
    ),
    "ulysses_window_across_ranks": (
        "ValueError",
        "window differs across ranks: (2, None) on rank 0 and (2, 1) on rank",
    ),
    "ring_window_negative": (
        "ValueError",
        "window[0] must be a non-negative integer or None, got -1",
    ),
    "ring_window_huge": (
        "ValueError",
        "window[0] must be a non-negative integer or None of at most 2**63 - 1",
    ),
    "ring_window_not_a_pair_on_one_rank": (
        "TypeError",
        "on rank 1 of {world}: window must be None or a pair (left, right)",
    ),
    "ring_gqa_across_ranks": (
        "ValueError",
        "enable_gqa differs across ranks: True on rank 0 and False on rank",
    ),
    "ring_gqa_heads_do_not_group": (
        "ValueError",
        "H = 4 (axis -3 of query) to be a multiple of the key/value heads Hkv = 3",
    ),
    "ring_fewer_kv_heads_without_gqa": (
        "ValueError",
        "no broadcasting: key and value "
        "travel "
        "between ranks); for "
        "grouped-query "
        "attention",
    ),
    "ulysses_kv_heads": (
        "ValueError",
        "Hkv = 1 (axis 1 of key (1, 1, 4, 3)) must be "
        "divisible "
        "by {world}. Fewer key/value heads than ranks "
        "would have "
        "to be copied",
    ),
}


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_bad_inputs_raise_the_same_error_on_every_rank(runs, world, name):
    kind, words = EXPECTED_ERRORS[name]
    raised = [runs[world]["ranks"][r][1][name] for r in range(world)]
    assert len(set(raised)) == 1, raised  # the same error on every rank
    assert raised[0][0] == kind, raised[0]
    assert words.format(world=world, last=world - 1) in raised[0][1], raised[0]


@pytest.mark.parametrize("world", WORLDS)
def test_a_rank_outside_the_group_is_refused(runs, world):
    raised = [runs[world]["ranks"][r][1]["outside_group"] for r in range(world)]
    assert raised[:2] == [("no error", "")] * 2
    for kind, message in raised[2:]:
        assert kind == "ValueError" and "is not in the group" in message


# --- without processes
# ---------------------------------------------------------------------------


def test_without_a_process_group(ad):
    import torch

    x = torch.zeros(1, 2, 4, 3)
    for fn in (ad.ring_attention, ad.ulysses_attention):
        with pytest.raises(
            RuntimeError, match="call torch.distributed.init_process_group"
        ):
            fn(x, x, x)


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_and_unshard_round_trip(ad, layout, world):
    import torch

    x = np.arange(2 * 24 * 3).reshape(2, 24, 3)
    shards = [ad.shard(x, r, world, layout) for r in range(world)]
    np.testing.assert_array_equal(ad.unshard(shards, layout), x)
    pos = [ad.shard(np.arange(24), r, world, layout, dim=0) for r in range(world)]
    assert sorted(np.concatenate(pos).tolist()) == list(range(24))
    if layout == "zigzag":  # rank r holds chunks r and 2P - 1 - r
        c = 24 // (2 * world)
        assert pos[0][:c].tolist() == list(range(c)) and pos[0][-1] == 23
    t = torch.from_numpy(x)
    assert torch.equal(
        ad.unshard(
            [ad.shard(t, r, world, layout, dim=1) for r in range(world)], layout, dim=1
        ),
        t,
    )


def test_shard_refuses_lengths_that_do_not_split(ad):
    with pytest.raises(ValueError, match="cannot be cut into 8 equal chunks"):
        ad.shard(np.zeros((12, 2)), 0, 4, "zigzag", dim=0)
    with pytest.raises(ValueError, match="layout must be"):
        ad.shard(np.zeros((12, 2)), 0, 4, "striped", dim=0)


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_block_plan_covers_each_visible_pair_exactly_once(ad, layout, world):
    """Over the P steps of the ring, the blocks computed (with the causal mask where
    the plan says) cover every pair (i, j) with j <= i exactly once and no other
    pair."""
    length = 4 * world
    n = length // world
    pos = [ad.shard(np.arange(length), r, world, layout, dim=0) for r in range(world)]
    for causal in (False, True):
        seen = np.zeros((length, length), int)
        for rank in range(world):
            for source in range(world):
                plan = ad.block_plan(rank, source, n, causal=causal, layout=layout)
                if plan is None:
                    continue
                rows, cols, diagonal = plan
                i, j = pos[rank][rows][:, None], pos[source][cols][None, :]
                seen[i, j] += 1 if not diagonal else (j <= i)
        want = np.tril(np.ones((length, length), int)) if causal else np.ones_like(seen)
        np.testing.assert_array_equal(seen, want)


@pytest.mark.parametrize("layout", ["contiguous", "zigzag"])
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_window_plan_covers_each_pair_in_the_window_exactly_once(ad, layout, world):
    """The pieces of every block, with their local windows, cover every pair (i, j)
    with i - left <= j <= i + right once and no other pair; and the ring's hops reach
    every block a rank needs."""
    n = 6
    length = n * world
    pos = [ad.shard(np.arange(length), r, world, layout, dim=0) for r in range(world)]
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    for left in (None, 0, 1, 2, 5, 6, 7, 13):
        for right in (None, 0, 1, 4, 8):
            seen, farthest = np.zeros((length, length), int), 0
            for rank in range(world):
                for source in range(world):
                    pieces = ad.window_plan(
                        rank, source, n, world, (left, right), layout=layout
                    )
                    if pieces:
                        farthest = max(farthest, (rank - source) % world)
                    for rows, cols, local in pieces:
                        a = np.arange(rows.stop - rows.start)[:, None]
                        b = np.arange(cols.stop - cols.start)[None, :]
                        ok = np.ones((a.size, b.size), bool)
                        if local is not None:
                            assert all(s is None or s >= 0 for s in local)
                            ok &= (b >= a - local[0]) if local[0] is not None else True
                            ok &= (b <= a + local[1]) if local[1] is not None else True
                        seen[pos[rank][rows][:, None], pos[source][cols][None, :]] += ok
            want = np.ones((length, length), bool)
            want &= (j >= i - left) if left is not None else True
            want &= (j <= i + right) if right is not None else True
            np.testing.assert_array_equal(
                seen, want.astype(int), err_msg=str((left, right))
            )
            assert (
                ad.ring_hops(world, n, window=(left, right), layout=layout) == farthest
            )


def test_zigzag_balances_the_causal_work(ad):
    world, n = 4, 8

    def work(layout, rank):
        total = 0
        for source in range(world):
            plan = ad.block_plan(rank, source, n, causal=True, layout=layout)
            if plan is not None:
                rows, cols, diagonal = plan
                size = (rows.stop - rows.start) * (cols.stop - cols.start)
                total += (size + n) // 2 if diagonal else size
        return total

    contiguous = [work("contiguous", r) for r in range(world)]
    zigzag = [work("zigzag", r) for r in range(world)]
    assert contiguous == [36 + 64 * r for r in range(world)]
    assert len(set(zigzag)) == 1 and sum(zigzag) == sum(contiguous)


def test_merge_keeps_rows_without_keys_finite(ad):
    import torch

    inf = float("inf")
    o1, o2 = torch.ones(3, 2), 2 * torch.ones(3, 2)
    l1, l2 = torch.tensor([0.0, -inf, -inf]), torch.tensor([0.0, 1.0, -inf])
    out, lse = ad.merge(o1, l1, o2, l2)
    assert not out.isnan().any()
    torch.testing.assert_close(out[0], torch.full((2,), 1.5))
    torch.testing.assert_close(out[1], o2[1])
    torch.testing.assert_close(out[2], torch.zeros(2))
    assert lse[2] == -inf and abs(lse[0].item() - np.log(2)) < 1e-6


# --- spawn fails clearly instead of hanging
# ------------------------------------------------------


def test_spawn_reports_a_failing_rank(ad):
    start = time.monotonic()
    with pytest.raises(
        RuntimeError,
        match=r"(?s)rank 1 of 2 raised in "
        r"_fail_on_rank_one.*rank one "
        "gives up",
    ):
        ad.spawn(_fail_on_rank_one, 2, timeout=TIMEOUT)
    assert time.monotonic() - start < 30


def test_spawn_times_out_and_kills_the_workers(ad):
    start = time.monotonic()
    with pytest.raises(
        TimeoutError,
        match=r"had not finished after 5.0 s on ranks \[0, "
        r"1\]",
    ):
        ad.spawn(_sleep, 2, timeout=5.0)
    assert time.monotonic() - start < 20


def test_spawn_refuses_functions_it_cannot_import(ad):
    with pytest.raises(
        ValueError, match="must be defined at the top level of a module"
    ):
        ad.spawn(lambda rank, world: rank, 2)
