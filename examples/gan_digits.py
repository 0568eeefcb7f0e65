"""A GAN on scikit-learn's bundled digits (8 x 8 images, 1797 of them) with a
maxout discriminator, as in the original adversarial nets; saves a grid of
generated digits (PNG) and prints the Parzen-window log-likelihood of the
held-out digits (sigma chosen on a validation split).

    python examples/gan_digits.py                  # gan_digits.png
    python examples/gan_digits.py --epochs 2 --out /tmp/digits.png

Needs scikit-learn (the data) and matplotlib (the ``plot`` extra) for the picture.
"""
import argparse

import numpy as np

from dlkernels import gan


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="gan_digits.png")
    args = ap.parse_args(argv)

    from sklearn.datasets import load_digits

    X = (load_digits().data / 16.0).astype(np.float32)
    order = np.random.default_rng(args.seed).permutation(len(X))
    X = X[order]
    train, valid, test = X[:1400], X[1400:1600], X[1600:]
    G = gan.MLP([32, 256, 256, 64], ["relu", "relu", "sigmoid"], random_state=args.seed + 1)
    D = gan.MLP([64, 128, 128, 1], ["maxout", "maxout", "identity"], maxout_pieces=5,
                init="uniform", init_range=0.05, random_state=args.seed + 2)
    gan.train_gan(train, G, D, n_epochs=args.epochs, batch_size=args.batch_size,
                  optimizer="adam", learning_rate=(2e-4, 1e-3), noise="uniform",
                  random_state=args.seed)
    z = np.random.default_rng(1).uniform(-np.sqrt(3), np.sqrt(3), (2000, 32)).astype(np.float32)
    samples = G.forward(z)
    ll, se, sigma = gan.parzen_log_likelihood(samples, test, validation=valid,
                                              sigmas=np.logspace(-1.5, 0, 12))
    print(f"Parzen log-likelihood of {len(test)} test digits: {ll:.1f} +- {se:.1f} "
          f"(sigma {sigma:.3f}, 2000 samples)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (pip install dlkernels[plot])")
        return ll
    grid = samples[:100].reshape(10, 10, 8, 8).transpose(0, 2, 1, 3).reshape(80, 80)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("generated digits")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return ll


if __name__ == "__main__":
    main()
