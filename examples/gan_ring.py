"""A GAN on the 8-Gaussian ring (radius 2, std 0.02), trained with
dlkernels.gan.train_gan; saves a scatter of generated samples at several
points of training (PNG) and prints the mode metrics.

    python examples/gan_ring.py                 # 4000 steps, gan_ring.png
    python examples/gan_ring.py --steps 300 --out /tmp/ring.png

Needs matplotlib (the ``plot`` extra) for the picture.
"""
import argparse

import numpy as np

from dlkernels import gan


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snapshots", type=int, default=4)
    ap.add_argument("--out", default="gan_ring.png")
    args = ap.parse_args(argv)

    n_data = 8192
    X = gan.sample_ring(n_data, random_state=args.seed)
    h = args.hidden
    G = gan.MLP([2, h, h, 2], ["relu", "relu", "identity"], random_state=args.seed + 10)
    D = gan.MLP([2, h, h, 1], ["leaky_relu", "leaky_relu", "identity"],
                random_state=args.seed + 20)
    bs = min(args.batch_size, n_data)
    bpe = n_data // bs
    z = np.random.default_rng(12345).standard_normal((2000, 2)).astype(np.float32)
    marks = set(np.linspace(0, args.steps, args.snapshots + 1).astype(int)[1:])
    snaps = []

    def snapshot(tr, info):
        if info["step"] in marks:
            snaps.append((info["step"], G.forward(z)))

    trainer = gan.GANTrainer(G, D, batch_size=bs, optimizer="adam", learning_rate=1e-3,
                             lr_decay=1.0008, noise="normal", random_state=args.seed)
    trainer.fit(X, max(1, -(-args.steps // bpe)), callback=snapshot)
    m = gan.mode_metrics(G.forward(z), gan.ring_modes(), 0.02)
    print(f"after {trainer.step} steps: modes captured {m['modes_captured']}/8, "
          f"high-quality samples {100 * m['high_quality']:.1f}%, "
          f"reverse KL {m['reverse_kl']:.3f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (pip install dlkernels[plot])")
        return m
    fig, axes = plt.subplots(1, len(snaps) + 1, figsize=(3 * (len(snaps) + 1), 3),
                             squeeze=False)
    axes = axes[0]
    axes[0].scatter(X[:2000, 0], X[:2000, 1], s=2, c="k")
    axes[0].set_title("data")
    for ax, (step, s) in zip(axes[1:], snaps):
        ax.scatter(s[:, 0], s[:, 1], s=2)
        ax.set_title(f"step {step}")
    for ax in axes:
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return m


if __name__ == "__main__":
    main()
