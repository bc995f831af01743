"""vgjax.run.decide: what a run directory lets a run do, decided in the library (raising, never printing);
the command line's one-line messages over it are tested in tests/test_faults*.py and tests/test_cli.py."""

import pytest

from vgjax.methods import get_config
from vgjax.run import decide
from vgjax.run.rundir import RunDir

pytestmark = pytest.mark.fast


def test_a_new_directory_starts_and_resuming_nothing_is_refused(tmp_path):
    config = get_config("baseline_3", epochs=1)
    assert decide.inspect(tmp_path / "new", config, resume=False, overwrite=False) == "new"
    with pytest.raises(decide.Refused, match="no run to resume") as e:
        decide.inspect(tmp_path / "new", config, resume=True, overwrite=False)
    assert not e.value.diverged and not (tmp_path / "new").exists()  # nothing written
    (tmp_path / "file").write_text("x")
    with pytest.raises(decide.Refused, match="is a file"):
        decide.inspect(tmp_path / "file", config, resume=False, overwrite=False)


def test_an_ended_run_is_replaced_only_on_overwrite_and_a_diverged_one_says_so(tmp_path):
    config = get_config("baseline_3", epochs=1)
    rd = RunDir(tmp_path / "run")
    rd.create(config.to_dict())
    rd.write_summary({"status": "finished"})
    assert decide.inspect(rd.path, config, resume=False, overwrite=True) == "overwrite"
    assert decide.inspect(rd.path, config, resume=True, overwrite=False) == "done"
    with pytest.raises(decide.Refused, match="holds a finished run"):
        decide.inspect(rd.path, config, resume=False, overwrite=False)
    rd.write_summary({"status": "diverged", "diverged_epoch": 7})
    with pytest.raises(decide.Refused, match="diverged at epoch 7") as e:
        decide.inspect(rd.path, config, resume=True, overwrite=False)
    assert e.value.diverged


def test_an_unfinished_run_resumes_only_with_its_own_settings(tmp_path):
    config = get_config("baseline_3", epochs=2)
    rd = RunDir(tmp_path / "run")
    rd.create(config.to_dict())
    assert decide.inspect(rd.path, config, resume=True, overwrite=False) == "restart"  # no checkpoint yet
    with pytest.raises(decide.Refused, match=r"other settings \(lr 0.01 -> 0.1\)"):
        decide.inspect(rd.path, config.replace(lr=0.1), resume=True, overwrite=False)
    with pytest.raises(decide.Refused, match="use --resume"):
        decide.inspect(rd.path, config, resume=False, overwrite=False)
