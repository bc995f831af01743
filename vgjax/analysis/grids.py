"""The grids of the analyses as data: the plateau-escape study's settings, seeds and epochs
(docs/escape.md, "Commands") and the trainability map's budget (docs/escape.md, "Trainability map").
Light to import (no jax, no numpy), so that the command lines' ``--help`` shows them as defaults."""

# the escape study (issue #19): experiments.escape's defaults
FULL_GRID = {"depth": [3, 4, 5, 6, 7], "batch_size": [32, 128, 512], "init_std": [0.05, 0.1, 0.2]}
FULL_SEEDS, FULL_EPOCHS = 16, 300

# the trainability map: one sweep per activation, 2 seeds, 3 epochs, 10,000 images, batch 128, lr 0.1
MAP_STDS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9, 1.5, 3.0, 10.0)
MAP_GRID = {"sigmoid": (2, 4, 8, 12), "tanh": (2, 8), "sigmoid_beta": (2, 8)}
MAP_BETA = 0.2  # the beta-sigmoid's beta in the map (the paper's is 0.05; 0.2 moves the critical std further)
MAP_SEEDS, MAP_EPOCHS, MAP_TRAIN_LIMIT, MAP_BATCH, MAP_LR = 2, 3, 10000, 128, 0.1
