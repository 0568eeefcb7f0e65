"""Attention in image captioning, the Show, Attend and Tell way (Xu et al. 2015),
on a synthetic image: additive (Bahdanau) attention of a decoder over the
annotation vectors of a 14 x 14 grid of regions, one step per "word", and a
PNG of the attention weights over the image grid at each step.

    python examples/captioning_attention.py                  # 4 steps, captioning_attention.png
    python examples/captioning_attention.py --steps 2 --out /tmp/att.png

No download and no training: the feature map is made of a few objects (blobs,
each with its own feature signature) on a noisy background, and the decoder
is a small hand-set recurrent cell whose state at step t asks for object t
(as a trained captioner's state does when the next word names that object).
Per step: e_ti = v . tanh(h_{t-1} Wq + a_i Wk + b) over the 196 regions,
alpha_t = softmax(e_t), context z_t = sum_i alpha_ti a_i
(``dlkernels.attention.attend``, one query per image; the annotations'
projection a_i Wk is made once, by ``attention.project_keys``), then
h_t = tanh(h_{t-1} Wh + z_t Wz + word_t).  Needs matplotlib (the ``plot``
extra) for the picture.
"""
import argparse

import numpy as np

from dlkernels import attention

GRID = 14


def feature_map(n_objects, D, rng):
    """(annotations (196, D), object centres, object signatures (n, D))."""
    yy, xx = np.mgrid[0:GRID, 0:GRID]
    sig = np.zeros((n_objects, D))
    for o in range(n_objects):  # disjoint channel groups: one "concept" per object
        sig[o, o * (D // n_objects):(o + 1) * (D // n_objects)] = 1.0
    centres = []
    fmap = 0.1 * rng.standard_normal((GRID, GRID, D))
    for o in range(n_objects):
        while True:
            c = rng.integers(2, GRID - 2, 2)
            if all(np.abs(c - p).sum() > 5 for p in centres):
                break
        centres.append(c)
        blob = np.exp(-((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (2 * 1.2 ** 2))
        fmap += blob[..., None] * sig[o]
    return fmap.reshape(GRID * GRID, D), np.array(centres), sig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="decoder steps (objects named)")
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--out", default="captioning_attention.png")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    T, D = max(1, args.steps), args.features
    ann, centres, sig = feature_map(T, D, rng)
    dt = np.float32
    a = ann.astype(dt)[None]                         # (1, 196, D): keys = values = annotations
    H = D
    params = {"Wq": (3.0 * np.eye(D, H)).astype(dt),  # decoder state -> attention space
              "Wk": (1.5 * np.eye(D, H)).astype(dt),  # annotation -> attention space
              "b": np.full(H, -3.0, dt),              # a channel scores only when both are on
              "v": np.ones(H, dt)}
    Wh = (0.2 * rng.standard_normal((D, D))).astype(dt)
    Wz = (0.2 * rng.standard_normal((D, D))).astype(dt)
    h = np.zeros((1, 1, D), dt)
    # the annotations are the same at every step: their projection is made once
    keys = attention.project_keys(a, score="additive", params=params, backend=args.backend)
    weights, contexts = [], []
    for t in range(T):
        # the state that asks for object t: the previous word's embedding drives the cell
        query = np.tanh(h + 2.0 * sig[t].astype(dt))
        z, w = attention.attend(query, a, a, score="additive", params=params,
                                projected_keys=keys, return_weights=True, backend=args.backend)
        weights.append(w[0, 0].reshape(GRID, GRID))
        contexts.append(z[0, 0])
        h = np.tanh(h @ Wh + z @ Wz).astype(dt)
    peaks = [np.unravel_index(np.argmax(w), w.shape) for w in weights]
    for t, (p, c) in enumerate(zip(peaks, centres)):
        print(f"step {t}: attention peak at region {tuple(int(x) for x in p)}, object {t} "
              f"at {tuple(int(x) for x in c)}, weight there {weights[t][p]:.3f}")
    result = {"weights": np.array(weights), "centres": centres, "peaks": np.array(peaks)}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (pip install dlkernels[plot])")
        return result
    image = np.linalg.norm(ann.reshape(GRID, GRID, D), axis=2)
    fig, axes = plt.subplots(1, T + 1, figsize=(2.6 * (T + 1), 2.8), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("feature map (norm)")
    for t in range(T):
        axes[t + 1].imshow(image, cmap="gray")
        axes[t + 1].imshow(weights[t], cmap="magma", alpha=0.7)
        axes[t + 1].set_title(f"step {t}: object {t}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    plt.close(fig)
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
