"""The dose-method option schema (DoseOption): validation, defaults, describe(), entry-point plug-ins, the CLI
flags built from the registry, `info`, and the pipeline's up-front check."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from VoxelDosimetryLib import Volume
from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.dose import (DoseMethod, DoseOption, DoseRequest, DoseResult, available_dose_methods,
                                    compute_dose, get_dose_method, register_dose_method)
from VoxelDosimetryLib.dose import registry
from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError
from VoxelDosimetryLib.io import write_volume
from VoxelDosimetryLib.pipeline.config import PipelineConfig
from VoxelDosimetryLib.qc import collect_qc

SEEN: list = []


def _record(request):
    SEEN.append(dict(request.options))
    return DoseResult(request.ct.with_array(np.zeros(request.ct.shape, np.float32), quantity="dose_rate",
                                            unit="Gy/s"))


KERNEL_LIKE = DoseMethod(
    "test-kernel", "a kernel-like test method", _record,
    options=(DoseOption("component", "str", "total", choices=("total", "electron", "photon"),
                        help="which emissions the kernel holds"),
             DoseOption("kernel", "str", "", help="kernel file (empty: the built-in one)"),
             DoseOption("air_threshold_g_cm3", "float", 0.1, unit="g/cm3", minimum=0, maximum=1,
                        help="no dose below this density"),
             DoseOption("fraction", "float", 0.5, minimum=0, maximum=1, help="a plain number"),
             DoseOption("batches", "int", 10, minimum=1, help="whole number"),
             DoseOption("normalise", "bool", True, help="a yes/no option")))


@pytest.fixture
def test_registry(monkeypatch):
    """The registry with the built-in methods plus test-kernel; restored after the test."""
    available_dose_methods()  # built-ins and installed plug-ins loaded first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_dose_method(KERNEL_LIKE)
    SEEN.clear()
    return KERNEL_LIKE


def phantom():
    ct = Volume(np.zeros((4, 4, 4), np.int16), spacing=(4, 4, 4), quantity="ct")
    activity = Volume(np.full((4, 4, 4), 1e3, np.float32), spacing=(4, 4, 4), quantity="activity_concentration",
                      unit="Bq/mL")
    return ct, activity


# ------------------------------------------------------------------------------------------------- the schema
def test_defaults_are_filled_and_values_converted(test_registry):
    method = test_registry
    assert method.option_names == ("component", "kernel", "air_threshold_g_cm3", "fraction", "batches", "normalise")
    assert method.resolve_options({}) == {"component": "total", "kernel": "", "air_threshold_g_cm3": 0.1,
                                          "fraction": 0.5, "batches": 10, "normalise": True}
    resolved = method.resolve_options({"fraction": "10 %", "air_threshold_g_cm3": "5e-2", "batches": "2e1",
                                       "normalise": "no", "component": "photon", "kernel": "k.npz"})
    assert resolved == {"component": "photon", "kernel": "k.npz", "air_threshold_g_cm3": 0.05, "fraction": 0.1,
                        "batches": 20, "normalise": False}
    assert method.resolve_options({"fraction": "1e-1"})["fraction"] == pytest.approx(0.1)
    assert method.resolve_options({"air_threshold_g_cm3": "50 kg/m3"})["air_threshold_g_cm3"] == pytest.approx(0.05)
    assert isinstance(method.resolve_options({"batches": 3.0})["batches"], int)


@pytest.mark.parametrize("text, value", [("true", True), ("YES", True), ("1", True), (1, True), (True, True),
                                         ("false", False), ("no", False), ("0", False), (0, False),
                                         (np.bool_(False), False), (" On ", True)])
def test_bool_parsing(test_registry, text, value):
    assert test_registry.resolve_options({"normalise": text})["normalise"] is value


def test_unknown_names_list_the_valid_ones(test_registry):
    with pytest.raises(InputFormatError, match=r"'test-kernel' has no options \['kernal'\]; its options: component, "
                                               r"kernel, air_threshold_g_cm3, fraction, batches, normalise"):
        test_registry.resolve_options({"kernal": "k.npz"})
    with pytest.raises(InputFormatError, match=r"has no dose.options \['x'\]"):
        test_registry.check_options({"x": 1}, "dose.options")  # the thin wrapper
    with pytest.raises(InputFormatError, match=r"its options: none"):
        DoseMethod("bare", "no options", _record).resolve_options({"x": 1})


@pytest.mark.parametrize("options, message", [
    ({"normalise": "maybe"}, r"options.normalise must be true or false .*got 'maybe'"),
    ({"normalise": 2}, r"options.normalise must be true or false"),
    ({"batches": "2.5"}, r"options.batches must be a whole number >= 1; got '2.5'"),
    ({"batches": "ten"}, r"options.batches must be a whole number.*'ten' \(not a number\)"),
    ({"fraction": True}, r"options.fraction must be a number.*a yes/no value is not a number"),
    ({"fraction": "3 mm"}, r"options.fraction must be a number"),
    ({"component": 3.0}, r"options.component must be text \(total\|electron\|photon\); got 3.0"),
    ({"component": "Total"}, r"options.component must be one of 'total', 'electron', 'photon'; got 'Total' "
                             r"\(did you mean 'total'\?\)"),
    ({"air_threshold_g_cm3": -0.1}, r"options.air_threshold_g_cm3 must be a number >= 0 and <= 1 in g/cm3; "
                                    r"got -0.1 \(below 0\)"),
    ({"fraction": "150 %"}, r"options.fraction must be a number >= 0 and <= 1; got '150 %' \(above 1\)"),
])
def test_invalid_values_name_the_option_the_value_and_what_is_allowed(test_registry, options, message):
    with pytest.raises(InputFormatError, match=r"Dose method 'test-kernel': " + message):
        test_registry.resolve_options(options)


def test_every_problem_is_reported_together(test_registry):
    with pytest.raises(InputFormatError) as err:
        test_registry.resolve_options({"batches": 0, "component": "all", "normalise": "?"}, "dose.options")
    text = str(err.value)
    assert "dose.options.batches" in text and "dose.options.component" in text and "dose.options.normalise" in text
    with pytest.raises(InputFormatError, match=r"must be a mapping"):
        test_registry.resolve_options(["component"])


def test_a_number_given_for_a_text_option_is_text(test_registry):
    assert test_registry.resolve_options({"kernel": 2024})["kernel"] == "2024"


def test_schemas_are_checked_when_declared():
    with pytest.raises(VoxelDosimetryError, match="type must be one of"):
        DoseOption("x", "list", None)
    with pytest.raises(VoxelDosimetryError, match="invalid default"):
        DoseOption("x", "str", "all", choices=("electron", "total"))
    with pytest.raises(VoxelDosimetryError, match="identifier"):
        DoseOption("my option", "str", "")
    with pytest.raises(VoxelDosimetryError, match="DoseOption instances"):
        DoseMethod("m", "d", _record, options=("component",))
    with pytest.raises(VoxelDosimetryError, match="twice"):
        DoseMethod("m", "d", _record, options=(DoseOption("a", "int", 1), DoseOption("a", "int", 2)))
    assert DoseOption("n", "float", 1).default == 1.0 and DoseOption("n", "float", None).default is None


def test_describe_is_json_and_complete(test_registry):
    described = json.loads(json.dumps(test_registry.describe()))
    assert {k: described[k] for k in ("name", "description", "stochastic", "provides_uncertainty")} == {
        "name": "test-kernel", "description": "a kernel-like test method", "stochastic": False,
        "provides_uncertainty": False}
    by_name = {o["name"]: o for o in described["options"]}
    assert by_name["component"]["choices"] == ["total", "electron", "photon"]
    assert by_name["air_threshold_g_cm3"] == {
        "name": "air_threshold_g_cm3", "flag": "--air-threshold-g-cm3", "type": "float", "default": 0.1,
        "choices": [], "unit": "g/cm3", "help": "no dose below this density", "minimum": 0, "maximum": 1,
        "allowed": "a number >= 0 and <= 1 in g/cm3"}
    assert get_dose_method("mc").describe()["options"][0]["type"] == "bool"
    assert get_dose_method("led").describe()["options"][0]["default"] == "electron"


def test_compute_dose_hands_the_method_resolved_options(test_registry):
    ct, activity = phantom()
    request = DoseRequest(activity, ct, options={"batches": "2e1"})
    compute_dose("test-kernel", request)
    assert SEEN[-1] == {"component": "total", "kernel": "", "air_threshold_g_cm3": 0.1, "fraction": 0.5,
                        "batches": 20, "normalise": True}
    assert request.options == {"batches": "2e1"}  # the caller's request is not changed
    with pytest.raises(InputFormatError, match="options.component must be one of"):
        compute_dose("test-kernel", DoseRequest(activity, ct, options={"component": "all"}))


# ---------------------------------------------------------------------------------------------- entry points
class FakeEntryPoint:
    def __init__(self, name, value, load):
        self.name, self.value, self._load = name, value, load

    def load(self):
        return self._load()


class FakeEntryPoints(list):
    def select(self, group):
        return [ep for ep in self if group == registry.ENTRY_POINT_GROUP]


def _broken():
    raise ImportError("No module named 'missing_dependency'")


def test_plugins_are_loaded_on_first_use_and_a_failing_one_is_skipped(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    instance = DoseMethod("plugin-instance", "a DoseMethod instance", _record,
                          options=(DoseOption("level", "int", 1),))
    factory_made = DoseMethod("plugin-factory", "from a factory", _record)
    self_registering = DoseMethod("plugin-self", "registers itself", _record)
    points = FakeEntryPoints([
        FakeEntryPoint("good", "pkg:METHOD", lambda: instance),
        FakeEntryPoint("factory", "pkg:make", lambda: (lambda: factory_made)),
        FakeEntryPoint("itself", "pkg.module", lambda: (lambda: register_dose_method(self_registering) and None)),
        FakeEntryPoint("broken", "broken_pkg:METHOD", _broken),
        FakeEntryPoint("wrong", "pkg:NOT_A_METHOD", lambda: 42),
        FakeEntryPoint("clash", "pkg:LED", lambda: DoseMethod("led", "a second led", _record)),
    ])
    calls = []

    def fake_entry_points(**kwargs):
        calls.append(kwargs)
        return points

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", fake_entry_points)
    with collect_qc() as log:
        names = [m.name for m in available_dose_methods()]
        available_dose_methods()  # loaded once
    assert len(calls) == 1
    assert {"led", "mc", "plugin-instance", "plugin-factory", "plugin-self"} <= set(names)
    assert get_dose_method("led").description != "a second led"  # the built-in method is kept
    failed = [w for w in log if w.code == "dose_plugin_failed"]
    assert sorted(w.details["entry_point"] for w in failed) == ["broken", "clash", "wrong"]
    broken = next(w for w in failed if w.details["entry_point"] == "broken")
    assert "missing_dependency" in broken.message and "built-in methods are available" in broken.message
    assert get_dose_method("plugin-instance").resolve_options({}) == {"level": 1}


def test_plugins_that_cannot_be_listed_leave_the_built_ins(monkeypatch):
    monkeypatch.setattr(registry, "_plugins_loaded", False)

    def broken(**kwargs):
        raise RuntimeError("corrupt metadata")

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", broken)
    with collect_qc() as log:
        assert get_dose_method("led").name == "led"
    assert "dose_plugin_failed" in log.codes()


def test_python_3_9_entry_points_dict(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    method = DoseMethod("plugin-39", "old metadata API", _record)
    monkeypatch.setattr(registry.importlib.metadata, "entry_points",
                        lambda: {registry.ENTRY_POINT_GROUP: [FakeEntryPoint("p", "pkg:M", lambda: method)],
                                 "console_scripts": []})
    assert "plugin-39" in [m.name for m in available_dose_methods()]


# ------------------------------------------------------------------------------------------------- the CLI
def _help(capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(["dose", "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_dose_help_has_a_flag_for_every_option_of_every_method(test_registry, capsys):
    text = _help(capsys)
    for method in available_dose_methods():
        for option in method.options:
            assert option.flag in text, option.flag
    assert "--track-length-photons true|false" in text
    assert "led: electron|total (default electron)" in text
    assert "test-kernel: total|electron|photon (default total)" in text  # one flag, both methods described
    assert text.count("--component COMPONENT") == 2  # one flag: the usage line and its help
    assert "test-kernel: a number >= 0 and <= 1 in g/cm3 (default 0.1): no dose below this density" in text
    assert "mc: true|false (default false)" in text


def _dose_argv(tmp_path, method, *more):
    ct, activity = phantom()
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(activity, tmp_path / "a.nrrd")
    return ["dose", "--activity", str(tmp_path / "a.nrrd"), "--ct", str(tmp_path / "ct.nrrd"), "--method", method,
            "--out", str(tmp_path / "d.nrrd"), *more]


def test_a_flag_for_a_method_that_lacks_it_is_refused(test_registry, tmp_path, capsys):
    assert main(_dose_argv(tmp_path, "mc", "--component", "total", "--histories", "100")) == 1
    err = capsys.readouterr().err
    assert re.search(r"--component applies to [^;]*\bled, [^;]*test-kernel, not to mc \(its options: "
                     r"--track-length-photons, --electron-range-rejection, --uncertainty-goal, --time-limit-s\)", err), err
    assert not (tmp_path / "d.nrrd").exists()
    assert main(_dose_argv(tmp_path, "led", "--track-length-photons", "true", "--kernel", "k.npz")) == 1
    err = capsys.readouterr().err
    assert re.search(r"--track-length-photons applies to mc\b", err) and "not to led (its options: --component)" in err
    assert re.search(r"--kernel applies to [^;]*test-kernel\b", err)


def test_flag_values_are_checked_by_the_chosen_method(test_registry, tmp_path, capsys):
    assert main(_dose_argv(tmp_path, "led", "--component", "all")) == 1
    assert "--component must be one of 'electron', 'total'; got 'all'" in capsys.readouterr().err
    assert main(_dose_argv(tmp_path, "led", "--component", "photon")) == 1  # valid for test-kernel only
    assert "got 'photon'" in capsys.readouterr().err
    assert main(_dose_argv(tmp_path, "mc", "--track-length-photons", "maybe")) == 1
    assert "--track-length-photons must be true or false" in capsys.readouterr().err
    assert main(_dose_argv(tmp_path, "test-kernel", "--fraction", "10 %", "--normalise", "no",
                           "--air-threshold-g-cm3", "0.05")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"]["fraction"] == pytest.approx(0.1) and report["options"]["normalise"] is False
    assert SEEN[-1]["air_threshold_g_cm3"] == pytest.approx(0.05) and SEEN[-1]["component"] == "total"


def test_led_component_flag(tmp_path, capsys):
    assert main(_dose_argv(tmp_path, "led", "--component", "total")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"] == {"component": "total"} and report["info"]["component"] == "total"


def test_info_lists_methods_and_options(test_registry, capsys):
    assert main(["info", "--json"]) == 0
    methods = {m["name"]: m for m in json.loads(capsys.readouterr().out)["dose_methods"]}
    assert {"led", "mc", "test-kernel"} <= set(methods)
    led = methods["led"]["options"][0]
    assert (led["name"], led["type"], led["default"], led["choices"]) == ("component", "str", "electron",
                                                                           ["electron", "total"])
    assert methods["mc"]["stochastic"] and methods["mc"]["options"][0]["name"] == "track_length_photons"
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "component (--component): str, electron|total, default electron: energy deposited" in text
    assert "track_length_photons (--track-length-photons): bool, true|false, default false" in text
    assert "air_threshold_g_cm3 (--air-threshold-g-cm3): float, a number >= 0 and <= 1 in g/cm3, default 0.1" in text


# ---------------------------------------------------------------------------------------------- the pipeline
BASE = {"ct": "ct.nrrd", "timepoints": [{"time_h": 4, "spect": "a.nrrd"}]}


def test_pipeline_refuses_bad_option_values_up_front(test_registry):
    with pytest.raises(InputFormatError) as err:
        PipelineConfig.from_dict({**BASE, "dose": {"method": "led", "options": {"component": "all"},
                                                   "device": "gpu"}})
    text = str(err.value)
    assert "dose.options.component must be one of 'electron', 'total'; got 'all'" in text
    assert "dose.device must be auto" in text  # reported together
    with pytest.raises(InputFormatError, match=r"dose.options.batches must be a whole number >= 1"):
        PipelineConfig.from_dict({**BASE, "dose": {"method": "test-kernel", "options": {"batches": "0"}}})


def test_pipeline_converts_option_text(test_registry):
    config = PipelineConfig.from_dict({**BASE, "dose": {"method": "test-kernel", "options": {
        "fraction": "10 %", "normalise": "yes", "kernel": "2024", "batches": "1e1"}}})
    assert config.dose.options == {"fraction": pytest.approx(0.1), "normalise": True, "kernel": "2024",
                                   "batches": 10}
    config = PipelineConfig.from_dict({**BASE, "dose": {"method": "mc", "options": {"track_length_photons": "true"}}})
    assert config.dose.options == {"track_length_photons": True}
