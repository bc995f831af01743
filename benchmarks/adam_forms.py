"""Keras' Adam against optax's on the vanishing network: per-layer step sizes of the first steps.

    python benchmarks/adam_forms.py [--method baseline_7] [--steps 200] [--seed 0]

Both forms train the same model from the same initialisation on the same minibatches (vgjax's
epoch-1 order, batch 32, lr 0.001). After each step the script records, per Dense layer,
``|update| / |kernel|`` for both forms; it prints the ratio Keras / optax of those step sizes at
steps 1, 10, 100 and the last, with the layer's gradient norm at step 1. Keras adds ε to
sqrt(v) before the bias correction (effective ε = ε / sqrt(1 - β2^t), ~32x larger at t = 1), so
where gradients are near ε its first steps are smaller; the ratio shows how much, and for how long.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="baseline_7")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from vgjax.methods import get_config
    from vgjax import data
    from vgjax.nn.models import build_model
    from vgjax.optim.registry import make_optimizer
    from vgjax.train.engine import _batches, create_train_state, kernel_grad_norms, make_engine

    arrays = data.load()
    x, y = jnp.asarray(arrays.x_train), jnp.asarray(arrays.y_train.astype(np.int32))
    ratios, grads1 = {}, None
    for form in ("adam", "adam_optax"):
        config = get_config(args.method, optimizer=form, lr=0.001, seed=args.seed)
        model, tx = build_model(config), make_optimizer(config)
        state = create_train_state(model, tx, jax.random.PRNGKey(args.seed))
        engine = make_engine(config, model, tx)
        perm = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(state.key, 0), 0), x.shape[0])
        idx, mask = _batches(x.shape[0], config.batch_size, perm)

        @jax.jit
        def step(st, i):
            new, out = engine.train_step(st, x, y, idx[i], mask[i], None)
            rel = {n: jnp.linalg.norm(new.params[n]["kernel"] - st.params[n]["kernel"])
                   / jnp.linalg.norm(st.params[n]["kernel"]) for n in st.params}
            return new, rel, out["grad_norm"]

        rows = []
        for i in range(args.steps):
            state, rel, g = step(state, i)
            rows.append(jax.device_get(rel))
            if i == 0 and grads1 is None:
                grads1 = jax.device_get(g)
        ratios[form] = rows
    layers = list(ratios["adam"][0])
    shown = sorted({1, 10, 100, args.steps} & set(range(1, args.steps + 1)))
    print(f"# Keras' Adam / optax's Adam: |update| / |kernel| per layer ({args.method}, seed {args.seed}, "
          f"lr 0.001, batch 32, the same minibatches)\n")
    print("| layer | ‖∇W‖ at step 1 | " + " | ".join(f"step {s}" for s in shown) + " |")
    print("|---|---|" + "---|" * len(shown))
    for name in layers:
        cells = [f"{float(ratios['adam'][s - 1][name]) / float(ratios['adam_optax'][s - 1][name]):.3f}" for s in shown]
        print(f"| {name} | {float(grads1[name]):.2e} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
