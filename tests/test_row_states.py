"""The row-pass primitive of the C core (fastxent.h: fx_row_states, fx_state_merge, fx_state_lse).

A fused linear + cross-entropy will take the states of one vocabulary chunk of logits at a time
and merge them across chunks: these tests hold the primitive to what fastxent.h promises. The
state of a whole row finishes to logsumexp's value bitwise; chunks that start at multiples of
the block merge to the whole row's state bitwise; any other chunking agrees with the float64
reference to rounding.
"""
import numpy as np
import pytest

import fastxent
from fastxent import _core, reference
from fastxent._arrays import as_rows

BLOCK = _core.BLOCK


def _states(a, n_threads=1):
    base, layout, _, _ = as_rows(a, (a.ndim - 1,))
    return _core.row_states(base, layout, n_threads)


def _merge_all(chunks):
    st = chunks[0]
    for c in chunks[1:]:
        st = np.array([_core.state_merge(np.ascontiguousarray(a), np.ascontiguousarray(b)) for a, b in zip(st, c)])
    return st


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("n", [1, 7, 10, 64, 65, 4096, 4097, 9000])
def test_state_of_a_whole_row_finishes_to_logsumexp(isa, rng, dtype, n):
    x = (3 * rng.standard_normal((5, n))).astype(dtype)
    x[1, n // 2] = np.inf
    x[2, :] = -np.inf
    x[3, 0] = np.nan
    st = _states(x)
    assert st.shape == (5, 4)
    got = _core.state_lse(dtype, np.ascontiguousarray(st))
    base, layout, _, _ = as_rows(x, (1,))
    want = np.empty(5)
    _core.lse(base, layout, want, 1)  # the kernel behind fastxent.logsumexp, in double
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got.astype(np.float32), fastxent.logsumexp(x, axis=-1).astype(np.float32))
    assert st[1, 0] == np.inf and np.isneginf(st[2, 0]) and st[3, 3] == 1.0 and st[0, 3] == 0.0
    assert st[0, 1] >= 1.0  # the max is counted


@pytest.mark.parametrize("n_threads", [1, 2])
def test_chunks_at_block_multiples_merge_to_the_whole_row_bitwise(isa, rng, n_threads):
    n = 2 * BLOCK + 1000
    x = (3 * rng.standard_normal((3, n))).astype(np.float32)
    whole = _states(x, n_threads)
    parts = [_states(x[:, a:b], n_threads) for a, b in [(0, BLOCK), (BLOCK, 2 * BLOCK), (2 * BLOCK, n)]]
    np.testing.assert_array_equal(_merge_all(parts), whole)


@pytest.mark.parametrize("cuts", [[1], [100, 5000], [33, 34, 4095, 8000]])
def test_any_chunking_merges_to_the_reference(rng, cuts):
    n = 9000
    x = (3 * rng.standard_normal((4, n))).astype(np.float64)
    edges = [0, *cuts, n]
    parts = [_states(x[:, a:b]) for a, b in zip(edges, edges[1:])]
    got = _core.state_lse("float64", np.ascontiguousarray(_merge_all(parts)))
    np.testing.assert_allclose(got, reference.logsumexp(x, axis=-1), rtol=4e-16, atol=0)


def test_merge_of_special_states():
    fin = np.array([1.0, 1.0, 0.5, 0.0])
    none = np.array([-np.inf, 0.0, 0.0, 0.0])
    inf = np.array([np.inf, 1.0, 0.0, 0.0])
    nan = np.array([0.0, 1.0, 0.0, 1.0])
    assert _core.state_merge(fin, none) == (1.0, 1.0, 0.5, 0.0)
    assert _core.state_merge(none, fin) == (1.0, 1.0, 0.5, 0.0)
    assert _core.state_merge(fin, inf) == (np.inf, 1.0, 0.0, 0.0)
    assert _core.state_merge(fin, nan)[3] == 1.0
    # equal maxima: counts and rests add
    assert _core.state_merge(fin, fin) == (1.0, 2.0, 1.0, 0.0)
    # a smaller max is rescaled into the rest: e^(0-1) (1 + 0.5) more
    m, c, r, _ = _core.state_merge(fin, np.array([0.0, 1.0, 0.5, 0.0]))
    assert (m, c) == (1.0, 1.0) and r == pytest.approx(0.5 + 1.5 * np.exp(-1.0), rel=1e-15)
