"""Compiled kernels (Numba). Plain float64/int64 arrays and scalars in, caller-allocated ``out``.

Between events the linear network ``dx/dt = K x + u`` (u constant) is propagated exactly:
``x(t+h) = Φ(h) x(t) + Γ(h) u`` with ``Φ = expm(K h)`` and ``Γ = ∫_0^h expm(K s) ds``, both read
from one exponential of the augmented matrix ``[[K h, I h], [0, 0]]`` (Van Loan 1978). The
exponential is computed by scaling and squaring with a degree-13 Padé approximant (Higham 2005,
SIAM J Matrix Anal Appl 26:1179), which is exact in the limit for defective ``K`` (e.g. absorption
rate equal to elimination rate) and robust for stiff ``K``.

Each propagator is computed one connected part of the network at a time, with only the input
columns of the states that receive infusions (:func:`structure`, :func:`_fill_slot`). On a
uniform output grid, the stretches between events run in blocks (:func:`_blk_setup`): every
output at the j-th time of a block is a dot product with a tabulated row ``C Φ(h)^j`` (plus
``N_j u`` during infusions), and the state is advanced once per block.

The schematic glutamate/plasticity response (nonlinear) has its own steps, independent of the
output grid and never across a dose event, of 2^(lev/2) hours chosen by error control (on an
output grid; the exact metrics take their own ladder of lengths): an embedded
RK4(3) pair (the classical RK4 with a third-order FSAL estimate, error per step
``h/6 (k4 - k5)``) while ``kout h < 1``, and beyond RK4's stability an exponential step for the
glutamate signal (exact for the stimulus interpolated by a quartic) with RK4 for plasticity and
consolidation (:func:`_etd_step`). The PK inside each step stays exact (its mid-point comes from
``Φ(h/2)``); outputs between step ends are the integrator's dense output (:func:`_pd_fill`).

No validation happens here: :mod:`ketasim.simulate` checks everything before calling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Padé(13) coefficients and the θ13 bound of Higham (2005), Table 2.3 / eq. (2.9)
_B = np.array([64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
               1187353796428800.0, 129060195264000.0, 10559470521600.0, 670442572800.0,
               33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0])
_THETA13 = 5.371920351148152

# Reference counts. A compiled function takes a reference to every array it is passed, and gives
# it back on return: two atomic operations per array per call, which Numba cannot remove where
# the function has loops. The helpers called per step or per block (a dozen array arguments
# each) spent more time on those than on arithmetic (a quarter of a population's run, a third of
# a schematic step). So every helper that neither allocates nor returns an array is compiled
# without reference counting (``_nrt=False``): its callers keep the arrays alive. So is the grid
# kernel itself (:func:`grid_range`): its caller allocates its work arrays (:func:`grid_work`),
# and the rows, slots and block-helper arguments it takes per subject, event and block cost no
# atomic operations (they were a tenth of a run with doses between output times). Every other
# function says ``_nrt=True`` explicitly, because a callee without the option inherits its
# first caller's setting, and one that allocates cannot be compiled without it.
#
# Wrappers. Numba also compiles, for every function, a wrapper that Python can call and a C
# callback: dozens of them for the helpers here, which only compiled code calls. The helpers say
# ``no_cpython_wrapper=True, no_cfunc_wrapper=True`` (1.7 s of a 26-s cold compile); the
# functions Python calls (the kernels, and the few helpers the tests call) keep theirs.
#
# Inlining. ``inline="always"`` makes Numba type and lower the helper again inside each caller,
# as part of the caller's own (larger, slower to type) function: only where a call costs run
# time, the block writer (:func:`_blk_run`: a call took a fifth of a block, for 1.5 s of the
# grid kernel's cold compile) and the two helpers the schematic integrator calls per step. The
# exact metrics' polynomial helpers are plain calls (inlined they had cost 0.3 s of the metrics
# kernel's cold compile; LLVM still inlines what is small).

# Event kinds
BOLUS = 0
START = 1
STOP = -1


@njit(cache=True, _nrt=False)
def _matmul(A, B, out):
    """out = A @ B for square matrices (``out`` neither of them), each entry summed over k in
    order from 0.0. Up to 8 x 8, a row of ``out`` is kept in eight scalar accumulators
    (2.5 times as fast at 6 x 6 as the loop below, which keeps it in memory): the same sums
    in the same order, so the same bits (a zero ``A[i, k]`` adds a zero, which changes no
    finite sum), tested against the loop."""
    n = A.shape[0]
    if n <= 8:
        for i in range(n):
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = 0.0
            for k in range(n):
                a = A[i, k]
                c0 += a * B[k, 0]
                if n >= 2:
                    c1 += a * B[k, 1]
                if n >= 3:
                    c2 += a * B[k, 2]
                if n >= 4:
                    c3 += a * B[k, 3]
                if n >= 5:
                    c4 += a * B[k, 4]
                if n >= 6:
                    c5 += a * B[k, 5]
                if n >= 7:
                    c6 += a * B[k, 6]
                if n == 8:
                    c7 += a * B[k, 7]
            out[i, 0] = c0
            if n >= 2:
                out[i, 1] = c1
            if n >= 3:
                out[i, 2] = c2
            if n >= 4:
                out[i, 3] = c3
            if n >= 5:
                out[i, 4] = c4
            if n >= 6:
                out[i, 5] = c5
            if n >= 7:
                out[i, 6] = c6
            if n == 8:
                out[i, 7] = c7
        return
    _matmul_loop(A, B, out)


@njit(cache=True, _nrt=False)
def _matmul_loop(A, B, out):
    """out = A @ B for square matrices (plain loops, skipping zeros of A)."""
    n = A.shape[0]
    for i in range(n):
        for j in range(n):
            out[i, j] = 0.0
        for k in range(n):
            a = A[i, k]
            if a != 0.0:
                for j in range(n):
                    out[i, j] += a * B[k, j]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _solve(P, Q):
    """Q <- R with P R = Q by Gaussian elimination with partial pivoting (P overwritten)."""
    n = P.shape[0]
    for c in range(n):
        p = c
        big = abs(P[c, c])
        for r in range(c + 1, n):
            if abs(P[r, c]) > big:
                big = abs(P[r, c])
                p = r
        if p != c:
            for j in range(n):
                P[c, j], P[p, j] = P[p, j], P[c, j]
                Q[c, j], Q[p, j] = Q[p, j], Q[c, j]
        piv = P[c, c]
        for r in range(c + 1, n):
            f = P[r, c] / piv
            if f != 0.0:
                for j in range(c, n):
                    P[r, j] -= f * P[c, j]
                for j in range(n):
                    Q[r, j] -= f * Q[c, j]
    for c in range(n - 1, -1, -1):
        for j in range(n):
            acc = Q[c, j]
            for k in range(c + 1, n):
                acc -= P[c, k] * Q[k, j]
            Q[c, j] = acc / P[c, c]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pade_half(X2, X4, X6, k, T, out):
    """out = X6 (b[12+k] X6 + b[10+k] X4 + b[8+k] X2) + b[6+k] X6 + b[4+k] X4 + b[2+k] X2
    + b[k] I: the even (k = 0) or, before a final product with X, odd (k = 1) half of the
    Padé(13) numerator; ``T`` is scratch."""
    b = _B
    n = X2.shape[0]
    for i in range(n):
        for j in range(n):
            T[i, j] = b[12 + k] * X6[i, j] + b[10 + k] * X4[i, j] + b[8 + k] * X2[i, j]
    _matmul(X6, T, out)
    for i in range(n):
        for j in range(n):
            out[i, j] += b[6 + k] * X6[i, j] + b[4 + k] * X4[i, j] + b[2 + k] * X2[i, j]
        out[i, i] += b[k]


@njit(cache=True, _nrt=True)
def expm(A):
    """Matrix exponential by scaling and squaring with a Padé(13) approximant."""
    n = A.shape[0]
    W = np.empty((EXPM_WORK, n, n))
    for i in range(n):
        for j in range(n):
            W[0, i, j] = A[i, j]
    _expm_into(W)
    return W[0]


EXPM_WORK = 12     # n x n matrices of work space of _expm_into


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _expm_into(W):
    """W[0] <- expm(W[0]) (scaling and squaring, Padé(13)); W[1:EXPM_WORK] is work space. One
    allocation for all the intermediate matrices (each a view of W, no copy).

    Returns True when W[11] then holds expm(W[0] / 2) exactly as this function computes it
    from W[0] / 2 itself: the result before the last squaring, when W[0] / 2 would be scaled
    down by one squaring less to the very same matrix (halving is exact)."""
    n = W.shape[1]
    norm = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(W[0, i, j])
        if s > norm:
            norm = s
    sq = 0
    # (np.log2, not math.log2: Numba compiles math.log2 only from 0.59 on; both call the
    # same C log2, so the result is the same to the bit)
    if norm > _THETA13:
        sq = int(math.ceil(np.log2(norm / _THETA13)))
    sq_half = 0
    if 0.5 * norm > _THETA13:
        sq_half = int(math.ceil(np.log2(0.5 * norm / _THETA13)))
    scale = 2.0 ** (-sq)
    X = W[1]
    for i in range(n):
        for j in range(n):
            X[i, j] = W[0, i, j] * scale
    X2 = W[2]
    X4 = W[3]
    X6 = W[4]
    _matmul(X, X, X2)
    _matmul(X2, X2, X4)
    _matmul(X4, X2, X6)
    T1 = W[5]
    T2 = W[6]
    U = W[7]
    V = W[8]
    _pade_half(X2, X4, X6, np.int64(1), T1, T2)   # odd coefficients
    _matmul(X, T2, U)                   # U = X (X6 (b13 X6 + b11 X4 + b9 X2) + ... + b1 I)
    _pade_half(X2, X4, X6, np.int64(0), T1, V)    # V = X6 (b12 X6 + b10 X4 + b8 X2) + ... + b0 I
    P = W[9]
    Q = W[10]
    for i in range(n):
        for j in range(n):
            P[i, j] = V[i, j] - U[i, j]
            Q[i, j] = V[i, j] + U[i, j]
    _solve(P, Q)
    R = Q
    for _ in range(sq):
        _matmul(R, R, T1)
        R, T1 = T1, R
    for i in range(n):
        for j in range(n):
            W[0, i, j] = R[i, j]
    if sq >= 1 and sq_half == sq - 1:
        for i in range(n):
            for j in range(n):
                W[11, i, j] = T1[i, j]
        return True
    return False


@njit(cache=True, _nrt=True)
def propagator(K, h, Phi, Gam):
    """Write Φ(h) = expm(K h) and Γ(h) = ∫_0^h expm(K s) ds into ``Phi`` and ``Gam``."""
    n = K.shape[0]
    W = np.empty((EXPM_WORK, 2 * n, 2 * n))
    M = W[0]
    for i in range(2 * n):
        for j in range(2 * n):
            M[i, j] = 0.0
    for i in range(n):
        for j in range(n):
            M[i, j] = K[i, j] * h
        M[i, n + i] = h
    _expm_into(W)
    E = W[0]
    for i in range(n):
        for j in range(n):
            Phi[i, j] = E[i, j]
            Gam[i, j] = E[i, n + j]


@njit(cache=True, _nrt=True)
def structure(K, ev_c, ev_kind, nev):
    """The block structure of a network, for :func:`_fill_slot`: its states grouped into
    the connected parts of the flow graph (the S and R enantiomers of racemic ketamine, say, are
    two parts that never exchange drug), and the states that receive infusions. Returns an int
    array: [number of parts, perm (n: states part by part), starts (n + 1), input flags (n)]."""
    n = K.shape[0]
    st = np.empty(2 + 3 * n, np.int64)
    _structure_into(K, ev_c, ev_kind, nev, np.empty(n, np.int64), st)
    return st


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _structure_into(K, ev_c, ev_kind, nev, root, st):
    """:func:`structure` into ``st`` (size 2 + 3 n), with ``root`` (size n) as work space."""
    n = K.shape[0]
    for i in range(n):
        root[i] = i
    for i in range(n):
        for j in range(n):
            if i != j and K[i, j] != 0.0:
                a = i
                while root[a] != a:
                    a = root[a]
                b = j
                while root[b] != b:
                    b = root[b]
                if a != b:
                    root[max(a, b)] = min(a, b)
    for i in range(st.shape[0]):
        st[i] = 0
    for i in range(n):
        a = i
        while root[a] != a:
            a = root[a]
        root[i] = a
    k = 0
    parts = 0
    for r in range(n):
        if root[r] == r:
            st[1 + n + parts] = k
            for i in range(n):
                if root[i] == r:
                    st[1 + k] = i
                    k += 1
            parts += 1
    st[0] = parts
    st[1 + n + parts] = n
    for q in range(nev):
        if ev_kind[q] == 1 and 0 <= ev_c[q] < n:
            st[2 + 2 * n + ev_c[q]] = 1


# ---------------------------------------------------------------------------------------------
# Propagator cache. Lengths are compared exactly (bit for bit): a propagator is reused only for
# the very same step length, so no result depends on the horizon or on unrelated events. Full
# grid intervals are snapped to the nominal grid step by the caller (a tolerance relative to the
# current time, the rounding level of the grid itself).

NSLOT = 48          # propagators kept per subject (round robin)
TINY = 1e-290       # amounts below this are flushed to 0 (no slow subnormal arithmetic)


# inlined (each call site typed again, so only where it is hot): it runs twice per step of the
# schematic integrator, where a call with nine array arguments costs a tenth of the step
@njit(cache=True, inline="always")
def _slot_find(h, need_g, ch, cg, nxt):
    """Index of the cache slot holding Φ(h) (and Γ(h) when ``need_g``), or -1 when no slot
    does (then :func:`_slot_of` computes it). A slot serves only requests with its own
    ``need_g`` (Φ from the exponential with Γ's columns differs from Φ alone by rounding): what
    a slot holds depends on (K, st, h, need_g) only, so subjects with equal matrices can share
    the cache and each still gets the values it would get alone. Looks at the two last slots
    first (a schematic step asks for h/2, then h), then at all of them; a miss leaves ``nxt``
    as :func:`_slot_of` leaves it before computing (so calling it next changes nothing of
    what it does)."""
    last = nxt[1]
    g = 1 if need_g else 0
    if ch[last] == h and cg[last] == g:
        return last
    prev = nxt[2]
    if ch[prev] == h and cg[prev] == g:
        nxt[2] = last
        nxt[1] = prev
        return prev
    nxt[2] = last
    for j in range(ch.shape[0]):
        if ch[j] == h and cg[j] == g:
            nxt[1] = j
            return j
    return -1


@njit(cache=True, _nrt=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _slot_of(K, st, h, need_g, ch, cg, CP, CG, nxt, half):
    """Index of the cache slot holding Φ(h) (and Γ(h) when ``need_g``) (:func:`_slot_find`),
    computing it into the next slot round robin when absent (``st``: the network's structure,
    :func:`structure`). ``half``: computing Φ(h) also fills a slot with Φ(h/2) when its
    squarings give it (:func:`_fill_slot`).

    The propagator code is compiled into this function and into the grid kernel that calls it,
    nowhere else: the schematic integrator's step (:func:`_pd_advance`) only looks slots up and
    hands a miss back to the kernel (each compiled function that calls another carries all of
    its code and optimises it again)."""
    j = _slot_find(h, need_g, ch, cg, nxt)
    if j >= 0:
        return j
    ns = ch.shape[0]
    j = nxt[0]
    nxt[0] = (j + 1) % ns
    _fill_slot(K, st, h, need_g, half, ch, cg, CP, CG, nxt, j)
    nxt[1] = j
    return j


@njit(cache=True, inline="always")
def _fill_slot(K, st, h, need_g, half, ch, cg, CP, CG, nxt, j):
    """Slot ``j`` of the propagator cache (:func:`_slot_of`) <- Φ(h)ᵀ (and, when ``need_g``, the
    columns of Γ(h) for the states that receive infusions, transposed; the others are 0), one
    connected part of the network at a time (``st``: :func:`structure`): an exponential of each
    part with its input columns appended, instead of one of twice the whole network's size.

    With ``half`` and Φ(h/2) not cached, the next slot round robin also gets Φ(h/2) (and Γ)
    from the same exponentials' squarings, when that is bit for bit what computing it directly
    gives (:func:`_expm_into`): an event cuts a grid interval into pieces such as 2/3 and 1/3
    of it, and the second then costs nothing."""
    ns = ch.shape[0]
    n = K.shape[0]
    g = 1 if need_g else 0
    h2 = 0.5 * h
    j2 = -1
    if half:
        j2 = nxt[0]
        for q in range(ns):
            if ch[q] == h2 and cg[q] == g:
                j2 = -1
                break
        if j2 == j:
            j2 = -1
    ok = j2 >= 0
    if ok:
        ch[j2] = -1.0                  # its old content is overwritten below
    for i in range(n):
        for k in range(n):
            CP[j, i, k] = 0.0
            if need_g:
                CG[j, i, k] = 0.0
            if ok:
                CP[j2, i, k] = 0.0
                if need_g:
                    CG[j2, i, k] = 0.0
    parts = st[0]
    for p in range(parts):
        b0 = st[1 + n + p]
        b1 = st[1 + n + p + 1]
        nc = b1 - b0
        nu = 0
        if need_g:
            for a in range(nc):
                nu += st[2 + 2 * n + st[1 + b0 + a]]
        m = nc + nu
        if m == 1:
            i = st[1 + b0]
            CP[j, i, i] = math.exp(K[i, i] * h)
            if ok:
                CP[j2, i, i] = math.exp(K[i, i] * h2)
            continue
        W = np.empty((EXPM_WORK, m, m))
        M = W[0]
        for a in range(m):
            for b in range(m):
                M[a, b] = 0.0
        q = nc
        for a in range(nc):
            ia = st[1 + b0 + a]
            for b in range(nc):
                M[a, b] = K[ia, st[1 + b0 + b]] * h
            if need_g and st[2 + 2 * n + ia] == 1:
                M[a, q] = h
                q += 1
        if not _expm_into(W):
            ok = False
        _scatter_t(W[0], st, b0, nc, need_g, CP[j], CG[j])
        if ok:
            _scatter_t(W[11], st, b0, nc, need_g, CP[j2], CG[j2])
    if ok:
        nxt[0] = (j2 + 1) % ns
        ch[j2] = h2
        cg[j2] = g
    ch[j] = h
    cg[j] = g


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _scatter_t(E, st, b0, nc, need_g, PT, GT):
    """The exponential ``E`` of one part (:func:`_fill_slot`) into its places in Φᵀ and Γᵀ."""
    n = PT.shape[0]
    q = nc
    for a in range(nc):
        ia = st[1 + b0 + a]
        for b in range(nc):
            PT[st[1 + b0 + b], ia] = E[a, b]
    for b in range(nc):
        ib = st[1 + b0 + b]
        if need_g and st[2 + 2 * n + ib] == 1:
            for a in range(nc):
                GT[ib, st[1 + b0 + a]] = E[a, q]
            q += 1


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _transpose(A):
    """Transpose a square matrix in place (the cache keeps Φᵀ and Γᵀ, so a propagation runs
    along contiguous rows)."""
    n = A.shape[0]
    for i in range(n):
        for k in range(i + 1, n):
            A[i, k], A[k, i] = A[k, i], A[i, k]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _propagate(PT, GT, x, u, has_u, xo):
    """xo <- Φ x (+ Γ u) from the transposed propagators: column by column, so the n row sums
    are independent accumulators over contiguous memory (no serial chain of additions; each
    row still adds its terms in column order)."""
    n = x.shape[0]
    # the first column written, not added to zeros (a load right after the zeroing stores waits
    # for them); 0 x a finite entry adds nothing but the sign of a zero, which the flush below
    # clears
    x0 = x[0]
    for i in range(n):
        xo[i] = PT[0, i] * x0
    for k in range(1, n):
        xk = x[k]
        if xk != 0.0:
            for i in range(n):
                xo[i] += PT[k, i] * xk
    if has_u:
        for k in range(n):
            uk = u[k]
            if uk != 0.0:
                for i in range(n):
                    xo[i] += GT[k, i] * uk
    for i in range(n):
        if abs(xo[i]) < TINY:
            xo[i] = 0.0


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _apply_events(x, u, active, t, e, nev, ev_t, ev_c, ev_amt, ev_kind, ev_vec):
    """Apply every event at or before t (in order); returns (next event index, has_u)."""
    n = x.shape[0]
    changed = False
    while e < nev and ev_t[e] <= t:
        c = ev_c[e]
        k = ev_kind[e]
        if k == 0:
            x[c] += ev_amt[e]
        elif k == 1:
            active[c] += 1
            u[c] += ev_amt[e]
            changed = True
        elif k == -1:
            active[c] -= 1
            if active[c] <= 0:
                active[c] = 0
                u[c] = 0.0
            else:
                u[c] -= ev_amt[e]
            changed = True
        elif k == 2:                  # reset: the first ev_c states (not an integrator)
            for i in range(min(c, n)):
                x[i] = 0.0
        elif k == 3:
            for i in range(ev_vec.shape[1]):
                x[i] += ev_vec[c, i]
        e += 1
    has_u = np.bool_(False)
    for i in range(n):
        if u[i] != 0.0:
            has_u = True
    return e, has_u, changed


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _dot(a, x):
    s = 0.0
    for i in range(x.shape[0]):
        s += a[i] * x[i]
    return s


# IEEE division (error_model="numpy"): the denominator is at least 1, and without the
# zero-division check a loop of occupancies is vectorised
@njit(cache=True, _nrt=False, error_model="numpy", no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _occ_of(s):
    """Occupancy s/(1+s) of an occupancy sum s (negative rounding noise counts as 0)."""
    if s < 0.0:
        s = 0.0
    return s / (1.0 + s)


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _stim(occ, pd):
    """The occupancy-driven stimulus of the glutamate signal: emax occ^h / (ec50^h + occ^h)."""
    if occ <= 0.0:
        return 0.0
    h = pd[3]
    if h == 3.0:                  # the presets' Hill coefficient: no pow() call
        oh = occ * occ * occ
        eh = pd[2] * pd[2] * pd[2]
    else:
        # as a ratio: occ^h and ec50^h may both underflow (a steep curve), their ratio not
        return pd[1] / (1.0 + (pd[2] / occ) ** h)
    return pd[1] * oh / (eh + oh)


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_f(stim, y, pd, dy):
    """Right-hand side of the schematic response for a given stimulus (see :func:`_stim`).
    y = [G, P, Q]; pd = GLUTAMATE_ROLES values: kout, emax, ec50, hill, plasticity_kin,
    plasticity_kout, consolidation_kin, consolidation_kout."""
    kout = pd[0]
    dy[0] = kout * (1.0 + stim) - kout * y[0]
    drive = y[0] - 1.0
    if drive < 0.0:
        drive = 0.0
    dy[1] = pd[4] * drive * (1.0 - y[1]) - pd[5] * y[1]
    dy[2] = pd[6] * y[1] * (1.0 - y[2]) - pd[7] * y[2]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_norm(err, y, rtol):
    """Largest local error relative to f rtol (|y| + 1e-3), for G (|G - 1| + 1e-3): the safety
    factor f keeps the accumulated error of a whole course within rtol; 0.2 for G (its errors
    decay at kout), 0.05 for P and Q, which add up their errors over weeks when their rates
    are slow. G's error counts against its rise, the drive of P: relative to G itself (1 + a
    rise of 0.13), P and Q had been 2-4 times the tolerance off after a steep onset."""
    m = 0.0
    for i in range(3):
        sc = (0.2 if i == 0 else 0.05) * rtol * (1e-3 + abs(y[i] - 1.0 if i == 0 else y[i]))
        v = abs(err[i]) / sc
        if v > m:
            m = v
    return m


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _hermite_max(y0, y1, m0, m1, h):
    """Largest value of the cubic Hermite interpolant of (y0, m0) at 0 and (y1, m1) at h,
    where the slope goes from positive to negative (the step's dense output)."""
    a = 6.0 * y0 + 3.0 * h * m0 - 6.0 * y1 + 3.0 * h * m1
    b = -6.0 * y0 - 4.0 * h * m0 + 6.0 * y1 - 2.0 * h * m1
    c = h * m0
    best = max(y0, y1)
    if a == 0.0:
        roots = (-c / b if b != 0.0 else -1.0, -1.0)
    else:
        disc = b * b - 4.0 * a * c
        if disc < 0.0:
            return best
        sq = math.sqrt(disc)
        roots = ((-b + sq) / (2.0 * a), (-b - sq) / (2.0 * a))
    for s in roots:
        if 0.0 < s < 1.0:
            s2 = s * s
            s3 = s2 * s
            v = ((2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * m0
                 + (-2 * s3 + 3 * s2) * y1 + (s3 - s2) * h * m1)
            if v > best:
                best = v
    return best


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _rk43(y, hs, om, o1, pd, rtol, k1, k2, k3, k4, k5, yt, y1, err, s0, D0, D1):
    """One step of the embedded RK4(3) pair for the schematic response: ``y1`` the fourth-order
    result, ``k5`` its slope (the next step's ``k1``), returns the scaled error estimate
    ``h/6 (k4 - k5)``. ``om``/``o1``: the stimulus at the mid-point and at the end; ``s0`` at
    the start and ``D0``, ``D1`` its slopes (per unit step) at both ends. The pair only sees
    the stimulus at its three nodes, so G's estimate adds the error of that quadrature (the
    Simpson rule): kout h |s(1/2) - cubic Hermite(1/2)| / 7.5, exact for a quartic stimulus;
    a stimulus that jumps within the step (a Hill curve far steeper than the step) shows there
    too."""
    for i in range(3):
        yt[i] = y[i] + 0.5 * hs * k1[i]
    _pd_f(om, yt, pd, k2)
    for i in range(3):
        yt[i] = y[i] + 0.5 * hs * k2[i]
    _pd_f(om, yt, pd, k3)
    for i in range(3):
        yt[i] = y[i] + hs * k3[i]
    _pd_f(o1, yt, pd, k4)
    for i in range(3):
        y1[i] = y[i] + hs * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0
    _pd_f(o1, y1, pd, k5)
    for i in range(3):
        err[i] = hs * (k4[i] - k5[i]) / 6.0
    dev = om - (0.5 * (s0 + o1) + 0.125 * (D0 - D1))
    err[0] = abs(err[0]) + pd[0] * hs * abs(dev) / 7.5
    return _pd_norm(err, y1, rtol)


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_accept(x, x1, y, y1, k1, k5, hs, ext):
    """Take an accepted sub-step of the schematic integrator: the new PK state and response,
    FSAL (the end slope is the next start slope), and the extremes kept in ``ext`` (largest G,
    including the peak of the step's dense output; smallest P)."""
    if k1[0] > 0.0 and k5[0] < 0.0:    # the glutamate peak inside the sub-step
        gm = _hermite_max(y[0], y1[0], k1[0], k5[0], hs)
        if gm > ext[0]:
            ext[0] = gm
    for i in range(x.shape[0]):
        x[i] = x1[i]
    for i in range(3):
        y[i] = y1[i]
        k1[i] = k5[i]
    if y[0] > ext[0]:
        ext[0] = y[0]
    if y[1] < ext[1]:
        ext[1] = y[1]


# schematic steps on a grid are 2^(lev/2) h long (half levels: a step is sqrt 2 times the one
# below, so steps stay closer to the longest the tolerance allows than with doublings, and
# h/2 is again a step length of the lattice, its propagator shared)
PD_LEV_MIN = -80   # shortest: 2^-40 h
PD_LEV_MAX = 12    # longest: 2^6 = 64 h
PD_LEV_EVENT = -12  # first step after an event at most 2^-6 h (about a minute)
PD_GROW = 0.11     # a step grows by sqrt 2 when its error is below this (x 2^2.5 -> 0.63)
PD_CARRY = 29      # schematic integrator state carried between pieces (see grid_range)


ETD_Z = 1.0        # kout h at or above which the glutamate signal takes the exponential step


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _row_times(w, K, r):
    """r <- the row vector w K (the rate of change of w·x is w K x + w u)."""
    n = K.shape[0]
    for j in range(n):
        a = 0.0
        for i in range(n):
            a += w[i] * K[i, j]
        r[j] = a


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _dstim(x, u, wd, wK, pd):
    """Rate of change (1/h) of the stimulus at state ``x`` with input ``u``: the chain rule
    through occupancy s/(1+s), s = wd·x, ds/dt = wd·(K x + u) (``wK`` = wd K)."""
    sg = 0.0
    ds = 0.0
    for i in range(x.shape[0]):
        sg += wd[i] * x[i]
        ds += wK[i] * x[i] + wd[i] * u[i]
    if sg <= 0.0:
        return 0.0
    occ = sg / (1.0 + sg)
    docc = ds / ((1.0 + sg) * (1.0 + sg))
    h = pd[3]
    if h == 3.0:
        oh = occ * occ * occ
        eh = pd[2] * pd[2] * pd[2]
        dh = 3.0 * occ * occ
    else:
        # as a ratio (see _stim): with q = 1 / (1 + (ec50/occ)^h), d stim / d occ is
        # emax h q (1 - q) / occ
        q = 1.0 / (1.0 + (pd[2] / occ) ** h)
        return pd[1] * h * q * (1.0 - q) / occ * docc
    den = eh + oh
    return pd[1] * dh * eh / (den * den) * docc


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _etd_q(a, th):
    """The polynomial part q(θ) = a0 + a1 θ + ... + a4 θ^4 of the glutamate excess g = G - 1
    over an exponential step (see :func:`_etd_step`)."""
    return a[0] + th * (a[1] + th * (a[2] + th * (a[3] + th * a[4])))


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pq_f(G, y, pd, dy):
    """Slopes of plasticity P and consolidation Q (y[1], y[2]) for a given glutamate G."""
    drive = G - 1.0
    if drive < 0.0:
        drive = 0.0
    dy[1] = pd[4] * drive * (1.0 - y[1]) - pd[5] * y[1]
    dy[2] = pd[6] * y[1] * (1.0 - y[2]) - pd[7] * y[2]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _etd_step(y, hs, s0, sm, s1, D0, D1, pd, rtol, k1, k2, k3, k4, k5, yt, y1, err, c):
    """One step of the schematic response where the glutamate signal is stiff (kout h >= ETD_Z,
    beyond the explicit pair's stability): G exactly for the stimulus interpolated by the
    quartic through its values at the start, middle and end and its slopes (D0, D1, per unit
    step) at both ends; P and Q by the classical RK4 on that G, with the FSAL error estimate.
    G's error estimate is the stimulus' distance from the cubic Hermite interpolant at the
    middle (the quartic's own error is smaller); P's includes the RK4 quadrature error of G's
    fast transient. Writes q's coefficients, z and the transient g0 - q(0) into ``c`` (dense
    output) and G at the middle into ``yt[0]``; returns the scaled error like :func:`_rk43`."""
    kout = pd[0]
    z = kout * hs
    A = s1 - s0 - D0
    B = D1 - D0
    Cm = sm - s0 - 0.5 * D0
    c4 = 2.0 * B - 8.0 * A + 16.0 * Cm
    c3 = B - 2.0 * A - 2.0 * c4
    c2 = A - c3 - c4
    c1 = D0
    # dg/dθ = z (s(θ) - g) with s = s0 + c1 θ + ... + c4 θ^4 has the solution
    # g = q(θ) + exp(-z θ) (g0 - q(0)), q = s - (d/dθ) s / z + (d/dθ)^2 s / z^2 - ..., whose
    # coefficients are (z >= 1, so no cancellation):
    iz = 1.0 / z
    c[4] = c4
    c[3] = c3 - 4.0 * c4 * iz
    c[2] = c2 - (3.0 * c3 - 12.0 * c4 * iz) * iz
    c[1] = c1 - (2.0 * c2 - (6.0 * c3 - 24.0 * c4 * iz) * iz) * iz
    c[0] = s0 - (c1 - (2.0 * c2 - (6.0 * c3 - 24.0 * c4 * iz) * iz) * iz) * iz
    c[5] = z
    E = (y[0] - 1.0) - c[0]
    c[6] = E
    eh = math.exp(-0.5 * z)
    e1 = eh * eh
    Gh = 1.0 + _etd_q(c, 0.5) + eh * E
    G1 = 1.0 + _etd_q(c, 1.0) + e1 * E
    yt[0] = Gh
    for i in range(1, 3):
        yt[i] = y[i] + 0.5 * hs * k1[i]
    _pq_f(Gh, yt, pd, k2)
    for i in range(1, 3):
        yt[i] = y[i] + 0.5 * hs * k2[i]
    _pq_f(Gh, yt, pd, k3)
    for i in range(1, 3):
        yt[i] = y[i] + hs * k3[i]
    _pq_f(G1, yt, pd, k4)
    y1[0] = G1
    for i in range(1, 3):
        y1[i] = y[i] + hs * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]) / 6.0
    _pq_f(G1, y1, pd, k5)
    k5[0] = kout * (s1 - (G1 - 1.0))
    err[0] = sm - (0.5 * (s0 + s1) + 0.125 * (D0 - D1))
    quad = (1.0 - e1) / z - (1.0 + 4.0 * eh + e1) / 6.0
    err[1] = abs(hs * (k4[1] - k5[1]) / 6.0) + abs(hs * pd[4] * (1.0 - y[1]) * E * quad)
    err[2] = hs * (k4[2] - k5[2]) / 6.0
    return _pd_norm(err, y1, rtol)


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_advance(u, has_u, tend, wd, wK, pd, rtol, ch, cg, CP, CG, nxt, xp, MR, x1, S, k2, k3,
                k4, k5, yt, y1, err):
    """One accepted step of the schematic integrator on an output grid, from ``tb`` towards
    ``tend`` (never past it: ``tend`` is the next dose event). PK inside the step is exact
    (``xp``, the integrator's own copy of the state at ``tb``); the response is the embedded
    RK4(3) pair, on steps of 2^(lev/2) hours (the last one of a segment cut to end on ``tend``).
    ``S`` = [ta, tb, lev, ya(3), yb(3), fa(3), fb(3), ...]: the accepted step [ta, tb] with the
    response and its slope at both ends, from which outputs inside it are interpolated (cubic
    Hermite, the integrator's dense output); S[15] and S[16] count accepted and rejected steps;
    S[17] = 1 when the step was exponential, S[18:25] its dense output (:func:`_etd_step`), S[25]
    the z s beyond which that output's transient changes no bit of G; S[26], S[27] the stimulus
    and its rate of change at tb when S[28] = 1 (the last step's end values: the same numbers
    the state at tb gives, kept rather than computed again; a restart clears S[28]).

    Returns 0 after an accepted step; h when the propagator Φ(h) (with Γ when ``has_u``) is
    not in the cache: the caller computes it (:func:`_slot_of`, ``half`` False) and calls
    again."""
    tb = S[1]
    lev = int(S[2])
    yb = S[6:9]
    fb = S[12:15]
    if S[28] == 1.0:
        s0 = S[26]
        ds0 = S[27]
    else:
        s0 = _stim(_occ_of(_dot(wd, xp)), pd)
        ds0 = _dstim(xp, u, wd, wK, pd)
    while True:
        hs = math.ldexp(1.4142135623730951 if lev & 1 else 1.0, lev >> 1)
        rem = tend - tb
        last = hs * 1.25 >= rem
        if last:
            hs = rem
        # the occupancy sum at the middle from the rows wd Φ(h/2), wd Γ(h/2) (one dot product,
        # not a propagation: only that sum is needed there), the end state in one step of h
        # (a propagator not in the cache is handed back to the kernel, which computes it and
        # calls again: the step starts over from the same point with the same length)
        h2 = 0.5 * hs
        if h2 == 0.0:
            om = _stim(_occ_of(_dot(wd, xp)), pd)
        else:
            j = _slot_find(h2, has_u, ch, cg, nxt)
            if j < 0:
                S[2] = lev
                return h2
            om = _stim(_occ_of(_mid_sum(j, xp, u, has_u, h2, cg, CP, CG, wd, MR)), pd)
        j = _slot_find(hs, has_u, ch, cg, nxt)
        if j < 0:
            S[2] = lev
            return hs
        _propagate(CP[j], CG[j], xp, u, has_u, x1)
        o1 = _stim(_occ_of(_dot(wd, x1)), pd)
        ds1 = _dstim(x1, u, wd, wK, pd)
        etd = pd[0] * hs >= ETD_Z
        if etd:
            e = _etd_step(yb, hs, s0, om, o1, hs * ds0, hs * ds1, pd, rtol, fb, k2, k3, k4, k5,
                          yt, y1, err, S[18:25])
        else:
            e = _rk43(yb, hs, om, o1, pd, rtol, fb, k2, k3, k4, k5, yt, y1, err, s0, hs * ds0,
                      hs * ds1)
        if e > 1.0 and lev > PD_LEV_MIN:
            lev -= 1
            S[16] += 1
            continue
        break
    S[15] += 1
    for i in range(xp.shape[0]):
        xp[i] = x1[i]
    for i in range(3):
        S[3 + i] = yb[i]
        S[9 + i] = fb[i]
        yb[i] = y1[i]
        fb[i] = k5[i]
    S[0] = tb
    S[1] = tend if last else tb + hs
    S[17] = 1.0 if etd else 0.0
    S[26] = o1
    S[27] = ds1
    S[28] = 1.0
    if etd:
        # where the transient exp(-z s) E of the dense output is below 2^-55 (then adding it to
        # G = 1 + q, at least 1/2, changes no bit): z s > ln|E| + 55 ln 2
        S[25] = math.log(abs(S[24])) + 38.2 if S[24] != 0.0 else -1.0
    if e < PD_GROW and lev < PD_LEV_MAX and not last:
        lev += 1
    S[2] = lev
    return 0.0


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _wd_rows(wd, A, B, j, with_b, R):
    """R[j, :n] = wd Aⱼᵀ and R[j, n:2n] = wd Bⱼᵀ (0 unless ``with_b``) for the transposed
    matrices A[j], B[j] that the propagator cache and the metric ladder keep: the rows of the
    occupancy sum through Φ (or Ψ) and Γ, for :func:`_mid_sum` and :func:`_mid_rung`."""
    n = wd.shape[0]
    for k in range(n):           # row k of A[j] is column k of the matrix
        a = 0.0
        b = 0.0
        for i in range(n):
            a += wd[i] * A[j, k, i]
            if with_b:
                b += wd[i] * B[j, k, i]
        R[j, k] = a
        R[j, n + k] = b


# inlined into the schematic integrator's step (a call with this many array arguments costs a
# good part of the step)
@njit(cache=True, inline="always")
def _mid_sum(j, x, u, has_u, h, cg, CP, CG, wd, MR):
    """wd·x(h): the occupancy sum h hours after the state x with input u, from the rows
    wd Φ(h) and wd Γ(h) kept beside the propagator cache: ``MR[j]`` = [wd Φ(h) (n),
    wd Γ(h) (n), h, (1 when the Γ row is there) + 2 × (the slot's Γ flag, ``cg[j]``)] for the
    slot j holding Φ(h) (computed when first asked for, n² operations, then 2n per call)."""
    n = x.shape[0]
    # (a row is kept for the slot's h and for the exponential it came from: the same h with
    # and without Γ's columns differs by rounding, and a slot may be refilled with either)
    if (MR[j, 2 * n] != h or (int(MR[j, 2 * n + 1]) >> 1) != cg[j]
            or (has_u and (int(MR[j, 2 * n + 1]) & 1) == 0)):
        _wd_rows(wd, CP, CG, j, has_u, MR)
        MR[j, 2 * n] = h
        MR[j, 2 * n + 1] = (1.0 if has_u else 0.0) + 2.0 * cg[j]
    s = 0.0
    for k in range(n):
        s += MR[j, k] * x[k]
    if has_u:
        for k in range(n):
            s += MR[j, n + k] * u[k]
    return s


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_restart(x, t, wd, pd, xp, S):
    """Restart the schematic integrator at ``t`` from the state ``x`` (after dose events; the
    response itself is continuous): a zero-length step, the slope recomputed, the step length
    capped for what an event may start."""
    for i in range(x.shape[0]):
        xp[i] = x[i]
    S[0] = t
    S[1] = t
    S[17] = 0.0
    S[28] = 0.0
    if S[2] > PD_LEV_EVENT:
        S[2] = PD_LEV_EVENT
    _pd_f(_stim(_occ_of(_dot(wd, x)), pd), S[6:9], pd, S[12:15])
    for i in range(3):
        S[3 + i] = S[6 + i]
        S[9 + i] = S[12 + i]


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_fill(S, times, q0, q1, out, pd_rows):
    """The schematic outputs at ``times[q0:q1]`` (none after the accepted step's end) from the
    step [ta, tb] in ``S``: its dense output, one polynomial per component whose coefficients
    are set once for the run of output times (the loop over them has no other work, so it is
    vectorised). A time at or before ta gives the step's start value (its end value when the
    step has no length, a restart), a time at or after tb its end value."""
    ta = S[0]
    h = S[1] - ta
    ih = 1.0 / h if h > 0.0 else 0.0
    for k in range(3):
        r = pd_rows[k]
        if r < 0:
            continue
        y0 = S[3 + k]
        y1 = S[6 + k]
        if h <= 0.0:
            for q in range(q0, q1):
                out[r, np.uint64(q)] = y1
        elif k == 0 and S[17] == 1.0:       # the exponential step's own solution
            z = S[23]
            zlim = S[25]
            E = S[24]
            c0 = 1.0 + S[18]
            c1 = S[19]
            c2 = S[20]
            c3 = S[21]
            c4 = S[22]
            # the transient exp(-z s) E: exact at every 16th time of the run, and from the one
            # before it by the ratio of a grid step in between (the times of a run longer than
            # one are a uniform grid's: relative error of the transient below 1e-11)
            ratio = 0.0
            if q1 - q0 > 1:
                ratio = math.exp(-z * (times[q0 + 1] - times[q0]) * ih)
            ex = 0.0
            # the times with the transient first (z s grows with the time), up to where it
            # changes no bit of G; then the polynomial alone, a loop with no other work
            # (vectorised), the same values
            qz = q0
            while qz < q1:
                s = (times[qz] - ta) * ih
                zs = z * s
                if not zs <= zlim:
                    break
                v = c0 + s * (c1 + s * (c2 + s * (c3 + s * c4)))
                if (qz - q0) % 16 == 0:
                    ex = math.exp(-zs)
                else:
                    ex *= ratio
                v += ex * E
                if s >= 1.0:
                    v = y1
                if s <= 0.0:
                    v = y0
                out[r, np.uint64(qz)] = v
                qz += 1
            for q in range(qz, q1):
                s = (times[q] - ta) * ih
                v = c0 + s * (c1 + s * (c2 + s * (c3 + s * c4)))
                if s >= 1.0:
                    v = y1
                if s <= 0.0:
                    v = y0
                out[r, np.uint64(q)] = v
        else:                                # cubic Hermite, in powers of s
            a1 = h * S[9 + k]
            b1 = h * S[12 + k]
            a2 = 3.0 * (y1 - y0) - 2.0 * a1 - b1
            a3 = 2.0 * (y0 - y1) + a1 + b1
            # the plasticity indices are never negative: the cubic's rounding-level dip below
            # 0 next to a step's end at 0 (-4e-14 just after the first dose) is written as 0
            lo = 0.0 if k > 0 else -np.inf
            for q in range(q0, q1):
                s = (times[q] - ta) * ih
                v = y0 + s * (a1 + s * (a2 + s * a3))
                if s >= 1.0:
                    v = y1
                if s <= 0.0:
                    v = y0
                out[r, np.uint64(q)] = max(v, lo)


BLK_LEV = 7                # a block covers up to 2^7 = 128 output times
BLK = 1 << BLK_LEV


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _blk_setup(T, n_part, need_n, RW, dup, Rt, rcnt, ridx, Nt, ncnt, nidx, LPh, LGh, LPt, LGt):
    """Tables for blocks of up to BLK output times h apart with no event among them (the
    block path of :func:`grid_range`). Row r of ``RW`` (an output's linear functional) at
    the j-th time of a block is ``R_j x + N_j u`` with R_j = RW Φ(h)^j and
    N_j = sum_{i<j} RW Φ(h)^i Γ(h).

    Without ``n_part`` (``T``: Φ(h)ᵀ as the propagator cache keeps it): ``Rt[r, k, j-1]``
    (only the columns listed in ``ridx`` are ever non-zero; they are packed: ``Rt[r, q]`` is
    the column ``ridx[r, q]``), and the ladder ``LPh[l]`` = Φ(2^l h) (squared up from h) for
    the block's end state, with ``LPt`` (the ladder transposed).
    With ``n_part`` (``T``: Γ(h)ᵀ; all zero unless ``need_n``), afterwards and only when a
    block runs while an infusion is on: ``Nt`` (packed like ``Rt``, columns in ``nidx``) and
    the ladder ``LGh``, ``LGt`` = Γ(2^l h), from the packed ``Rt`` and ``LPh`` (the sums run in
    the order of the unpacked columns, the columns ``Rt`` left out adding exact zeros)."""
    n = T.shape[0]
    rows = RW.shape[0]
    B = Rt.shape[2]
    if not n_part:
        # (no array views in these loops: each view costs an atomic reference count)
        for i in range(n):
            for k in range(n):
                LPh[0, i, k] = T[k, i]
        for lv in range(1, LPh.shape[0]):
            _matmul(LPh[lv - 1], LPh[lv - 1], LPh[lv])
        # j = 0: RW Φ; then by doubling, from the ladder: the next 2^l entries are
        # R_{j + 2^l} = R_j Φ(2^l h), j < 2^l, so each pass is a long loop over j (vector
        # instructions), not a chain of B steps (a row equal to an earlier one, dup[r] >= 0,
        # has no tables: _blk_run copies that row's values)
        for r in range(rows):
            if dup[r] >= 0:
                continue
            for k in range(n):
                a = 0.0
                for i in range(n):
                    a += RW[r, i] * LPh[0, i, k]
                Rt[r, k, 0] = a
        w = 1
        lv = 0
        while w < B:
            for r in range(rows):
                if dup[r] >= 0:
                    continue
                for k in range(n):
                    for j in range(w):
                        Rt[r, k, w + j] = 0.0
                    for i in range(n):
                        p = LPh[lv, i, k]
                        if p != 0.0:      # (parts of a network never reach each other)
                            for j in range(w):
                                Rt[r, k, w + j] += Rt[r, i, j] * p
            w *= 2
            lv += 1
        # the ladder transposed for the block's end state (see _blk_run)
        for lv in range(LPh.shape[0]):
            for i in range(n):
                for k in range(n):
                    LPt[lv, k, i] = LPh[lv, i, k]
        # keep only the columns that are ever non-zero, packed at the front (in column order),
        # so a block touches rows x live columns x B values
        for r in range(rows):
            rcnt[r] = 0 if dup[r] >= 0 else _pack_live(Rt[r], ridx[r])
        return
    for i in range(n):
        for k in range(n):
            LGh[0, i, k] = T[k, i] if need_n else 0.0
    for lv in range(1, LGh.shape[0]):
        for i in range(n):
            for k in range(n):
                LGh[lv, i, k] = 0.0
            for q in range(n):
                piq = LPh[lv - 1, i, q]
                if piq != 0.0:
                    for k in range(n):
                        LGh[lv, i, k] += piq * LGh[lv - 1, q, k]
            for k in range(n):
                LGh[lv, i, k] += LGh[lv - 1, i, k]
    for r in range(rows):
        if dup[r] >= 0:
            continue
        for k in range(n):
            c = 0.0
            for i in range(n):
                c += RW[r, i] * LGh[0, i, k]
            Nt[r, k, 0] = c
    w = 1
    lv = 0
    while w < B:
        for r in range(rows):
            if dup[r] >= 0:
                continue
            for k in range(n):
                for j in range(w):
                    Nt[r, k, w + j] = Nt[r, k, j]
                for q in range(rcnt[r]):
                    g = LGh[lv, ridx[r, q], k]
                    if g != 0.0:
                        for j in range(w):
                            Nt[r, k, w + j] += Rt[r, q, j] * g
        w *= 2
        lv += 1
    for lv in range(LGh.shape[0]):
        for i in range(n):
            for k in range(n):
                LGt[lv, k, i] = LGh[lv, i, k]
    for r in range(rows):
        ncnt[r] = 0 if dup[r] >= 0 else _pack_live(Nt[r], nidx[r])


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pack_live(T, idx):
    """Move the columns T[k] that have a non-zero entry to the front of ``T`` (in column
    order), their indices into ``idx``; returns how many there are."""
    c = 0
    for k in range(T.shape[0]):
        live = False
        for j in range(T.shape[1]):
            if T[k, j] != 0.0:
                live = True
                break
        if live:
            idx[c] = k
            if c != k:
                for j in range(T.shape[1]):
                    T[c, j] = T[k, j]
            c += 1
    return c


@njit(cache=True, inline="always")
def _blk_run(x, u, has_u, L, m, dup, Rt, Nt, rcnt, ridx, ncnt, nidx, LPt, LGt, out, it, yb,
             xn):
    """Write the linear outputs (rows < m: as they are; rows >= m: occupancy s/(1+s)) at the
    next L (<= BLK) output times of a block from the state ``x`` at the time before them, then
    advance ``x`` by L steps: independent dot products instead of a chain of steps."""
    n = x.shape[0]
    rows = Rt.shape[0]
    for r in range(rows):
        d = dup[r]
        if d >= 0:           # the same row as an earlier one: its values (bit for bit)
            for j in range(L):
                out[r, np.uint64(it + j)] = out[d, np.uint64(it + j)]
            continue
        # the live columns four per pass over the block (a missing one adds 0 x column 0);
        # (no array views here: each view costs an atomic reference count, per block)
        c = rcnt[r]
        if c <= 4 and r < m and not (has_u and ncnt[r] > 0):
            # one pass, straight into the output (the same sums as below)
            a0 = x[ridx[r, 0]] if 0 < c else 0.0
            a1 = x[ridx[r, 1]] if 1 < c else 0.0
            a2 = x[ridx[r, 2]] if 2 < c else 0.0
            a3 = x[ridx[r, 3]] if 3 < c else 0.0
            j1 = 1 if 1 < c else 0
            j2 = 2 if 2 < c else 0
            j3 = 3 if 3 < c else 0
            for j in range(L):
                out[r, np.uint64(it + j)] = ((Rt[r, 0, j] * a0 + Rt[r, j1, j] * a1)
                                             + (Rt[r, j2, j] * a2 + Rt[r, j3, j] * a3))
            continue
        q = 0
        while q == 0 or q < c:
            a0 = x[ridx[r, q]] if q < c else 0.0
            a1 = x[ridx[r, q + 1]] if q + 1 < c else 0.0
            a2 = x[ridx[r, q + 2]] if q + 2 < c else 0.0
            a3 = x[ridx[r, q + 3]] if q + 3 < c else 0.0
            j0 = q if q < c else 0
            j1 = q + 1 if q + 1 < c else j0
            j2 = q + 2 if q + 2 < c else j0
            j3 = q + 3 if q + 3 < c else j0
            if q == 0:
                for j in range(L):
                    yb[j] = ((Rt[r, j0, j] * a0 + Rt[r, j1, j] * a1)
                             + (Rt[r, j2, j] * a2 + Rt[r, j3, j] * a3))
            else:
                for j in range(L):
                    yb[j] += ((Rt[r, j0, j] * a0 + Rt[r, j1, j] * a1)
                              + (Rt[r, j2, j] * a2 + Rt[r, j3, j] * a3))
            q += 4
        if has_u:
            for q in range(ncnt[r]):
                uk = u[nidx[r, q]]
                if uk != 0.0:
                    for j in range(L):
                        yb[j] += Nt[r, q, j] * uk
        # unsigned output indices: no negative-index wrap-around, so the stores are contiguous
        # vector stores (a signed index it + j, unknown to be >= 0, makes them scatters)
        if r < m:
            for j in range(L):
                out[r, np.uint64(it + j)] = yb[j]
        else:
            for j in range(L):
                out[r, np.uint64(it + j)] = _occ_of(yb[j])
    # the end state from the ladder (``LPt[l]``, ``LGt[l]``: Φ, Γ of 2^l h transposed), column
    # by column: n independent sums over contiguous memory (each still in column order)
    for lv in range(LPt.shape[0]):
        if (L >> lv) & 1:
            # (the first column written, not added to zeros: a load right after the zeroing
            # stores would wait for them)
            x0 = x[0]
            for i in range(n):
                xn[i] = LPt[lv, 0, i] * x0
            for k in range(1, n):
                xk = x[k]
                for i in range(n):
                    xn[i] += LPt[lv, k, i] * xk
            if has_u:
                for k in range(n):
                    uk = u[k]
                    for i in range(n):
                        xn[i] += LGt[lv, k, i] * uk
            for i in range(n):
                a = xn[i]
                x[i] = 0.0 if abs(a) < TINY else a


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _snap_fraction(H, h, tol):
    """A piece of a grid interval (an event cuts it) within ``tol`` (rounding of the current
    time) of a simple fraction p/q of the grid step h (q <= 64) is taken as exactly that
    fraction, as a full interval is taken as exactly h: the same infusion end on every day of
    a course then needs one propagator, not one per magnitude of the clock."""
    r = H / h
    for q in range(2, 65):
        c = math.floor(r * q + 0.5) * h / q
        if abs(H - c) <= tol:
            return c
    return H


def carry_sizes(n):
    """Sizes of the float and integer carry arrays of :func:`grid_range` for n states."""
    return 3 * n + 2 + PD_CARRY, n + 3


def grid_work(n, m, no, nb):
    """The work arrays of one :func:`grid_range` call, for ``n`` states, ``m`` linear and ``no``
    occupancy output rows and blocks of ``nb`` (their contents are set per subject by the
    kernel; ``st_prev`` starts at zeros). Allocated by the caller, so the kernel itself is
    compiled without reference counting."""
    x = np.empty(n)
    u = np.empty(n)
    xn = np.empty(n)
    active = np.empty(n, np.int64)
    ch = np.empty(NSLOT)
    cg = np.empty(NSLOT, np.int64)
    CP = np.empty((NSLOT, n, n))     # a slot is read only once written (ch >= 0)
    CG = np.empty((NSLOT, n, n))
    nxt = np.empty(3, np.int64)      # next slot to fill, the last slot used, the one before
    MR = np.empty((NSLOT, 2 * n + 2))     # midpoint rows (see _mid_sum)
    x1 = np.empty(n)
    xp = np.empty(n)
    kk = np.empty((7, 3))          # k2 k3 k4 k5 yt y1 err of the schematic integrator
    S = np.empty(PD_CARRY)
    hP = np.empty((n, n))          # the hot path's Φᵀ and Γᵀ (grid_range)
    hG = np.empty((n, n))
    # the output rows are sparse (a network's parts do not all reach each other): keep their
    # non-zero entries as index lists
    ccnt = np.empty(m, np.int64)
    cidx = np.empty((m, n), np.int64)
    cval = np.empty((m, n))
    # the block path (see _blk_setup), blocks of nb output times (engine.block_length: 1 =
    # none), and the ladder of Φ(2^l h) up to nb
    rows = m + no
    nl = 1
    while (1 << (nl - 1)) < nb:
        nl += 1
    RW = np.empty((rows, n))
    Rt = np.empty((rows, n, nb))
    Nt = np.empty((rows, n, nb))
    rcnt = np.empty(rows, np.int64)
    ridx = np.empty((rows, n), np.int64)
    ncnt = np.empty(rows, np.int64)
    nidx = np.empty((rows, n), np.int64)
    LPh = np.empty((nl, n, n))
    LGh = np.empty((nl, n, n))
    LPt = np.empty((nl, n, n))
    LGt = np.empty((nl, n, n))
    yb = np.empty(nb)
    st_prev = np.zeros(2 + 3 * n, np.int64)
    st = np.empty(2 + 3 * n, np.int64)
    root = np.empty(n, np.int64)
    wK = np.empty(n)
    return (x, u, xn, active, ch, cg, CP, CG, nxt, MR, x1, xp, kk, S, hP, hG, ccnt,
            cidx, cval, RW, Rt, Nt, rcnt, ridx, ncnt, nidx, LPh, LGh, LPt, LGt, yb, st_prev, st,
            root, wK)


@njit(cache=True, nogil=True, _nrt=False)
def grid_range(sub0, sub1, Ks, times, h_nom, u_end, nb, ev_ts, ev_cs, ev_amts, ev_kinds, nevs,
               ev_vecs, Cs, Ws, wds, pds, pd_on, pd_rtol, pd_rows, dup, outs, carry_f, carry_i,
               lim, x, u, xn, active, ch, cg, CP, CG, nxt, MR, x1, xp, kk, S, hP, hG, ccnt, cidx,
               cval, RW, Rt, Nt, rcnt, ridx, ncnt, nidx, LPh, LGh, LPt, LGt, yb, st_prev, st, root,
               wK):
    """Subjects ``sub0`` to ``sub1 - 1`` on an output grid, one after the other, without the
    GIL (the engine runs several ranges side by side on a thread pool). Row s of every
    per-subject array (``Ks``, ``ev_ts`` ... ``pds``) belongs to subject s (an event array
    with one row: every subject's); ``outs[s - sub0]`` (``out`` below) receives its outputs.
    Subject ``sub0`` starts from the carry as given (a piece of a longer grid, below); every
    later one from the beginning.

    ``out`` rows: ``C @ x`` (M rows), then occupancy for each row of ``W`` (s = W[k]·x,
    occupancy s/(1+s)), then the schematic states G, P, Q for the rows ``pd_rows[i] >= 0``.
    ``dup[r]`` (r < M + rows of W): an earlier row of the same kind with the very same
    functional for every subject, whose values the block path copies (-1: none).
    ``h_nom`` > 0: the nominal grid step; a full grid interval within rounding of it is taken
    with exactly that length, and a piece of one cut by an event within rounding of a simple
    fraction of it with exactly that fraction (:func:`_snap_fraction`). ``u_end``: the grid is
    uniform with that step up to (not including) this index of the whole grid, of which
    ``times`` may be one piece; the block path stops there (so a grid that is uniform but for
    its last time keeps its blocks). ``nb``: the block length (a power of 2 up to BLK; 1: no
    blocks), from :func:`ketasim.engine.block_length`. ``pd_on``: integrate the schematic
    response (driven by wd·x).
    The PK state is stepped exactly from output time to output time; the schematic response
    runs its own error-controlled steps, which span many output times where nothing moves and
    stop at every dose event, and outputs between its step ends are its dense output.
    Between events, a uniform grid runs in blocks (:func:`_blk_setup`): outputs as independent
    dot products with tabulated rows, the state advanced once per block.
    ``carry_f`` and ``carry_i`` (sizes: :func:`carry_sizes`) hold the state between calls on
    successive pieces of one time grid (``carry_i[n + 1]`` = 0 on the first piece; pieces
    other than the last must be a multiple of BLK long): x, u, t, the integrator (``S``, its PK
    copy), the last output time | active infusions, next event, started, outputs done.
    Returns how many of the values written are not within (-lim, lim) (NaN included), each
    subject's counted just after its run, while they are still in cache (``lim`` <= 0: none
    counted).
    The remaining arguments are the work arrays (:func:`grid_work`), allocated once per call
    (their sizes are the same for every subject of a range): the kernel is compiled without
    reference counting, so taking a row of a per-subject array, a propagator slot or a block
    helper's arguments costs no atomic operations (they had cost a tenth of a population's
    time with events between output times)."""
    bad = 0
    n = Ks.shape[1]
    m = Cs.shape[1]
    no = Ws.shape[1]
    T = times.shape[0]
    k2 = kk[0]
    k3 = kk[1]
    k4 = kk[2]
    k5 = kk[3]
    yt = kk[4]
    y1 = kk[5]
    err = kk[6]
    use_blk = nb > 1
    eps4 = 4.0 * 2.220446049250313e-16
    inf = np.inf
    blk_prev = False
    blk_n_prev = False
    need_n_prev = False
    for isub in range(sub0, sub1):
        K = Ks[isub]
        ie = isub if ev_ts.shape[0] > 1 else 0      # (one row: every subject's events)
        ev_t = ev_ts[ie]
        ev_c = ev_cs[ie]
        ev_amt = ev_amts[ie]
        ev_kind = ev_kinds[ie]
        nev = nevs[ie]
        ev_vec = ev_vecs[isub if ev_vecs.shape[0] > 1 else 0]
        C = Cs[isub]
        W = Ws[isub]
        wd = wds[isub]
        pd = pds[isub]
        out = outs[isub - sub0]
        if isub > sub0:              # a later subject starts from the beginning
            carry_i[n + 1] = 0
        for i in range(n):
            x[i] = 0.0
            u[i] = 0.0
            xn[i] = 0.0
            active[i] = 0
            x1[i] = 0.0
            xp[i] = 0.0
            for k in range(n):
                hG[i, k] = 0.0
        # a subject with the previous one's matrices (and the same infused states) keeps its
        # propagators, midpoint rows and block tables: one per distinct step for all of them
        _structure_into(K, ev_c, ev_kind, nev, root, st)
        share = isub > sub0 and _same_network(Ks[isub - 1], K, Cs[isub - 1], C, Ws[isub - 1],
                                              W, wds[isub - 1], wd, st_prev, st)
        if not share:
            for j in range(NSLOT):
                ch[j] = -1.0
                cg[j] = 0
                MR[j, 2 * n] = np.nan       # its step length: no row is valid (_mid_sum)
            nxt[0] = 0
            nxt[1] = 0
            nxt[2] = 0
        for j in range(7):
            for k in range(3):
                kk[j, k] = 0.0
        for k in range(PD_CARRY):
            S[k] = 0.0
        _row_times(wd, K, wK)      # wd K: the rate of change of the occupancy sum
        S[2] = PD_LEV_EVENT
        S[6] = 1.0           # G starts at its baseline
        S[3] = 1.0
        has_u = np.bool_(False)
        t = times[0]
        if nev > 0 and ev_t[0] < t:
            t = ev_t[0]
        S[0] = t
        S[1] = t
        e = np.int64(0)
        g0 = 0               # index of times[0] in the whole grid (blocks are aligned to it)
        tlast = np.nan       # the output time before times[0] (a later piece)
        if carry_i[n + 1] == 1:
            for i in range(n):
                x[i] = carry_f[i]
                u[i] = carry_f[n + i]
                active[i] = carry_i[i]
                if u[i] != 0.0:
                    has_u = True
            t = carry_f[2 * n]
            for k in range(PD_CARRY):
                S[k] = carry_f[2 * n + 1 + k]
            for i in range(n):
                xp[i] = carry_f[2 * n + 1 + PD_CARRY + i]
            tlast = carry_f[3 * n + 1 + PD_CARRY]
            e = carry_i[n]
            g0 = carry_i[n + 2]
        hot_ok = False      # the nominal grid step's propagator (the hot path) is known (Γ: hG)
        hot_g = False
        for j in range(m):
            ccnt[j] = 0
            for i in range(n):
                if C[j, i] != 0.0:
                    cidx[j, ccnt[j]] = i
                    cval[j, ccnt[j]] = C[j, i]
                    ccnt[j] += 1
        need_n = np.bool_(False)
        for q in range(nev):
            if ev_kind[q] == 1:
                need_n = True
        blk_ready = share and blk_prev and need_n == need_n_prev
        blk_n = blk_ready and blk_n_prev    # the N tables too (_blk_setup)
        for r in range(m):
            for i in range(n):
                RW[r, i] = C[r, i]
        for r in range(no):
            for i in range(n):
                RW[m + r, i] = W[r, i]
        it = np.int64(0)
        while it < T:
            if use_blk and t == (times[it - 1] if it > 0 else tlast):
                # outputs up to the next event (one within 4 ulp after an output time belongs to
                # that instant, so it stops the block too) and at most to the next multiple of the
                # block length (a power of 2 dividing BLK) in the whole grid: where blocks fall
                # never depends on how a grid is cut in pieces
                L = min(nb - ((g0 + it) & (nb - 1)), T - it, u_end - g0 - it)   # (nb: 2^k)
                if e < nev:
                    tl = times[it + L - 1]
                    if not (ev_t[e] > tl + eps4 * max(1.0, abs(tl))):
                        # the largest L whose last time the event is after: guessed from the
                        # uniform step, then moved to where the test turns (times are sorted,
                        # so the same L as a bisection gives, in a test or two)
                        ev = ev_t[e]
                        q = (ev - times[it]) / h_nom
                        lo = 0 if not q > 0.0 else (L - 1 if q >= L - 1 else int(q))
                        while lo > 0:
                            tl = times[it + lo - 1]
                            if ev > tl + eps4 * max(1.0, abs(tl)):
                                break
                            lo -= 1
                        while lo < L - 1:
                            tl = times[it + lo]
                            if not (ev > tl + eps4 * max(1.0, abs(tl))):
                                break
                            lo += 1
                        L = lo
                if L >= 4:
                    if not blk_ready:
                        j = _slot_of(K, st, h_nom, need_n, ch, cg, CP, CG, nxt, np.bool_(False))
                        _blk_setup(CP[j], np.bool_(False), need_n, RW, dup, Rt, rcnt, ridx, Nt,
                                   ncnt, nidx, LPh, LGh, LPt, LGt)
                        blk_ready = True
                        blk_n = False
                    if has_u and not blk_n:
                        j = _slot_of(K, st, h_nom, need_n, ch, cg, CP, CG, nxt, np.bool_(False))
                        _blk_setup(CG[j], np.bool_(True), need_n, RW, dup, Rt, rcnt, ridx, Nt,
                                   ncnt, nidx, LPh, LGh, LPt, LGt)
                        blk_n = True
                    _blk_run(x, u, has_u, L, m, dup, Rt, Nt, rcnt, ridx, ncnt, nidx, LPt, LGt, out,
                             it, yb, xn)
                    if pd_on:
                        # the schematic response: each accepted step fills the outputs it spans
                        tend = ev_t[e] if e < nev else inf
                        q = it
                        while q < it + L:
                            while S[1] < times[q]:
                                hm = _pd_advance(u, has_u, tend, wd, wK, pd, pd_rtol, ch, cg, CP,
                                                 CG, nxt, xp, MR, x1, S, k2, k3, k4, k5, yt, y1,
                                                 err)
                                if hm > 0.0:
                                    _slot_of(K, st, hm, has_u, ch, cg, CP, CG, nxt,
                                             np.bool_(False))
                            q1 = q + 1
                            while q1 < it + L and times[q1] <= S[1]:
                                q1 += 1
                            _pd_fill(S, times, q, q1, out, pd_rows)
                            q = q1
                    t = times[it + L - 1]
                    it += L
                    continue
            target = times[it]
            # an event within rounding (4 ulp) after an output time belongs to that instant: the
            # output reports the value just after it (the state is stepped to the event's own time,
            # so no infusion is shortened)
            limit = target + eps4 * max(1.0, abs(target))
            while True:
                if e < nev and ev_t[e] <= t:
                    if pd_on:
                        while S[1] < t:
                            hm = _pd_advance(u, has_u, t, wd, wK, pd, pd_rtol, ch, cg, CP, CG,
                                             nxt, xp, MR, x1, S, k2, k3, k4, k5, yt, y1, err)
                            if hm > 0.0:
                                _slot_of(K, st, hm, has_u, ch, cg, CP, CG, nxt, np.bool_(False))
                    e, has_u, _ = _apply_events(x, u, active, t, e, nev, ev_t, ev_c, ev_amt,
                                                ev_kind, ev_vec)
                    if pd_on:
                        _pd_restart(x, t, wd, pd, xp, S)
                if t >= target and not (e < nev and ev_t[e] <= limit):
                    break
                stop = target if t < target else ev_t[e]
                if e < nev and ev_t[e] < stop:
                    stop = ev_t[e]
                H = stop - t
                if h_nom > 0.0:
                    tol = eps4 * max(1.0, abs(stop))
                    if abs(H - h_nom) <= tol:
                        H = h_nom
                    elif H < h_nom:
                        H = _snap_fraction(H, h_nom, tol)
                if H == h_nom and H > 0.0 and not (hot_ok and (hot_g or not has_u)):
                    # the nominal step's propagator, copied for the hot path (a slot may be
                    # overwritten; the first step takes the hot path too, so results never
                    # depend on where a grid was cut)
                    j = _slot_of(K, st, h_nom, has_u or need_n, ch, cg, CP, CG, nxt,
                                 np.bool_(False))
                    hot_ok = True
                    hot_g = cg[j] == 1
                    for i in range(n):
                        for k in range(n):
                            hP[i, k] = CP[j, i, k]
                            if hot_g:
                                hG[i, k] = CG[j, i, k]
                if H == h_nom and H > 0.0:
                    # the hot path: a full grid interval. Dense, as every other step: on the
                    # presets' networks (30-70 % of Φ non-zero) the n independent column sums
                    # beat index lists of the non-zero entries (ketamine-iv: 14 states, 58 of
                    # 196 entries; one step 92 against 113 ns; the 5-state network about 2x)
                    _propagate(hP, hG, x, u, has_u, xn)
                    for i in range(n):
                        x[i] = xn[i]
                else:
                    # (the propagator an infusion's own pieces use: Γ's columns whenever the
                    # subject has infusions; an infusion's first piece gives its second, h/2)
                    if H == 0.0:
                        for i in range(n):
                            xn[i] = x[i]
                    else:
                        jh = _slot_of(K, st, H, has_u or need_n, ch, cg, CP, CG, nxt,
                                      np.bool_(True))
                        _propagate(CP[jh], CG[jh], x, u, has_u, xn)
                    for i in range(n):
                        x[i] = xn[i]
                t = stop
            for j in range(m):
                s = 0.0
                for k in range(ccnt[j]):
                    s += cval[j, k] * x[cidx[j, k]]
                out[j, it] = s
            for k in range(no):
                out[m + k, it] = _occ_of(_dot(W[k], x))
            if pd_on:
                if S[1] < target:
                    tend = ev_t[e] if e < nev else inf
                    while S[1] < target:
                        hm = _pd_advance(u, has_u, tend, wd, wK, pd, pd_rtol, ch, cg, CP, CG,
                                         nxt, xp, MR, x1, S, k2, k3, k4, k5, yt, y1, err)
                        if hm > 0.0:
                            _slot_of(K, st, hm, has_u, ch, cg, CP, CG, nxt, np.bool_(False))
                _pd_fill(S, times, it, it + 1, out, pd_rows)
            it += 1
        for i in range(n):
            carry_f[i] = x[i]
            carry_f[n + i] = u[i]
            carry_i[i] = active[i]
        carry_f[2 * n] = t
        for k in range(PD_CARRY):
            carry_f[2 * n + 1 + k] = S[k]
        for i in range(n):
            carry_f[2 * n + 1 + PD_CARRY + i] = xp[i]
        carry_f[3 * n + 1 + PD_CARRY] = times[T - 1]
        carry_i[n] = e
        carry_i[n + 2] = g0 + T
        carry_i[n + 1] = 1
        for i in range(st.shape[0]):
            st_prev[i] = st[i]
        blk_prev = blk_ready
        blk_n_prev = blk_n
        need_n_prev = need_n
        if lim > 0.0:
            bad += _out_of_range(out, lim)
    return bad


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _same_network(K0, K1, C0, C1, W0, W1, wd0, wd1, st0, st1):
    """Whether two subjects have the same matrices, output rows, occupancy weights and
    structure, bit for bit (then they share propagators and block tables)."""
    for i in range(st1.shape[0]):
        if st0[i] != st1[i]:
            return False
    n = K1.shape[0]
    for i in range(n):
        if _differ(wd0[i], wd1[i]):
            return False
        for k in range(n):
            if _differ(K0[i, k], K1[i, k]):
                return False
    for r in range(C1.shape[0]):
        for k in range(n):
            if _differ(C0[r, k], C1[r, k]):
                return False
    for r in range(W1.shape[0]):
        for k in range(n):
            if _differ(W0[r, k], W1[r, k]):
                return False
    return True


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _differ(a, b):
    """Two floats that are not the same value bit for bit (-0.0 and 0.0 differ; a NaN differs
    from everything)."""
    return a != b or (a == 0.0 and math.copysign(1.0, a) != math.copysign(1.0, b))


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _out_of_range(out, lim):
    """How many values of ``out`` (rows x times) are not within (-lim, lim), NaN included."""
    bad = 0
    for r in range(out.shape[0]):
        row = out[r]
        for k in range(row.shape[0]):
            bad += not (abs(row[k]) < lim)        # no branch: the loop vectorises
    return bad


# ---------------------------------------------------------------------------------------------
# Exact metrics. A metric run never touches an output grid. Its steps are the lengths of a
# per-subject *ladder* L_j = hb 2^j: the base hb (with hb × fastest rate <= 2^-6) is a
# 10-term Taylor series (exact to rounding), every higher rung the square of the one below.
# The ladder stores Ψ = Φ - I, not Φ: squaring a near-identity Φ directly would double its
# rounding error at every rung, while Ψ(2h) = 2Ψ + Ψ² and Γ(2h) = 2Γ + Ψ Γ keep it at the
# rounding level. From every event and session start the steps grow L_j0, L_j0+1, ... up to
# H_CAP; the rest of a segment is its binary expansion on the ladder, and a last piece shorter
# than hb is a Taylor step. The step sequence depends only on the dose times, never on an
# output grid, and no matrix exponential is computed at all.
#
# Within each step the state is exact at both ends; the extremum of a linear functional
# f = r·x (a concentration, or the occupancy sum s = w·x, of which occupancy is a monotone
# function) lies where f' = r·(K x + u) changes sign, and a threshold crossing where f - θ does.
# Both are bracketed by halving down to the ladder's base, then solved by Newton's method on
# the 9-term Taylor polynomial of the exact state (exact to rounding over the base length).
# AUC is exact: an integrator state a' = r·x is part of the linear system.

H_CAP = 64.0       # longest metric step (h)
NL = 72            # ladder rungs
# rows of the per-session metric output
M_CMAX, M_TMAX, M_AUC, M_TROUGH, M_POCC, M_PGLU, M_PMIN = 0, 1, 2, 3, 4, 5, 6
M_FIXED = 7        # then time above each occupancy threshold, then each concentration threshold


@njit(cache=True, _nrt=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _ladder_base(K, hb, LP, LG):
    """Rung 0: Ψ(hb) = Φ(hb) - I and Γ(hb) from their Taylor series (||K hb|| <= 2^-6, so 10
    terms are exact to rounding: the 11th is below 1e-21)."""
    n = K.shape[0]
    A = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            A[i, j] = K[i, j] * hb
    Pk = np.empty((n, n))      # A^k / k!
    T = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            Pk[i, j] = A[i, j]
            LP[0, i, j] = A[i, j]
            LG[0, i, j] = (1.0 if i == j else 0.0) + A[i, j] / 2.0
    for k in range(2, 11):
        _matmul(Pk, A, T)
        for i in range(n):
            for j in range(n):
                Pk[i, j] = T[i, j] / k
                LP[0, i, j] += Pk[i, j]
                LG[0, i, j] += Pk[i, j] / (k + 1)
    for i in range(n):
        for j in range(n):
            LG[0, i, j] *= hb
    _transpose(LP[0])          # the ladder keeps Ψᵀ and Γᵀ (contiguous columns, see _lstep)
    _transpose(LG[0])


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _ensure(j, LP, LG, top, T1):
    """Make rungs up to j available: Ψ(2h) = 2Ψ + Ψ², Γ(2h) = 2Γ + ΨΓ."""
    n = LP.shape[1]
    while top[0] < j:
        lo = top[0]
        hi = lo + 1
        _matmul(LP[lo], LP[lo], LP[hi])         # (Ψ²)ᵀ = (Ψᵀ)²
        _matmul(LG[lo], LP[lo], T1)             # (Ψ Γ)ᵀ = Γᵀ Ψᵀ
        for a in range(n):
            for b in range(n):
                LP[hi, a, b] += 2.0 * LP[lo, a, b]
                LG[hi, a, b] = 2.0 * LG[lo, a, b] + T1[a, b]
        top[0] = hi


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _lstep(j, x, u, has_u, LP, LG, xo):
    """xo <- exact state one rung-j step (hb 2^j hours) after x: x + Ψ x + Γ u, accumulated
    column by column from the transposed rungs (no serial chain of additions). Rung j must be
    built: the metrics kernel builds the rungs up to each step's own (:func:`_ensure`) before
    the step, and its helpers use none longer (building them here would compile the matrix
    products into every helper that steps on the ladder)."""
    n = x.shape[0]
    for i in range(n):
        xo[i] = 0.0
    for k in range(n):
        xk = x[k]
        if xk != 0.0:
            for i in range(n):
                xo[i] += LP[j, k, i] * xk
    if has_u:
        for k in range(n):
            uk = u[k]
            if uk != 0.0:
                for i in range(n):
                    xo[i] += LG[j, k, i] * uk
    for i in range(n):
        v = x[i] + xo[i]
        if abs(v) < TINY:
            v = 0.0
        xo[i] = v


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _mid_rung(j, x, u, has_u, wd, LP, LG, WL):
    """wd·x(h_j): the occupancy sum one rung-j step after x, from the rows wd Ψ and wd Γ of
    rung j, kept in ``WL[j]`` = [wd Ψ (n), wd Γ (n), 1 once computed] (n² operations once per
    rung, then 2n per call). Rung j must be built (see :func:`_lstep`)."""
    n = x.shape[0]
    if WL[j, 2 * n] != 1.0:
        _wd_rows(wd, LP, LG, j, True, WL)
        WL[j, 2 * n] = 1.0
    s = 0.0
    for k in range(n):
        s += wd[k] * x[k] + WL[j, k] * x[k]
    if has_u:
        for k in range(n):
            s += WL[j, n + k] * u[k]
    return s


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _tstep(K, x, u, d, xo, D1, D2):
    """xo <- exact state d hours after x, for d below the ladder's base (d × fastest rate
    < 2^-6): the Taylor series of the solution, summed until its terms vanish."""
    n = x.shape[0]
    for i in range(n):
        acc = u[i]
        for k in range(n):
            acc += K[i, k] * x[k]
        D1[i] = acc * d
        xo[i] = x[i] + D1[i]
    for m in range(2, 40):
        big = 0.0
        for i in range(n):
            acc = 0.0
            for k in range(n):
                acc += K[i, k] * D1[k]
            D2[i] = acc * d / m
        for i in range(n):
            D1[i] = D2[i]
            xo[i] += D2[i]
            if abs(D2[i]) > big:
                big = abs(D2[i])
        if big == 0.0 or big < 1e-17 * (abs(xo[0]) + 1e-300) and m > 4:
            nrm = 0.0
            for i in range(n):
                nrm = max(nrm, abs(xo[i]))
            if big <= 1e-17 * nrm:
                break


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _deriv(r, rK, x, u):
    return _dot(rK, x) + _dot(r, u)


@njit(cache=True, _nrt=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _search(K, x0, u, has_u, jH, lo_off, hi_off, r, rK, thr, kind, LP, LG, LL,
            xa, xb, D1, D2, t_true):
    """Within a rung-jH step from state x0 (offset 0), find where a property changes between
    offsets ``lo_off`` (a point of the step's lattice) and ``hi_off`` (false), by halving on
    the ladder, then refine on the Taylor polynomial. ``kind`` 0: f' > 0 (a maximum); 1:
    f' < 0 (a minimum); 2: f >= thr (a downward crossing); 3: f < thr (an upward crossing).
    ``t_true`` (>= ``lo_off``): an offset where the property holds, the change being after it
    (a crossing after an extremum: the extremum, which may lie in the same lattice cell as
    the crossing before it). Returns (offset, value of f there)."""
    n = x0.shape[0]
    for i in range(n):
        xa[i] = x0[i]
    off = 0.0
    j = jH
    while off < lo_off and j > 0:
        j -= 1
        if off + LL[j] <= lo_off:
            _lstep(j, xa, u, has_u, LP, LG, xb)
            for i in range(n):
                xa[i] = xb[i]
            off += LL[j]
    j = jH
    ln = LL[jH]
    while j > 0:
        j -= 1
        ln = LL[j]
        if off + ln < hi_off:
            _lstep(j, xa, u, has_u, LP, LG, xb)
            f = _dot(r, xb)
            d = _deriv(r, rK, xb, u)
            if kind == 0:
                ok = d > 0.0
            elif kind == 1:
                ok = d < 0.0
            elif kind == 2:
                ok = f >= thr
            else:
                ok = f < thr
            if ok:
                for i in range(n):
                    xa[i] = xb[i]
                off += ln
    # Taylor refinement from xa over [0, ln] (ln × fastest rate <= 2^-6: 9 terms are exact
    # to rounding): f(tau) = sum_k c[k] tau^k with c[k] = r·K^(k-1)(K x + u) / k!
    c = np.zeros(10)
    c[0] = _dot(r, xa)
    for i in range(n):
        acc = u[i]
        for k in range(n):
            acc += K[i, k] * xa[k]
        D1[i] = acc
    c[1] = _dot(r, D1)
    for m in range(2, 10):
        for i in range(n):
            acc = 0.0
            for k in range(n):
                acc += K[i, k] * D1[k]
            D2[i] = acc / m
        for i in range(n):
            D1[i] = D2[i]
        c[m] = _dot(r, D1)
    tau = 0.0
    if kind <= 1:
        if c[2] != 0.0:
            tau = -c[1] / (2.0 * c[2])
    elif c[1] != 0.0:
        tau = (thr - c[0]) / c[1]
    step = np.inf
    for _ in range(8):
        # g = f'(tau) for an extremum, f(tau) - thr for a crossing; dg = g'(tau)
        g = 0.0
        dg = 0.0
        p = 1.0
        if kind <= 1:
            for m in range(1, 10):
                g += m * c[m] * p
                p *= tau
            p = 1.0
            for m in range(2, 10):
                dg += m * (m - 1) * c[m] * p
                p *= tau
        else:
            g = _taylor(c, tau) - thr
            for m in range(1, 10):
                dg += m * c[m] * p
                p *= tau
        if dg == 0.0:
            break
        step = g / dg
        tau -= step
        if abs(step) <= 1e-16 * max(ln, 1e-300):
            break
    if kind >= 2:
        # a crossing lies after t_true and before the cell's end (where the property is
        # false): Newton may have found another root of the polynomial, such as the crossing
        # before an extremum in the same cell, or not have converged (a crossing just below
        # a peak, where the slope vanishes, is approached by halves); then halve on the
        # polynomial in between
        ta = max(0.0, t_true - off)
        tb = min(ln, hi_off - off)
        if (not (ta <= tau <= tb) or not abs(step) <= 1e-13 * max(ln, 1e-300)) and ta < tb:
            for _ in range(200):
                tm = 0.5 * (ta + tb)
                if not (ta < tm < tb):
                    break
                if (_taylor(c, tm) >= thr) == (kind == 2):
                    ta = tm
                else:
                    tb = tm
            tau = ta
    if not (tau >= 0.0):
        tau = 0.0
    if tau > ln:
        tau = ln
    if off + tau > hi_off:
        tau = hi_off - off
    return off + tau, _taylor(c, tau)


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _taylor(c, t):
    """The polynomial c[0] + c[1] t + ... + c[9] t^9 (:func:`_search`), summed upwards."""
    v = 0.0
    p = 1.0
    for m in range(10):
        v += c[m] * p
        p *= t
    return v


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _above_piece(f0, f1, t0, t1, thr, tc):
    """Time above thr on a monotone piece from (t0, f0) to (t1, f1) with crossing at tc."""
    if f0 >= thr and f1 >= thr:
        return t1 - t0
    if f0 < thr and f1 < thr:
        return 0.0
    if f0 >= thr:
        return tc - t0
    return t1 - tc


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _lattice_floor(off, jH, LL):
    """The largest lattice point (resolution rung 0) of a rung-jH step at or below off."""
    res = 0.0
    j = jH
    while j > 0:
        j -= 1
        if res + LL[j] <= off:
            res += LL[j]
    return res


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _not_monotone(f0, f1, d0, d1, fm, dm):
    """Whether a curve with values f0, f1 and slopes d0, d1 (of one sign) at a step's ends,
    and fm, dm at its middle, cannot be monotone over the step: the middle outside the ends'
    range, or sloping the other way (beyond rounding: 1e-9 of the values, of the slopes)."""
    tol = 1e-9 * max(abs(f0), abs(f1), abs(fm))
    return (fm > max(f0, f1) + tol or fm < min(f0, f1) - tol
            or (dm * d0 < 0.0 and abs(dm) > 1e-9 * max(abs(d0), abs(d1))))


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _monitor(K, x0, x1, u, has_u, jH, H, t0, sidx, ra, raK, rw, rwK, thr_o, thr_c, LP, LG,
             LL, xa, xb, D1, D2, mo, mon, split_ok):
    """Update session ``sidx``'s metrics with the step [t0, t0 + H] from x0 to x1 (exact).
    ``jH`` is the step's rung (-1: a Taylor step shorter than the ladder's base). ``mon``:
    bit 0, the analyte's peak and thresholds; bit 1, occupancy's (a metric nobody asked for
    is not searched for); bit 2, also look at the step's middle (below).

    A peak is searched for where the slope changes sign between the step's ends. Ends that
    rise against a falling slope at both (or fall against a rising one) mean a dip and a
    peak inside the step, which that misses; so does a value or slope at the step's middle
    (exact, one half-step on the ladder) that a curve monotone over the step cannot have,
    when both ends slope the same way (a pulse that rises and falls back inside one step: a
    long transit chain feeding the analyte beside another path). With ``split_ok`` (and a
    step of two rungs or more) nothing is updated then and True is returned, for the caller
    to monitor the step in shorter pieces."""
    nto = thr_o.shape[0]
    ntc = thr_c.shape[0]
    # values and slopes at the step's ends (analyte, occupancy sum), once for the check below
    # and the search
    fa0 = fa1 = da0 = da1 = fo0 = fo1 = do0 = do1 = 0.0
    if mon & 1:
        fa0 = _dot(ra, x0)
        fa1 = _dot(ra, x1)
        da0 = _deriv(ra, raK, x0, u)
        da1 = _deriv(ra, raK, x1, u)
    if (mon >> 1) & 1:
        fo0 = _dot(rw, x0)
        fo1 = _dot(rw, x1)
        do0 = _deriv(rw, rwK, x0, u)
        do1 = _deriv(rw, rwK, x1, u)
    if split_ok and jH >= 1:
        if mon & 1 and ((da0 < 0.0 and da1 < 0.0 and fa1 > fa0)
                        or (da0 > 0.0 and da1 > 0.0 and fa1 < fa0)):
            return True
        if (mon >> 1) & 1 and ((do0 < 0.0 and do1 < 0.0 and fo1 > fo0)
                               or (do0 > 0.0 and do1 > 0.0 and fo1 < fo0)):
            return True
        probe = (mon >> 2) & 1      # a network with transit chains (ketasim.engine)
        sa = probe and mon & 1 and da0 * da1 > 0.0
        so = probe and (mon >> 1) & 1 and do0 * do1 > 0.0
        if sa or so:
            _lstep(jH - 1, x0, u, has_u, LP, LG, xa)        # the state at the middle
            if sa and _not_monotone(fa0, fa1, da0, da1, _dot(ra, xa), _deriv(ra, raK, xa, u)):
                return True
            if so and _not_monotone(fo0, fo1, do0, do1, _dot(rw, xa), _deriv(rw, rwK, xa, u)):
                return True
    for which in range(2):
        if (mon >> which) & 1 == 0:
            continue
        if which == 0:
            r = ra
            rK = raK
            nthr = ntc
            f0, f1, d0, d1 = fa0, fa1, da0, da1
        else:
            r = rw
            rK = rwK
            nthr = nto
            f0, f1, d0, d1 = fo0, fo1, do0, do1
        ext = -1.0
        fext = 0.0
        # (a step shorter than the ladder's base, jH < 0, is one cell: the Taylor polynomial
        # from its start covers it, as it covers a cell of a longer step)
        jS = max(jH, 0)
        if d0 > 0.0 and d1 < 0.0:
            ext, fext = _search(K, x0, u, has_u, jS, 0.0, H, r, rK, 0.0, np.int64(0), LP,
                                LG, LL, xa, xb, D1, D2, 0.0)
        elif d0 < 0.0 and d1 > 0.0:
            ext, fext = _search(K, x0, u, has_u, jS, 0.0, H, r, rK, 0.0, np.int64(1), LP,
                                LG, LL, xa, xb, D1, D2, 0.0)
        if which == 0:
            if f1 > mo[M_CMAX, sidx]:
                mo[M_CMAX, sidx] = f1
                mo[M_TMAX, sidx] = t0 + H
            if ext >= 0.0 and d0 > 0.0 and fext > mo[M_CMAX, sidx]:
                mo[M_CMAX, sidx] = fext
                mo[M_TMAX, sidx] = t0 + ext
        else:
            o1 = _occ_of(f1)
            if o1 > mo[M_POCC, sidx]:
                mo[M_POCC, sidx] = o1
            if ext >= 0.0 and d0 > 0.0 and _occ_of(fext) > mo[M_POCC, sidx]:
                mo[M_POCC, sidx] = _occ_of(fext)
        for k in range(nthr):
            if which == 0:
                thr = thr_c[k]
                row = M_FIXED + nto + k
            else:
                thr = thr_o[k]
                row = M_FIXED + k
            pieces = 1 if ext < 0.0 else 2
            tot = 0.0
            for p in range(pieces):
                if pieces == 1:
                    a, b, fa, fb = 0.0, H, f0, f1
                elif p == 0:
                    a, b, fa, fb = 0.0, ext, f0, fext
                else:
                    a, b, fa, fb = ext, H, fext, f1
                if (fa >= thr) == (fb >= thr):
                    tot += _above_piece(fa, fb, a, b, thr, a)
                    continue
                kind = 2 if fa >= thr else 3
                lo = 0.0 if p == 0 else _lattice_floor(ext, jS, LL)
                tc, _ = _search(K, x0, u, has_u, jS, lo, b, r, rK, thr, kind, LP, LG,
                                LL, xa, xb, D1, D2, a)
                if tc < a:
                    tc = a
                if tc > b:
                    tc = b
                tot += _above_piece(fa, fb, a, b, thr, tc)
            mo[row, sidx] += tot
    return False


@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _pd_ladder(K, x, u, has_u, jH, H, wd, wK, pd, y, rtol, LP, LG, xm, x1, D1, D2,
               k1, k2, k3, k4, k5, yt, y1, err, ext, c, WL):
    """Advance PK (exactly) and the schematic response over one metric step (rung jH, or a
    Taylor step of H hours when jH < 0), in ladder sub-steps chosen by the error control
    (embedded RK4(3), or the exponential step where the glutamate signal is stiff, as in
    :func:`_pd_advance`). ``ext`` keeps the largest G and the smallest P; ``c`` (7,) is the
    exponential step's scratch; ``WL`` the midpoint rows of the rungs (:func:`_mid_rung`)."""
    _pd_f(_stim(_occ_of(_dot(wd, x)), pd), y, pd, k1)
    depth_max = min(jH - 1, 60)      # sub-steps of rung >= 1, so their halves are rungs >= 0
    if depth_max < 0:
        depth_max = 0
    full = 1 << 62
    pos = 0
    dd = 0
    while pos < full:
        while dd < depth_max and (pos % (full >> dd)) != 0:
            dd += 1
        if jH <= 0:
            hs = H
            _tstep(K, x, u, 0.5 * hs, xm, D1, D2)
            _tstep(K, xm, u, 0.5 * hs, x1, D1, D2)
        else:
            js = jH - dd
            hs = H / (1 << dd)
            # the middle's occupancy sum from the rows of rung js - 1, the end in one rung-js
            # step (only that sum is needed at the middle)
            sm = _mid_rung(js - 1, x, u, has_u, wd, LP, LG, WL)
            _lstep(js, x, u, has_u, LP, LG, x1)
        if jH <= 0:
            sm = _dot(wd, xm)
        om = _stim(_occ_of(sm), pd)
        o1 = _stim(_occ_of(_dot(wd, x1)), pd)
        if pd[0] * hs >= ETD_Z:
            e = _etd_step(y, hs, _stim(_occ_of(_dot(wd, x)), pd), om, o1,
                          hs * _dstim(x, u, wd, wK, pd), hs * _dstim(x1, u, wd, wK, pd), pd,
                          rtol, k1, k2, k3, k4, k5, yt, y1, err, c)
            if (e <= 1.0 or dd >= depth_max) and yt[0] > ext[0]:
                # G at the middle, from the step's exact formula, joins the extremes (a check
                # on the end-point interpolation below)
                ext[0] = yt[0]
        else:
            e = _rk43(y, hs, om, o1, pd, rtol, k1, k2, k3, k4, k5, yt, y1, err,
                      _stim(_occ_of(_dot(wd, x)), pd), hs * _dstim(x, u, wd, wK, pd),
                      hs * _dstim(x1, u, wd, wK, pd))
        if e > 1.0 and dd < depth_max:
            dd += 1
            continue
        _pd_accept(x, x1, y, y1, k1, k5, hs, ext)
        if jH <= 0:
            break
        pos += full >> dd
        if e < 0.02 and dd > 0 and (pos % (full >> (dd - 1))) == 0:
            dd -= 1


@njit(cache=True, nogil=True, _nrt=True)
def metrics_range(sub0, sub1, Ks, ev_ts, ev_cs, ev_amts, ev_kinds, nevs, ev_vecs, sesss, nsesss,
                  horizons, ras, rws, wds, pds, pd_on, pd_rtol, thr_o, thr_c, h0s, ia, mos,
                  endvs, mon, next_at_end):
    """Exact per-session metrics of subjects ``sub0`` to ``sub1 - 1`` (no output grid), one
    after the other, without the GIL. Row s of every per-subject array (``Ks`` ... ``endvs``)
    belongs to subject s (an event array with one row: every subject's); below, the arrays
    of one subject.

    ``sess`` (S,) session start times (``nsess`` used); ``horizon``: end of the last session.
    ``ra``: the analyte row (mg/L per state), ``rw``: occupancy sum weights, ``wd``: the
    schematic drive weights; ``ia``: index of the integrator state of ``ra`` (AUC); ``h0``:
    the first step after an event (a power of two, hours).
    ``mo`` (M_FIXED + len(thr_o) + len(thr_c), S): see the M_* rows; ``endv`` (3,): G, P, Q at
    the horizon. ``mon`` (see :func:`_monitor`): bit 0 clear, Cmax, Tmax and times above the
    concentration thresholds are not searched for (Cmax holds only values at events); bit 1
    clear, the same for peak occupancy and its thresholds. ``next_at_end[s]`` = 1: a session
    of subject s starts exactly at the horizon (it is not one of ``sess``), so the last
    session's trough is the value at the horizon, just before it."""
    # work arrays, allocated once for the range (they had been allocated, zeroed, per subject:
    # the zeroing of the ladder alone was 4 % of a population's metrics)
    n = Ks.shape[1]
    wK = np.empty(n)
    V1 = np.empty((14, n))
    x = V1[0]
    u = V1[1]
    xn = V1[2]
    xo = V1[3]
    xm = V1[4]
    x1 = V1[5]
    xa = V1[6]
    xb = V1[7]
    xs = V1[8]
    xt = V1[9]
    D1 = V1[10]
    D2 = V1[11]
    raK = V1[12]
    rwK = V1[13]
    active = np.empty(n, np.int64)
    T1 = np.empty((n, n))
    V3 = np.empty((9, 3))
    k1 = V3[0]
    k2 = V3[1]
    k3 = V3[2]
    k4 = V3[3]
    k5 = V3[4]
    yt = V3[5]
    y1 = V3[6]
    err = V3[7]
    y = V3[8]
    ext = np.empty(2)
    c7 = np.empty(7)
    LL = np.empty(NL)
    LP = np.empty((NL, n, n))
    WL = np.empty((NL, 2 * n + 1))      # midpoint rows of the rungs (see _mid_rung)
    LG = np.empty((NL, n, n))
    top = np.zeros(1, np.int64)
    for isub in range(sub0, sub1):
        K = Ks[isub]
        ie = isub if ev_ts.shape[0] > 1 else 0      # (one row: every subject's events)
        ev_t = ev_ts[ie]
        ev_c = ev_cs[ie]
        ev_amt = ev_amts[ie]
        ev_kind = ev_kinds[ie]
        nev = nevs[ie]
        ev_vec = ev_vecs[isub if ev_vecs.shape[0] > 1 else 0]
        sess = sesss[isub]
        nsess = nsesss[isub]
        horizon = horizons[isub]
        ra = ras[isub]
        rw = rws[isub]
        wd = wds[isub]
        pd = pds[isub]
        h0 = h0s[isub]
        mo = mos[isub]
        endv = endvs[isub]
        _row_times(wd, K, wK)      # wd K: the rate of change of the occupancy sum
        # every subject starts from zeros (its arrays are the range's, set again here)
        V1[:] = 0.0
        V3[:] = 0.0
        ext[:] = 0.0
        c7[:] = 0.0
        active[:] = 0
        T1[:] = 0.0
        y[0] = 1.0
        kmax = 0.0
        for j in range(n):
            for i in range(n):
                raK[j] += ra[i] * K[i, j]
                rwK[j] += rw[i] * K[i, j]
            rs = 0.0
            for i in range(n):
                rs += abs(K[i, j])
            if rs > kmax:
                kmax = rs
        kmax = max(kmax, 1e-9)
        # the ladder: base hb = 2^e with hb * kmax <= 2^-6; rung j has length hb 2^j
        e0 = int(math.floor(np.log2(2.0 ** -6 / kmax)))
        hb = 2.0 ** e0
        for j in range(NL):
            LL[j] = hb * 2.0 ** j
        # (a rung is written before it is read: _ladder_base, then _ensure up to top; a rung's
        # midpoint rows once their flag says so)
        for j in range(NL):
            WL[j, 2 * n] = 0.0
        _ladder_base(K, hb, LP, LG)
        top[0] = 0
        j0 = int(round(np.log2(h0 / hb)))
        if j0 < 0:
            j0 = 0
        jcap = int(round(np.log2(H_CAP / hb)))
        if jcap > NL - 1:
            jcap = NL - 1
        if j0 > jcap:
            j0 = jcap
        for s in range(mo.shape[1]):
            for r in range(mo.shape[0]):
                mo[r, s] = 0.0
            mo[M_CMAX, s] = -np.inf
            mo[M_TROUGH, s] = np.nan
            mo[M_POCC, s] = -np.inf
            mo[M_PGLU, s] = -np.inf
            mo[M_PMIN, s] = np.inf
        sidx = -1
        auc0 = 0.0
        has_u = np.bool_(False)
        t = horizon
        if nev > 0 and ev_t[0] < t:
            t = ev_t[0]
        if nsess > 0 and sess[0] < t:
            t = sess[0]
        e = np.int64(0)
        while True:
            while sidx + 1 < nsess and sess[sidx + 1] <= t:
                if sidx >= 0:
                    mo[M_TROUGH, sidx] = _dot(ra, x)
                    mo[M_AUC, sidx] = x[ia] - auc0
                sidx += 1
                # each session integrates from 0 (no state depends on the integrator): a
                # difference of the course's running integral had kept only its absolute
                # rounding, 2 % off a late session whose AUC is 1e-13 of the course's
                x[ia] = 0.0
                auc0 = 0.0
            if t < horizon:
                # (an event at the horizon is left out: the metrics end just before it, so a
                # dose there is no part of the last session's peak)
                e, has_u, _ = _apply_events(x, u, active, t, e, nev, ev_t, ev_c, ev_amt,
                                            ev_kind, ev_vec)
            if sidx >= 0:
                f = _dot(ra, x)
                if f > mo[M_CMAX, sidx]:
                    mo[M_CMAX, sidx] = f
                    mo[M_TMAX, sidx] = t
                o = _occ_of(_dot(rw, x))
                if o > mo[M_POCC, sidx]:
                    mo[M_POCC, sidx] = o
                if y[0] > mo[M_PGLU, sidx]:
                    mo[M_PGLU, sidx] = y[0]
                if y[1] < mo[M_PMIN, sidx]:
                    mo[M_PMIN, sidx] = y[1]
            if t >= horizon:
                break
            nxt_t = horizon
            if e < nev and ev_t[e] < nxt_t:
                nxt_t = ev_t[e]
            if sidx + 1 < nsess and sess[sidx + 1] < nxt_t:
                nxt_t = sess[sidx + 1]
            j = j0
            ramp = True
            while True:
                rem = nxt_t - t
                if rem <= 0.0:
                    break
                if ramp and LL[j] <= rem:
                    jH = j
                    if j < jcap:
                        j += 1
                else:
                    ramp = False
                    jH = -1
                    jj = j
                    while jj >= 0:
                        if LL[jj] <= rem:
                            jH = jj
                            break
                        jj -= 1
                    j = jH if jH >= 0 else 0
                H = LL[jH] if jH >= 0 else rem
                if jH > top[0]:
                    _ensure(jH, LP, LG, top, T1)    # (the step and its helpers use rungs <= jH)
                if pd_on:
                    for i in range(n):
                        xo[i] = x[i]
                    ext[0] = y[0]
                    ext[1] = y[1]
                    _pd_ladder(K, x, u, has_u, jH, H, wd, wK, pd, y, pd_rtol, LP, LG, xm,
                               x1, D1, D2, k1, k2, k3, k4, k5, yt, y1, err, ext, c7, WL)
                    for i in range(n):
                        xn[i] = x[i]
                        x[i] = xo[i]
                elif jH >= 0:
                    _lstep(jH, x, u, has_u, LP, LG, xn)
                else:
                    _tstep(K, x, u, H, xn, D1, D2)
                if sidx >= 0 and _monitor(K, x, xn, u, has_u, jH, H, t, sidx, ra, raK, rw, rwK,
                                          thr_o, thr_c, LP, LG, LL, xa, xb, D1,
                                          D2, mo, mon, np.bool_(True)):
                    # a dip and a peak inside the step (see _monitor): monitored in up to 64
                    # pieces, each searched as a step is (the step's own end state stays xn)
                    js = max(jH - 6, 0)
                    for i in range(n):
                        xs[i] = x[i]
                    for k in range(1 << (jH - js)):
                        _lstep(js, xs, u, has_u, LP, LG, xt)
                        _monitor(K, xs, xt, u, has_u, js, LL[js], t + k * LL[js], sidx, ra, raK,
                                 rw, rwK, thr_o, thr_c, LP, LG, LL, xa, xb, D1,
                                 D2, mo, mon, np.bool_(False))
                        for i in range(n):
                            xs[i] = xt[i]
                if sidx >= 0:
                    if pd_on:
                        if ext[0] > mo[M_PGLU, sidx]:
                            mo[M_PGLU, sidx] = ext[0]
                        if ext[1] < mo[M_PMIN, sidx]:
                            mo[M_PMIN, sidx] = ext[1]
                for i in range(n):
                    x[i] = xn[i]
                if jH < 0:
                    t = nxt_t
                    break
                t = t + H
            t = nxt_t
        if sidx >= 0:
            mo[M_AUC, sidx] = x[ia] - auc0
            if next_at_end[isub] == 1:
                mo[M_TROUGH, sidx] = _dot(ra, x)
        for s in range(mo.shape[1]):
            if s < nsess:
                mo[M_TMAX, s] -= sess[s]
            else:
                for r in range(mo.shape[0]):
                    mo[r, s] = np.nan
        endv[0] = y[0]
        endv[1] = y[1]
        endv[2] = y[2]


@njit(cache=True, _nrt=True)
def first_out_of_range(a, lim):
    """Index of the first value of the 3-d array ``a`` that is not within (-lim, lim) (NaN
    included), as (i, j, k); (-1, -1, -1) when every value is. Only where the kernel counted
    such values (:func:`_out_of_range`), so a plain search."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                if not (abs(a[i, j, k]) < lim):
                    return i, j, k
    return -1, -1, -1


@njit(cache=True, _nrt=True)
def uniform_within(t, h, tol):
    """True when every step of the grid ``t`` is within ``tol`` of ``h`` (NaN is not)."""
    bad = 0
    for i in range(1, t.shape[0]):
        bad += not (abs(t[i] - t[i - 1] - h) <= tol)     # no branch: the loop vectorises
    return bad == 0


@njit(cache=True, _nrt=True)
def times_fault(t):
    """(0, -1, uniform) when the grid ``t`` is finite and non-decreasing, where ``uniform``
    says whether every step is within 8 eps max(1, |t[-1]|) of (t[-1] - t[0]) / (T - 1) (the
    nominal step; see ``engine._nominal_step``); else (1, i, False) for the first value that is
    not finite, or (2, i, False) for the first i with t[i + 1] < t[i]. One pass over ``t``."""
    T = t.shape[0]
    big = 1.7976931348623157e308
    bad = not (abs(t[0]) <= big)
    h = (t[T - 1] - t[0]) / (T - 1) if T > 1 else 0.0
    tol = 8.0 * 2.220446049250313e-16 * max(1.0, abs(t[T - 1]))
    off = 0
    for i in range(1, T):
        d = t[i] - t[i - 1]
        bad += (not (abs(t[i]) <= big)) + (d < 0.0)      # no branch: vectorises
        off += not (abs(d - h) <= tol)
    if bad == 0:
        return 0, -1, off == 0
    for i in range(T):
        if not (abs(t[i]) <= big):
            return 1, i, False
    for i in range(1, T):
        if t[i] < t[i - 1]:
            return 2, i - 1, False
    return 0, -1, False


# ----------------------------------------------------------------- population bands (histograms)
@njit(cache=True, _nrt=False, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _band_bin(v, lo, w, vlo, vhi, B):
    """The histogram bin of ``v`` (see ``ketasim.population``): 0 below ``vlo`` (and NaN),
    ``B - 1`` at or above ``vhi``, else ``floor((log10 v - lo) / w) + 1`` within [0, B - 1]."""
    if not (v >= vlo):
        return 0
    if v >= vhi:
        return B - 1
    k = int(math.floor((math.log10(v) - lo) / w)) + 1
    return min(max(k, 0), B - 1)


@njit(cache=True, _nrt=True)
def band_bins(v, lo, w, vlo, vhi, B, out):
    """``out[i]``: the bin of ``v[i]`` (:func:`_band_bin`), for 1-d ``v``."""
    for i in range(v.shape[0]):
        out[i] = _band_bin(v[i], lo, w, vlo, vhi, B)


@njit(cache=True, nogil=True, _nrt=False)
def band_add(data, j, scale, offset, lo, w, vlo, vhi, B, total, start, vmin, vmax, below,
             above, i0, i1):
    """Count output row ``j`` of ``data`` (subjects, rows, T), at times ``i0`` to ``i1 - 1``,
    into the histograms ``total`` (flat, time ``i``'s B bins from ``start + i B``), each value
    read as ``data * scale - offset`` (``scale`` 1000 for mg/L to ng/mL, ``offset`` the
    baseline a rise is binned from; 1 and 0 leave it as it is) and binned by
    :func:`_band_bin`; and keep, per time ``i``, the smallest and largest value (``vmin[i]``,
    ``vmax[i]``), the largest below ``vlo`` (``below[i]``) and the smallest at or above
    ``vhi`` (``above[i]``). Times in tiles of 8, so each subject's values are read a cache
    line at a time and each time's histogram stays near in cache. Without the GIL: ranges of
    times run side by side (their histograms and extremes are apart)."""
    S = data.shape[0]
    for a in range(i0, i1, 8):
        b = min(a + 8, i1)
        for s in range(S):
            for i in range(a, b):
                v = data[s, j, i] * scale - offset
                k = _band_bin(v, lo, w, vlo, vhi, B)
                total[start + i * B + k] += 1
                if v < vmin[i]:
                    vmin[i] = v
                if v > vmax[i]:
                    vmax[i] = v
                if v < vlo:
                    if v > below[i]:
                        below[i] = v
                elif v >= vhi:
                    if v < above[i]:
                        above[i] = v
