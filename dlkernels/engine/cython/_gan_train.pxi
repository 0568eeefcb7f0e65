# Whole GAN training steps in one compiled call (included by gan.pyx); the twin
# of dlkernels/engine/numba/_gan_train.py, whose docstring gives the arguments,
# the layer table and the return value.  The same IEEE operations in the same
# order as the Numba kernel and as GANTrainer._run_python (compiled with
# -ffp-contract=off: no fused multiply-adds).

cpdef enum:
    L_N_IN = 0
    L_N_OUT = 1
    L_P = 2
    L_CODE = 3
    L_W = 4
    L_B = 5
    L_Y = 6
    L_D = 7
    L_PRE = 8
    L_GPRE = 9
    L_GX = 10
    L_IDX = 11
    LAY_COLS = 12


cdef inline floating* _at(floating* buf, int64_t off) noexcept nogil:
    return buf + off if off >= 0 else NULL


cdef inline int* _iat(int* buf, int64_t off) noexcept nogil:
    return buf + off if off >= 0 else NULL


cdef floating* _net_forward(const floating* x, int rows, floating* params, const int64_t* lay,
                            int L, floating* ws, int* wsi, floating slope,
                            bint need_d) noexcept nogil:
    """Forward of a network through its layer table; returns the output (rows, n_L)."""
    cdef const floating* h = x
    cdef const int64_t* r
    cdef int i
    for i in range(L):
        r = lay + i * LAY_COLS
        _forward(h, params + r[L_W], params + r[L_B], rows, <int>r[L_N_IN], <int>r[L_N_OUT],
                 <int>r[L_P], <int>r[L_CODE], slope, _at(ws, r[L_PRE]), ws + r[L_Y],
                 _at(ws, r[L_D]), _iat(wsi, r[L_IDX]), need_d)
        h = ws + r[L_Y]
    return <floating*>h


cdef floating* _net_backward(const floating* x, int rows, floating* params, const int64_t* lay,
                             int L, floating* ws, int* wsi, floating* gy, floating* grad,
                             bint need_gw, bint need_input) noexcept nogil:
    """Backward from gy; parameter gradients into grad (need_gw); returns the
    gradient of the input (rows, n_0) when need_input."""
    cdef floating* g = gy
    cdef floating* GX
    cdef const floating* X
    cdef const int64_t* r
    cdef int i
    for i in range(L - 1, -1, -1):
        r = lay + i * LAY_COLS
        X = x if i == 0 else ws + lay[(i - 1) * LAY_COLS + L_Y]
        GX = ws + r[L_GX]
        _backward(X, params + r[L_W], g, _at(ws, r[L_D]), _iat(wsi, r[L_IDX]), rows,
                  <int>r[L_N_IN], <int>r[L_N_OUT], <int>r[L_P], <int>r[L_CODE],
                  ws + r[L_GPRE] if r[L_CODE] == A_MAXOUT else g, GX,
                  grad + r[L_W] if need_gw else NULL, grad + r[L_B] if need_gw else NULL,
                  i > 0 or need_input, need_gw)
        g = GX
    return g


cpdef enum:
    UPD_BLOCK = 4096
    PAR_MIN_UPDATE = 1 << 17


cdef int _update_block(bint adam, Py_ssize_t lo, Py_ssize_t hi, floating* p,
                            const floating* g, floating* a, floating* v, const floating* c,
                            double s0, double s1, floating* snap, Py_ssize_t n,
                            bint save) noexcept nogil:
    """The update of elements lo .. hi - 1 (see the Numba twin); snap holds rows of n;
    1 if a new parameter is not finite, else 0."""
    cdef floating ai, vi, gi, f0, f1
    cdef Py_ssize_t i
    if save:
        for i in range(lo, hi):
            snap[i] = p[i]
            snap[n + i] = a[i]
        if adam:
            for i in range(lo, hi):
                snap[2 * n + i] = v[i]
    f0 = <floating>s0
    f1 = <floating>s1
    if adam:
        for i in range(lo, hi):
            gi = g[i]
            ai = a[i] * c[0] + c[1] * gi
            a[i] = ai
            vi = v[i] * c[2] + (gi * gi) * c[3]
            v[i] = vi
            if floating is float:
                p[i] = p[i] - ai / (sqrtf(vi) + f1) * f0
            else:
                p[i] = p[i] - ai / (sqrt(vi) + f1) * f0
    else:
        for i in range(lo, hi):
            ai = a[i] * f0 - g[i] * f1
            a[i] = ai
            p[i] = p[i] + ai
    # a separate pass over the (cached) block: an integer reduction, so both loops vectorize
    if floating is float:
        return 0 if dlk_all_finite_f32(p + lo, hi - lo) else 1
    else:
        return 0 if dlk_all_finite_f64(p + lo, hi - lo) else 1


cdef int _update(bint adam, floating* p, const floating* g, floating* a, floating* v,
                      const floating* c, Py_ssize_t n, double s0, double s1, floating* snap,
                      bint save) noexcept nogil:
    """One optimizer update of a network, in parallel blocks from PAR_MIN_UPDATE on;
    the number of blocks with a non-finite parameter."""
    cdef int bad = 0
    cdef Py_ssize_t blk, lo, hi
    if n < PAR_MIN_UPDATE:
        return _update_block(adam, 0, n, p, g, a, v, c, s0, s1, snap, n, save)
    for blk in prange((n + UPD_BLOCK - 1) // UPD_BLOCK, schedule="static"):
        lo = blk * UPD_BLOCK
        hi = lo + UPD_BLOCK
        if hi > n:
            hi = n
        bad += _update_block(adam, lo, hi, p, g, a, v, c, s0, s1, snap, n, save)
    return bad


cdef void _draw(floating* z, Py_ssize_t n, const uint64_t* key, uint64_t stream, floating zmul,
                floating zsub) noexcept nogil:
    """z = the uniforms of the Philox stream (key, (0, 0, stream, 0)) * zmul - zsub."""
    cdef uint64_t ctr[4]
    cdef Py_ssize_t i
    ctr[0] = 0
    ctr[1] = 0
    ctr[2] = stream
    ctr[3] = 0
    if floating is float:
        stream_fill_f32(key, ctr, 0, z, n)
    else:
        stream_fill_f64(key, ctr, 0, z, n)
    for i in range(n):
        z[i] = z[i] * zmul - zsub


cdef inline floating* _fbuf(floating[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline int* _ibuf1(int[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


def train_steps(const floating[:, ::1] X, const int64_t[:, ::1] perms, Py_ssize_t pass0,
                Py_ssize_t bpe, Py_ssize_t k, Py_ssize_t step0, Py_ssize_t n_steps,
                const uint64_t[::1] key, const floating[:, ::1] noise, double zmul, double zsub,
                bint simultaneous, int g_mode, bint adam, const double[:, ::1] sched_d,
                const double[:, ::1] sched_g, const floating[::1] adam_c,
                floating[::1] g_params, floating[::1] g_grad, floating[::1] g_st0,
                floating[::1] g_st1, floating[:, ::1] g_snap, const int64_t[:, ::1] g_lay,
                floating[::1] g_ws, int[::1] g_wsi, double g_slope,
                floating[::1] d_params, floating[::1] d_grad, floating[::1] d_st0,
                floating[::1] d_st1, floating[:, ::1] d_snap, const int64_t[:, ::1] d_lay,
                floating[::1] d_ws, int[::1] d_wsi, double d_slope,
                floating[:, ::1] z, floating[:, ::1] inp, floating[:, ::1] gl,
                double[:, ::1] hist):
    """Steps step0 .. step0 + n_steps - 1 of GAN training (see the Numba twin);
    returns (status, i, value, saved)."""
    cdef int m = <int>z.shape[0], nx = <int>X.shape[1], gL = <int>g_lay.shape[0]
    cdef int dL = <int>d_lay.shape[0]
    cdef Py_ssize_t nz = z.shape[1], i, j, b, s, u, r, r0, base, pos
    cdef bint given = noise.shape[0] > 0
    cdef floating zm = <floating>zmul, zs = <floating>zsub, gs = <floating>g_slope
    cdef floating ds = <floating>d_slope
    cdef int bad
    cdef floating *zp = &z[0, 0]
    cdef floating *ip = &inp[0, 0]
    cdef floating *glp = &gl[0, 0]
    cdef floating *gp = &g_params[0]
    cdef floating *dp = &d_params[0]
    cdef floating *ggr = &g_grad[0]
    cdef floating *dgr = &d_grad[0]
    cdef floating *gws = _fbuf(g_ws)
    cdef floating *dws = _fbuf(d_ws)
    cdef int *gwi = _ibuf1(g_wsi)
    cdef int *dwi = _ibuf1(d_wsi)
    cdef floating *xf
    cdef floating *logits = NULL
    cdef floating *gx
    cdef const int64_t* perm
    cdef double d_loss, g_loss
    cdef int n_real, n_fake, status = 0
    cdef double value = 0.0
    cdef Py_ssize_t done = n_steps, nD = d_params.shape[0], nG = g_params.shape[0]
    cdef bint d_saved = False, g_saved = False
    with nogil:
        for i in range(n_steps):
            s = step0 + i
            base = 1 + s * (k + 1)
            d_loss = 0.0
            bad = 0
            for j in range(k):
                b = s * k + j
                perm = &perms[b // bpe - pass0, 0]
                pos = (b % bpe) * m
                for r in range(m):
                    memcpy(ip + r * nx, &X[perm[pos + r], 0], nx * sizeof(floating))
                if given:
                    r0 = (i * (k + 1) + j) * m
                    memcpy(zp, &noise[r0, 0], m * nz * sizeof(floating))
                else:
                    _draw(zp, m * nz, &key[0], <uint64_t>(base + j), zm, zs)
                # discriminator gradient on m real + m fake rows
                xf = _net_forward(zp, m, gp, &g_lay[0, 0], gL, gws, gwi, gs, False)
                memcpy(ip + m * nx, xf, m * nx * sizeof(floating))
                logits = _net_forward(ip, 2 * m, dp, &d_lay[0, 0], dL, dws, dwi, ds, True)
                d_loss = _loss(logits, 2 * m, m, 0, glp)
                _net_backward(ip, 2 * m, dp, &d_lay[0, 0], dL, dws, dwi, glp, dgr, True, False)
                if not isfinite(d_loss):
                    status, value = 1, d_loss
                    break
                if j < k - 1 or not simultaneous:
                    u = i * k + j
                    bad += _update(adam, dp, dgr, &d_st0[0], &d_st1[0], &adam_c[0], nD,
                                   sched_d[u, 0], sched_d[u, 1], &d_snap[0, 0], not d_saved)
                    d_saved = True
            if status:
                done = i
                break
            n_real = 0
            n_fake = 0
            for r in range(m):
                if logits[r] > 0:
                    n_real += 1
                if logits[m + r] < 0:
                    n_fake += 1
            # generator gradient (through D into G)
            if not simultaneous:
                if given:
                    r0 = (i * (k + 1) + k) * m
                    memcpy(zp, &noise[r0, 0], m * nz * sizeof(floating))
                else:
                    _draw(zp, m * nz, &key[0], <uint64_t>(base + k), zm, zs)
            xf = _net_forward(zp, m, gp, &g_lay[0, 0], gL, gws, gwi, gs, True)
            logits = _net_forward(xf, m, dp, &d_lay[0, 0], dL, dws, dwi, ds, True)
            g_loss = _loss(logits, m, 0, g_mode, glp)
            gx = _net_backward(xf, m, dp, &d_lay[0, 0], dL, dws, dwi, glp, dgr, False, True)
            _net_backward(zp, m, gp, &g_lay[0, 0], gL, gws, gwi, gx, ggr, True, False)
            if simultaneous and isfinite(g_loss):
                u = i * k + k - 1
                bad += _update(adam, dp, dgr, &d_st0[0], &d_st1[0], &adam_c[0], nD,
                               sched_d[u, 0], sched_d[u, 1], &d_snap[0, 0], not d_saved)
                d_saved = True
            if not isfinite(g_loss):
                status, value, done = 2, g_loss, i
                break
            bad += _update(adam, gp, ggr, &g_st0[0], &g_st1[0], &adam_c[0], nG,
                           sched_g[i, 0], sched_g[i, 1], &g_snap[0, 0], not g_saved)
            g_saved = True
            hist[i, 0] = d_loss
            hist[i, 1] = g_loss
            hist[i, 2] = <double>n_real / m
            hist[i, 3] = <double>n_fake / m
            if bad != 0:
                status, value, done = 3, NAN, i
                break
    return status, done, value, d_saved + 2 * g_saved
