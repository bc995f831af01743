""""Train some layers" (docs/study.md §4.6): the stage table as data, validated, and parameter carry-over.

The hidden layers are split into sub-models (default 2, 2, 2, 1). Each training run ("stage")
stacks a prefix of the sub-models between the 784-input and a 10-way output layer, freezes some
of them, and trains for some epochs. Trained weights carry over from stage to stage by layer
name: sub-model k's layers are ``hidden_i`` for its slice of 1..depth (and ``norm_i`` for their
BatchNorm layers), so a layer keeps its name in every stage.

Every stage builds a new model, as the original does: the stacked sub-models (trained weights
carried over) and a **new, freshly initialised output layer**, with a fresh optimizer state. The
variant ``stage_output="keep"`` carries the output layer over too (when its shape is unchanged).

Tables are given as a JSON file or as a compact string::

    2-2-2-1 | 1:100 | 1+2:100:1 | 1+2:100 | 1+2+3:100:1+2 | 1+2+3:100 | 1+2+3+4:100:1+2+3 | 1+2+3+4:300

(sub-model sizes, then one ``stacked:epochs[:frozen]`` entry per stage), or just the sizes
(``3-2-2``), which builds the study's pattern for them: add the next sub-model with the earlier
ones frozen for 100 epochs, then train everything for 100; the last full stage runs 300.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax

from vgjax.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int  # 1-based
    stacked: tuple[int, ...]  # sub-model numbers, a prefix 1..k
    frozen: tuple[int, ...]
    epochs: int


@dataclasses.dataclass(frozen=True)
class StageTable:
    sizes: tuple[int, ...]  # hidden layers per sub-model
    stages: tuple[Stage, ...]

    @property
    def depth(self) -> int:
        return sum(self.sizes)

    def layers_of(self, submodel: int) -> tuple[int, ...]:
        """Hidden-layer numbers (1-based) of a sub-model."""
        start = sum(self.sizes[: submodel - 1])
        return tuple(range(start + 1, start + self.sizes[submodel - 1] + 1))

    def stage_depth(self, stage: Stage) -> int:
        return sum(self.sizes[k - 1] for k in stage.stacked)

    def frozen_layer_names(self, stage: Stage) -> tuple[str, ...]:
        """Parameter-tree names that stage must not update (Dense and their norm layers)."""
        names = []
        for k in stage.frozen:
            for i in self.layers_of(k):
                names += [f"hidden_{i}", f"norm_{i}"]
        return tuple(names)

    def scaled(self, factor: float) -> "StageTable":
        """Every stage's epochs multiplied by ``factor`` (at least one epoch each)."""
        stages = tuple(dataclasses.replace(s, epochs=max(1, math.ceil(s.epochs * factor)))
                       for s in self.stages)
        return dataclasses.replace(self, stages=stages)

    def saves_checkpoint(self, epoch: int, every: int) -> bool:
        """Whether a run saves a checkpoint after global ``epoch``: at the end of every stage and,
        with ``every`` (Config.checkpoint_every) > 0, every ``every`` epochs."""
        return any(epoch == last for _, last in self.boundaries()) or bool(every and epoch % every == 0)

    def boundaries(self) -> list[tuple[int, int]]:
        """(first global epoch, last global epoch) of every stage, 1-based, inclusive."""
        out, start = [], 0
        for s in self.stages:
            out.append((start + 1, start + s.epochs))
            start += s.epochs
        return out

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def stage_at(self, epoch: int) -> Stage:
        """The stage a run is in after ``epoch`` finished global epochs: the stage whose epochs
        include it (a checkpoint at a stage's last epoch belongs to that stage; 0 to the first)."""
        for stage, (first, last) in zip(self.stages, self.boundaries()):
            if first - 1 < epoch <= last:
                return stage
        raise ValueError(f"checkpoint {epoch} lies outside the run's {self.total_epochs} epochs")

    def epochs_before(self, stage: Stage) -> int:
        """Global epochs finished before ``stage`` starts."""
        return sum(s.epochs for s in self.stages[: self.stages.index(stage)])

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes),
                "stages": [{"stacked": list(s.stacked), "frozen": list(s.frozen), "epochs": s.epochs}
                           for s in self.stages]}


def _fail(msg: str) -> None:
    raise ConfigError(f"invalid stage table: {msg}")


def validate_table(table: StageTable) -> StageTable:
    if not table.sizes:
        _fail("no sub-models")
    if any(n < 1 for n in table.sizes):
        _fail(f"every sub-model needs at least one layer, got sizes {list(table.sizes)}")
    if not table.stages:
        _fail("no stages")
    n = len(table.sizes)
    for s in table.stages:
        where = f"stage {s.index}"
        for k in s.stacked + s.frozen:
            if not 1 <= k <= n:
                _fail(f"{where} names sub-model {k}, but there are only {n}")
        if s.stacked != tuple(range(1, len(s.stacked) + 1)):
            _fail(f"{where} must stack a prefix of the sub-models (1, 1+2, ...), got {s.stacked}")
        missing = set(s.frozen) - set(s.stacked)
        if missing:
            _fail(f"{where} freezes sub-model(s) {sorted(missing)} that it does not stack")
        if len(set(s.frozen)) != len(s.frozen):
            _fail(f"{where} freezes a sub-model twice")
        if set(s.frozen) == set(s.stacked):
            _fail(f"{where} freezes every stacked sub-model: nothing but the output layer would train")
        if s.epochs < 1:
            _fail(f"{where} needs at least one epoch, got {s.epochs}")
    return table


def _nums(text: str, what: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split("+"))
    except ValueError:
        _fail(f"{what} {text!r} is not a list of sub-model numbers like 1+2")
        raise  # unreachable


def default_schedule(sizes: tuple[int, ...], epochs: int = 100, last_epochs: int = 300) -> StageTable:
    """docs/study.md §4.6's pattern for any split: add a sub-model (earlier ones frozen), then unfreeze."""
    stages = [Stage(1, (1,), (), epochs)]
    for k in range(2, len(sizes) + 1):
        stack = tuple(range(1, k + 1))
        stages.append(Stage(len(stages) + 1, stack, tuple(range(1, k)), epochs))
        last = k == len(sizes)
        stages.append(Stage(len(stages) + 1, stack, (), last_epochs if last else epochs))
    return validate_table(StageTable(tuple(sizes), tuple(stages)))


STUDY_TABLE_STRING = ("2-2-2-1 | 1:100 | 1+2:100:1 | 1+2:100 | 1+2+3:100:1+2 | 1+2+3:100 | "
                     "1+2+3+4:100:1+2+3 | 1+2+3+4:300")


def parse_compact(text: str) -> StageTable:
    parts = [p.strip() for p in text.split("|")]
    try:
        sizes = tuple(int(t) for t in parts[0].split("-"))
    except ValueError:
        _fail(f"sub-model sizes {parts[0]!r} must look like 2-2-2-1")
    if len(parts) == 1:
        if any(n < 1 for n in sizes):
            _fail(f"every sub-model needs at least one layer, got sizes {list(sizes)}")
        return default_schedule(sizes)
    stages = []
    for i, entry in enumerate(parts[1:], start=1):
        fields = entry.split(":")
        if len(fields) not in (2, 3):
            _fail(f"stage {i} entry {entry!r} must be stacked:epochs[:frozen], e.g. 1+2:100:1")
        try:
            epochs = int(fields[1])
        except ValueError:
            _fail(f"stage {i} epochs {fields[1]!r} is not a whole number")
        frozen = _nums(fields[2], "frozen list") if len(fields) == 3 else ()
        stages.append(Stage(i, _nums(fields[0], "stacked list"), frozen, epochs))
    return validate_table(StageTable(sizes, tuple(stages)))


def from_dict(d: dict) -> StageTable:
    try:
        sizes = tuple(int(n) for n in d["sizes"])
        stages = tuple(Stage(i, tuple(int(k) for k in s["stacked"]), tuple(int(k) for k in s.get("frozen", ())),
                             int(s["epochs"])) for i, s in enumerate(d["stages"], start=1))
    except (KeyError, TypeError, ValueError) as e:
        _fail(f"a JSON table needs 'sizes' and 'stages' with 'stacked', 'frozen', 'epochs' ({e})")
    return validate_table(StageTable(sizes, stages))


def load_table(spec: str | None) -> StageTable:
    """``None``/"default" → docs/study.md §4.6; a path to a .json file; or a compact string."""
    if spec is None or spec == "default":
        return parse_compact(STUDY_TABLE_STRING)
    if spec.endswith(".json"):
        try:
            return from_dict(json.loads(Path(spec).read_text()))
        except OSError as e:
            raise ConfigError(f"cannot read stage table {spec}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"stage table {spec} is not valid JSON: {e}") from None
    return parse_compact(spec)


def run_table(config) -> StageTable:
    """The stages of a run of ``config`` (a :class:`vgjax.config.Config` or a config.json's dict):
    its stage table scaled by ``epochs_scale``, or one stage training every layer."""
    if isinstance(config, dict):
        get = config.get
    else:
        def get(name, default=None):
            return getattr(config, name, default)
    if get("stages") is None:
        return StageTable((get("depth"),), (Stage(1, (1,), (), get("epochs")),))
    return load_table(get("stages")).scaled(get("epochs_scale", 1.0))


def planned_epochs(config) -> int:
    """The global epochs a run of ``config`` (a Config or a config.json's dict) plans, over all stages."""
    return run_table(config).total_epochs


def relative_cost(table: StageTable) -> float:
    """A run's cost up to a constant factor: epochs times (hidden layers + 3), summed over stages
    (why: docs/design.md, "Suite scheduling")."""
    return float(sum(s.epochs * (table.stage_depth(s) + 3) for s in table.stages))


OUTPUT_LAYER = "output"


def carry_over(fresh: dict, previous: dict | None, keep_output: bool = True) -> dict:
    """``fresh`` variables with every entry of ``previous`` whose name and shapes match.

    Works on a collection (params or batch_stats): hidden layers keep their trained weights; the
    output layer is kept only with ``keep_output`` (and an unchanged shape).
    """
    if not previous:
        return fresh
    out = dict(fresh)
    for name, old in previous.items():
        if name in fresh and (keep_output or name != OUTPUT_LAYER):
            same = jax.tree_util.tree_structure(old) == jax.tree_util.tree_structure(fresh[name]) and all(
                a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(old),
                                                   jax.tree_util.tree_leaves(fresh[name])))
            if same:
                out[name] = old
    return out


class TableFileError(ConfigError):
    """A JSON stage-table file that cannot be read as one (the message starts with its path)."""


def table_file_text(spec: str) -> str:
    """A JSON stage-table file as the equivalent compact table string, so that config.json records
    the table itself (what the run depends on), not a path whose file may change. Strict: the
    file must be UTF-8 JSON with whole numbers only and no unknown keys, else TableFileError
    ("SPEC: why"); a table that means nothing raises ConfigError as :func:`from_dict` does. A spec not ending in .json is a compact table already: returned as it is."""
    if not spec.endswith(".json"):
        return spec
    try:
        data = Path(spec).read_bytes()
    except OSError as e:
        raise TableFileError(f"{spec}: cannot read the stage table ({e.strerror})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TableFileError(f"{spec}: the stage table is not UTF-8 text (byte {e.start})")

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(f"the number {token} is out of range")
        return value

    def constant(token: str):
        raise ValueError(f"{token} is not a number")

    try:
        d = json.loads(text, parse_float=finite, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise TableFileError(f"{spec}: the stage table is not valid JSON ({e.msg}, line {e.lineno})")
    except ValueError as e:
        raise TableFileError(f"{spec}: {e}")

    def whole_list(v, where: str) -> None:
        if not isinstance(v, list):
            raise TableFileError(f"{spec}: {where} must be a list of whole numbers, got {json.dumps(v)}")
        for i, x in enumerate(v):
            whole(x, f"{where}[{i}]")

    def whole(v, where: str) -> None:
        if type(v) is not int:
            raise TableFileError(f"{spec}: {where} must be a whole number, got {json.dumps(v)}")

    if not isinstance(d, dict) or set(d) != {"sizes", "stages"}:
        raise TableFileError(f"{spec}: a JSON stage table is an object with exactly the keys 'sizes' and 'stages'")
    whole_list(d["sizes"], "sizes")
    if not isinstance(d["stages"], list):
        raise TableFileError(f"{spec}: 'stages' must be a list of stages")
    for i, st in enumerate(d["stages"]):
        where = f"stages[{i}]"
        if not isinstance(st, dict) or not {"stacked", "epochs"} <= set(st) <= {"stacked", "frozen", "epochs"}:
            raise TableFileError(f"{spec}: {where} must be an object with 'stacked', 'epochs' and optionally 'frozen'")
        whole_list(st["stacked"], f"{where}.stacked")
        whole_list(st.get("frozen", []), f"{where}.frozen")
        whole(st["epochs"], f"{where}.epochs")
    table = from_dict(d)  # ConfigError for what the table means
    return compact_table(table)


def compact_table(table) -> str:
    """A stage table as the compact string ``sizes | stacked:epochs[:frozen] | ...``."""
    join = lambda ks: "+".join(str(k) for k in ks)  # noqa: E731
    entries = [f"{join(s.stacked)}:{s.epochs}" + (f":{join(s.frozen)}" if s.frozen else "") for s in table.stages]
    return " | ".join(["-".join(str(n) for n in table.sizes), *entries])
