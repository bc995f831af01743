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
