"""The settings of a sweep as its files hold them: one dict per setting (the method, the discrete
values of its program and the continuous values of its members), and the labels and pivots the
reports and figures build from them.
"""

from __future__ import annotations

# one program per combination
DISCRETE = ("depth", "width", "activation", "optimizer", "batch_size", "init_draw", "output_init", "bias_init")
SETTING_COLUMNS = ("method", *DISCRETE, "init_std", "lr", "beta")


def value_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def label_of(setting: dict, varying: list[str]) -> str:
    return ", ".join(f"{k}={setting[k]}" for k in varying) or setting["method"]


def group_label(config, configs: list) -> str:
    """A program's label: its method and the discrete values that differ between the sweep's
    programs (``configs``: every program's Config)."""
    varying = [k for k in DISCRETE if len({getattr(c, k) for c in configs}) > 1]
    return " ".join([config.method, *(f"{k}={getattr(config, k)}" for k in varying)])


def summary_table(per_setting: list[dict]) -> str:
    """The per-setting summary as a plain-text table: final and best val_accuracy (mean ± std over
    seeds), the fraction that left the plateau and the diverged members."""
    varying = [k for k in SETTING_COLUMNS if len({s[k] for s in per_setting}) > 1] or ["method"]
    lines = [f"{'setting':<32} {'final val_acc':>17} {'best val_acc':>17} {'left plateau':>12} {'diverged':>8}"]
    for s in per_setting:
        f, b, lp = s["final_val_accuracy"], s["best_val_accuracy"], s["left_plateau"]
        fmt = lambda d: "-" if d["mean"] is None else f"{d['mean']:.4f} ± {d['std']:.4f}"  # noqa: E731
        lines.append(f"{label_of(s, varying):<32} {fmt(f):>17} {fmt(b):>17} "
                     f"{lp['fraction']:>12.2f} {s['diverged']['count']:>4}/{s['seeds']}")
    return "\n".join(lines)


def setting_label(s: dict, columns: list[str]) -> str:
    return " ".join([s["method"]] + [f"{k}={value_text(s[k])}" for k in columns if k != "method"])


def legend_columns(settings: list[dict]) -> list[str]:
    """The setting columns a legend needs: the method when there are several, and the axes that
    vary within a method (a method's own depth or batch size tells nothing beside its name)."""
    methods = {s["method"] for s in settings}
    within = [k for k in SETTING_COLUMNS if k != "method"
              and any(len({s.get(k) for s in settings if s["method"] == m}) > 1 for m in methods)]
    return (["method"] if len(methods) > 1 else []) + within


def pivot(settings: list[dict], axis: str, others: list[str] = ()) -> tuple[list[str], list, dict]:
    """Row labels (method and the ``others`` axes), the axis values, and {(row, value): setting}."""
    rows, values, cells = [], [], {}
    for s in settings:
        row = setting_label(s, [c for c in others if c != axis])
        if row not in rows:
            rows.append(row)
        if s[axis] not in values:
            values.append(s[axis])
        cells[(row, s[axis])] = s
    try:
        values.sort()
    except TypeError:
        pass
    return rows, values, cells
