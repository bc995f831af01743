"""Training in jit: every random key from the seed (``keys``), the scanned engine (``engine``), the hook
interface (``hooks``), the staged schedule as data (``stages``), per-layer diagnostics (``diagnostics``)."""
