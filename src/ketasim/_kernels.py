"""Compiled kernels (Numba). Plain float64/int64 arrays and scalars in, caller-allocated ``out``.

Between events the linear network ``dx/dt = K x + u`` (u constant) is propagated exactly:
``x(t+h) = Φ(h) x(t) + Γ(h) u`` with ``Φ = expm(K h)`` and ``Γ = ∫_0^h expm(K s) ds``, both read
from one exponential of the augmented matrix ``[[K h, I h], [0, 0]]`` (Van Loan 1978). The
exponential is computed by scaling and squaring with a degree-13 Padé approximant (Higham 2005,
SIAM J Matrix Anal Appl 26:1179), which is exact in the limit for defective ``K`` (e.g. absorption
rate equal to elimination rate) and robust for stiff ``K``.

The schematic glutamate/plasticity response (nonlinear) is integrated with classical RK4 on
sub-steps of at most ``pd_max_step`` hours; the PK inside each sub-step stays exact (its
mid-point comes from ``Φ(h/2)``). Each step is split at every event, so no RK4 step straddles
a dose, an infusion start or an infusion stop.

No validation happens here: :mod:`ketasim.simulate` checks everything before calling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Padé(13) coefficients and the θ13 bound of Higham (2005), Table 2.3 / eq. (2.9)
_B = np.array([64764752532480000.0, 32382376266240000.0, 7771770303897600.0,
               1187353796428800.0, 129060195264000.0, 10559470521600.0, 670442572800.0,
               33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0, 1.0])
_THETA13 = 5.371920351148152

# Event kinds
BOLUS = 0
START = 1
STOP = -1


@njit(cache=True)
def _matmul(A, B, out):
    """out = A @ B for square matrices (plain loops: quick to compile, fine at these sizes)."""
    n = A.shape[0]
    for i in range(n):
        for j in range(n):
            out[i, j] = 0.0
        for k in range(n):
            a = A[i, k]
            if a != 0.0:
                for j in range(n):
                    out[i, j] += a * B[k, j]


@njit(cache=True)
def _solve(P, Q):
    """Return R with P R = Q by Gaussian elimination with partial pivoting (P, Q overwritten)."""
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
    return Q


@njit(cache=True)
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


@njit(cache=True)
def expm(A):
    """Matrix exponential by scaling and squaring with a Padé(13) approximant."""
    n = A.shape[0]
    norm = 0.0
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += abs(A[i, j])
        if s > norm:
            norm = s
    sq = 0
    if norm > _THETA13:
        sq = int(math.ceil(math.log2(norm / _THETA13)))
    scale = 2.0 ** (-sq)
    X = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            X[i, j] = A[i, j] * scale
    X2 = np.empty((n, n))
    X4 = np.empty((n, n))
    X6 = np.empty((n, n))
    _matmul(X, X, X2)
    _matmul(X2, X2, X4)
    _matmul(X4, X2, X6)
    T1 = np.empty((n, n))
    T2 = np.empty((n, n))
    U = np.empty((n, n))
    V = np.empty((n, n))
    _pade_half(X2, X4, X6, 1, T1, T2)   # odd coefficients
    _matmul(X, T2, U)                   # U = X (X6 (b13 X6 + b11 X4 + b9 X2) + ... + b1 I)
    _pade_half(X2, X4, X6, 0, T1, V)    # V = X6 (b12 X6 + b10 X4 + b8 X2) + ... + b0 I
    P = np.empty((n, n))
    Q = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            P[i, j] = V[i, j] - U[i, j]
            Q[i, j] = V[i, j] + U[i, j]
    R = _solve(P, Q)
    for _ in range(sq):
        _matmul(R, R, T1)
        R, T1 = T1, R
    return R


@njit(cache=True)
def propagator(K, h, Phi, Gam):
    """Write Φ(h) = expm(K h) and Γ(h) = ∫_0^h expm(K s) ds into ``Phi`` and ``Gam``."""
    n = K.shape[0]
    M = np.zeros((2 * n, 2 * n))
    for i in range(n):
        for j in range(n):
            M[i, j] = K[i, j] * h
        M[i, n + i] = h
    E = expm(M)
    for i in range(n):
        for j in range(n):
            Phi[i, j] = E[i, j]
            Gam[i, j] = E[i, n + j]


NSLOT = 8          # propagators kept per subject: slot 0 = the grid step, 1.. = other lengths
TINY = 1e-290      # amounts below this are flushed to 0 (no slow subnormal arithmetic)


@njit(cache=True)
def _advance(K, x, u, has_u, h, tol, cache_h, cache_Phi, cache_Gam, tmp, nxt):
    """x <- exact solution after h hours; returns the next cache slot to overwrite.

    Propagators are cached by step length: slot 0 holds the main (grid) step and is never
    evicted, slots 1..NSLOT-1 hold other lengths (partial steps at infusion stops, …) and are
    replaced round-robin. Lengths within ``tol`` hours (the rounding level of the time grid)
    share a propagator."""
    n = x.shape[0]
    slot = -1
    for j in range(NSLOT):
        if abs(h - cache_h[j]) <= tol:
            slot = j
            break
    if slot < 0:
        if cache_h[0] < 0.0:
            slot = 0
        else:
            slot = nxt
            nxt = nxt + 1 if nxt + 1 < NSLOT else 1
        propagator(K, h, cache_Phi[slot], cache_Gam[slot])
        cache_h[slot] = h
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += cache_Phi[slot, i, j] * x[j]
        if has_u:
            for j in range(n):
                acc += cache_Gam[slot, i, j] * u[j]
        if abs(acc) < TINY:
            acc = 0.0
        tmp[i] = acc
    for i in range(n):
        x[i] = tmp[i]
    return nxt


@njit(cache=True)
def _occ(w, x):
    s = 0.0
    for i in range(x.shape[0]):
        s += w[i] * x[i]
    if s < 0.0:
        s = 0.0
    return s / (1.0 + s)


@njit(cache=True)
def _pd_rhs(occ, G, P, pd):
    # pd = [kout, emax, ec50, hill, plasticity_kin, plasticity_kout]
    kout, emax, ec50, hill, kin_p, kout_p = pd[0], pd[1], pd[2], pd[3], pd[4], pd[5]
    oh = occ ** hill
    stim = emax * oh / (ec50 ** hill + oh)
    dG = kout * (1.0 + stim) - kout * G
    drive = G - 1.0
    if drive < 0.0:
        drive = 0.0
    dP = kin_p * drive * (1.0 - P) - kout_p * P
    return dG, dP


@njit(cache=True)
def simulate_one(K, times, ev_t, ev_c, ev_amt, ev_kind, nev, ev_vec, C, w, pd, use_pd, pd_max_step,
                 h_main, h_tol, out):
    """One subject. ``use_pd``: 0 = PK only, 1 = also occupancy, 2 = also the schematic response.
    ``out`` rows: ``C @ x`` (M rows), then occupancy (if use_pd >= 1), glutamate and plasticity
    (if use_pd == 2)."""
    n = K.shape[0]
    m = C.shape[0]
    T = times.shape[0]
    x = np.zeros(n)
    u = np.zeros(n)
    active = np.zeros(n, np.int64)
    tmp = np.zeros(n)
    cache_h = np.full(NSLOT, -1.0)
    cache_Phi = np.zeros((NSLOT, n, n))
    cache_Gam = np.zeros((NSLOT, n, n))
    nxt = 1
    Phi0 = cache_Phi[0]
    Gam0 = cache_Gam[0]
    if h_main > 0.0:
        cache_h[0] = h_main
        propagator(K, h_main, cache_Phi[0], cache_Gam[0])
    has_u = False
    G = 1.0
    P = 0.0
    t = times[0]
    if nev > 0 and ev_t[0] < t:
        t = ev_t[0]
    e = 0
    for it in range(T):
        target = times[it]
        while True:
            while e < nev and ev_t[e] <= t:
                c = ev_c[e]
                k = ev_kind[e]
                if k == 0:
                    x[c] += ev_amt[e]
                elif k == 2:
                    for i in range(n):
                        x[i] = 0.0
                elif k == 3:
                    for i in range(ev_vec.shape[1]):
                        x[i] += ev_vec[c, i]
                elif k == 1:
                    active[c] += 1
                    u[c] += ev_amt[e]
                else:
                    active[c] -= 1
                    if active[c] <= 0:
                        active[c] = 0
                        u[c] = 0.0
                    else:
                        u[c] -= ev_amt[e]
                e += 1
                has_u = False
                for i in range(n):
                    if u[i] != 0.0:
                        has_u = True
            if t >= target:
                break
            stop = target
            if e < nev and ev_t[e] < stop:
                stop = ev_t[e]
            h = stop - t
            if use_pd == 2:
                nsub = int(math.ceil(h / pd_max_step - 1e-9))
                if nsub < 1:
                    nsub = 1
                hs = h / nsub
                for _ in range(nsub):
                    o0 = _occ(w, x)
                    nxt = _advance(K, x, u, has_u, 0.5 * hs, h_tol, cache_h, cache_Phi, cache_Gam,
                                   tmp, nxt)
                    oh = _occ(w, x)
                    nxt = _advance(K, x, u, has_u, 0.5 * hs, h_tol, cache_h, cache_Phi, cache_Gam,
                                   tmp, nxt)
                    o1 = _occ(w, x)
                    k1g, k1p = _pd_rhs(o0, G, P, pd)
                    k2g, k2p = _pd_rhs(oh, G + 0.5 * hs * k1g, P + 0.5 * hs * k1p, pd)
                    k3g, k3p = _pd_rhs(oh, G + 0.5 * hs * k2g, P + 0.5 * hs * k2p, pd)
                    k4g, k4p = _pd_rhs(o1, G + hs * k3g, P + hs * k3p, pd)
                    G += hs * (k1g + 2.0 * k2g + 2.0 * k3g + k4g) / 6.0
                    P += hs * (k1p + 2.0 * k2p + 2.0 * k3p + k4p) / 6.0
            elif abs(h - cache_h[0]) <= h_tol:
                # the hot path: a repeated grid step, propagator already in slot 0
                for i in range(n):
                    acc = 0.0
                    for j in range(n):
                        acc += Phi0[i, j] * x[j]
                    if has_u:
                        for j in range(n):
                            acc += Gam0[i, j] * u[j]
                    tmp[i] = acc
                for i in range(n):
                    xi = tmp[i]
                    if abs(xi) < TINY:
                        xi = 0.0
                    x[i] = xi
            else:
                nxt = _advance(K, x, u, has_u, h, h_tol, cache_h, cache_Phi, cache_Gam, tmp, nxt)
            t = stop
        for j in range(m):
            s = 0.0
            for i in range(n):
                s += C[j, i] * x[i]
            out[j, it] = s
        if use_pd >= 1:
            out[m, it] = _occ(w, x)
        if use_pd == 2:
            out[m + 1, it] = G
            out[m + 2, it] = P


@njit(parallel=True, cache=True)
def simulate_many(K, times, ev_t, ev_c, ev_amt, ev_kind, nev, ev_vec, C, w, pd, use_pd, pd_max_step,
                  h_main, h_tol, out):
    """All subjects, in parallel: row s of every per-subject array belongs to subject s."""
    N = K.shape[0]
    for s in prange(N):
        simulate_one(K[s], times, ev_t[s], ev_c[s], ev_amt[s], ev_kind[s], nev[s], ev_vec[s],
                     C[s], w[s], pd[s], use_pd, pd_max_step, h_main, h_tol, out[s])
