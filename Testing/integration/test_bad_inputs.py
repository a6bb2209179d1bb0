"""Bad-input battery: every command meets wrong, damaged or dangerous inputs and must fail (or warn) cleanly.

Table-driven: each Case gives an argv builder, the expected exit status and a regex the stderr must match (the
message names the problem). For EVERY case the harness also asserts: no traceback; every file under the case's
input folder is byte-identical afterwards (and none appeared or disappeared, symlinks still symlinks); no staging
folder is left behind; no output written holds NaN/Inf (volumes read back with read_volume; CSV/JSON/Markdown
text without 'nan'/'inf' tokens); a failure prints 'voxeldosimetry CMD: error: ...'; and every warning line has the
form 'voxeldosimetry CMD: warning: [code] message'. The CLI is called in process (`main([...])`) except for the cases marked
`console=True`, which run the installed `voxeldosimetry` console script in a subprocess.
(Reliability issue, deliverable 8; the policies are in docs/RELIABILITY.md.)
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from VoxelDosimetryLib.cli.main import main
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.io.safe_write import STAGING_PREFIX
from VoxelDosimetryLib.simulate import build_virtual_patient
from VoxelDosimetryLib.simulate.ct_based_case import build_case_from_ct
from VoxelDosimetryLib.volume import Volume

SHAPE = (12, 12, 12)
SPACING = (4.0, 4.0, 4.0)
ORIGIN = (-22.0, -22.0, -22.0)
BODY = (slice(2, 10), slice(2, 10), slice(2, 10))  # water cube inside air
HOT = (slice(5, 7), slice(5, 7), slice(5, 7))
NAN_VOXELS = ((6, 5, 4), (6, 6, 4), (7, 7, 7))  # (z, y, x): first in C order is (i, j, k) = (4, 5, 6)
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mhd", ".mha", ".h33")
TEXT_SUFFIXES = (".csv", ".json", ".md", ".txt", ".tfm", ".yaml", ".yml", ".py")
NON_FINITE_TOKEN = re.compile(r"(?<![A-Za-z_])(nan|[+-]?inf(inity)?)(?![A-Za-z_])", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------ inputs
def _vol(array, quantity="unknown", unit=None) -> Volume:
    return Volume(np.asarray(array, dtype=np.float32), spacing=SPACING, origin=ORIGIN, quantity=quantity, unit=unit)


@dataclass
class Assets:
    """Small inputs built once: a 12^3 CT (water cube in air), activity (Bq/mL), labels, names, dose; a case."""

    folder: Path
    ct: Volume
    activity: Volume
    labels: Volume
    dose: Volume
    case: Path  # pipeline case folder (counts SPECTs, 3 timepoints), built with build_case_from_ct


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Assets:
    folder = tmp_path_factory.mktemp("bad_inputs_assets")
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[BODY] = 0.0
    act = np.zeros(SHAPE, np.float32)
    act[BODY] = 1000.0
    act[HOT] = 5000.0
    lab = np.zeros(SHAPE, np.uint8)
    lab[3:6, 3:9, 3:9] = 1
    lab[6:9, 3:9, 3:9] = 2
    ct = _vol(hu, "ct", "HU")
    activity = _vol(act, "activity_concentration", "Bq/mL")
    labels = Volume(lab, spacing=SPACING, origin=ORIGIN, quantity="labels")
    dose = _vol(act * 1e-3, "dose", "Gy")
    patient = build_virtual_patient(8.0)
    case = folder / "case"
    build_case_from_ct(patient.ct, patient.labels, patient.label_names, case, times_h=(4, 24, 96),
                       spect_voxel_mm=8.0, misregistration_mm=None, spect_unit="counts")
    return Assets(folder, ct, activity, labels, dose, case)


@dataclass
class Ctx:
    """One case's folders: `inp` holds its inputs (checked unchanged afterwards), `out` receives outputs."""

    root: Path
    assets: Assets
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.inp = self.root / "inputs"
        self.out = self.root / "outputs"
        self.inp.mkdir()
        self.out.mkdir()

    def put(self, name: str, volume: Volume | str | None = None, **options) -> str:
        """Write an input volume (default: the asset of that stem) into the input folder; returns its path."""
        if volume is None or isinstance(volume, str):
            volume = getattr(self.assets, volume or name.split(".")[0])
        return str(write_volume(volume, self.inp / name, **options))

    def ct(self) -> str:
        return self.put("ct.nrrd", "ct")

    def act(self, name: str = "act.nrrd") -> str:
        return self.put(name, "activity")

    def text(self, name: str, content: str) -> str:
        path = self.inp / name
        path.write_text(content, encoding="utf-8")
        return str(path)

    def case(self) -> str:
        """A copy of the pipeline case folder in the input folder."""
        return str(shutil.copytree(self.assets.case, self.inp / "case"))

    def o(self, name: str) -> str:
        return str(self.out / name)


def _activity_with(values: dict, base: Volume) -> Volume:
    array = base.array.copy()
    for index, value in values.items():
        array[index] = value
    return base.with_array(array)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict:
    """Every entry under `folder`: symlinks by target, files by sha256 (hard links by content), folders by name."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_file():
            state[key] = ("file", _sha(path))
        else:
            state[key] = ("dir",)
    return state


def assert_outputs_finite(folder: Path) -> None:
    """No volume under `folder` holds NaN/Inf and no text output shows a 'nan'/'inf' token."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        name = path.name.lower()
        if name.endswith(VOLUME_SUFFIXES):
            volume = read_volume(path)
            assert np.isfinite(volume.array).all(), f"{path} holds non-finite voxels"
        elif name.endswith(TEXT_SUFFIXES):
            match = NON_FINITE_TOKEN.search(path.read_text(encoding="utf-8", errors="replace"))
            assert match is None, f"{path} holds the non-finite token {match.group(0)!r}"


# ------------------------------------------------------------------------------------------------ case table
@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list]  # builds the inputs in ctx.inp and returns the command line (no program name)
    code: int  # expected exit status
    stderr: str  # regex the stderr must match (re.search, DOTALL): the message names the problem
    check: Callable[[Ctx, str, str], None] | None = None  # extra assertions (ctx, stdout, stderr)
    console: bool = False  # run the `voxeldosimetry` console script in a subprocess


CASES: list[Case] = []


def case(id: str, code: int, stderr: str, check=None, console: bool = False):
    def register(builder):
        CASES.append(Case(id, builder, code, stderr, check, console))
        return builder
    return register


def refused_overwrite(option: str = r"\S+") -> str:
    return rf"error: Output path problem.*{option} .*would overwrite the input"


# --- convert: output paths -----------------------------------------------------------------------------------
@case("convert-same-path", 1, refused_overwrite("OUT"), console=True)
def _(ctx):
    a = ctx.act("a.nrrd")
    return ["convert", a, a]


@case("convert-out-symlink-to-input", 1, refused_overwrite("OUT"))
def _(ctx):
    a = ctx.act("a.nrrd")
    os.symlink("a.nrrd", ctx.inp / "link.nrrd")
    return ["convert", a, str(ctx.inp / "link.nrrd")]


@case("convert-in-symlink-out-target", 1, refused_overwrite("OUT"))
def _(ctx):
    a = ctx.act("a.nrrd")
    os.symlink("a.nrrd", ctx.inp / "link.nrrd")
    return ["convert", str(ctx.inp / "link.nrrd"), a]


@case("convert-out-hard-link-to-input", 1, refused_overwrite("OUT"))
def _(ctx):
    a = ctx.act("a.nrrd")
    os.link(a, ctx.inp / "hard.nrrd")
    return ["convert", a, str(ctx.inp / "hard.nrrd")]


@case("convert-out-in-folder-below-a-file", 1, r"error: .*cannot write there.*blocker\.txt is a file, not a folder")
def _(ctx):
    (ctx.out / "blocker.txt").write_text("not a folder\n")
    return ["convert", ctx.act(), ctx.o("blocker.txt/sub/a.nrrd")]


@case("convert-unsupported-extension", 1, r"error: .*OUT .*a\.csv: unsupported extension '\.csv'")
def _(ctx):
    return ["convert", ctx.act(), ctx.o("a.csv")]


def _existing_output(ctx) -> Path:
    """An output file that exists but was not made by convert (written outside any command: no ledger)."""
    other = _vol(np.full(SHAPE, 7.0), "activity_concentration", "Bq/mL")
    path = Path(write_volume(other, ctx.out / "existing.nrrd"))
    ctx.extra["existing_sha"] = _sha(path)
    return path


def _existing_unchanged(ctx, out, err):
    assert _sha(ctx.out / "existing.nrrd") == ctx.extra["existing_sha"], "the existing output was modified"


def _existing_replaced(ctx, out, err):
    np.testing.assert_array_equal(read_volume(ctx.out / "existing.nrrd").array, ctx.assets.activity.array)


@case("convert-existing-output-not-ours", 1, r"error: .*existing\.nrrd: the file exists and was not made by this "
      r"command.*--force", check=_existing_unchanged)
def _(ctx):
    return ["convert", ctx.act(), str(_existing_output(ctx))]


@case("convert-existing-output-with-force", 0, r"converted", check=_existing_replaced)
def _(ctx):
    return ["convert", ctx.act(), str(_existing_output(ctx)), "--force"]


def _rerun_rewrote(ctx, out, err):
    np.testing.assert_array_equal(read_volume(ctx.out / "a.nii.gz").array, ctx.assets.activity.array)


@case("convert-rerun-same-output", 0, r"converted .* -> .*a\.nii\.gz", check=_rerun_rewrote)
def _(ctx):
    argv = ["convert", ctx.act(), ctx.o("a.nii.gz")]
    assert main(argv) == 0  # the first run; the second (the case) replaces its own output
    return argv


# --- convert: damaged or missing inputs ----------------------------------------------------------------------
@case("convert-truncated-nrrd", 1, r"error: .*truncated\.nrrd")
def _(ctx):
    path = Path(ctx.put("truncated.nrrd", "activity", compress=False))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    return ["convert", str(path), ctx.o("x.nrrd")]


@case("convert-nrrd-absurd-declared-size", 1, r"error: .*absurd\.nrrd")
def _(ctx):
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 100000 100000 100000\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    path = ctx.inp / "absurd.nrrd"
    path.write_bytes(header.encode("ascii") + bytes(4096))
    return ["convert", str(path), ctx.o("x.nrrd")]


@case("convert-mhd-missing-raw", 1, r"error: .*noraw\.(mhd|raw)")
def _(ctx):
    path = Path(ctx.put("noraw.mhd", "activity"))
    for data in ctx.inp.glob("noraw.*raw"):
        data.unlink()
    return ["convert", str(path), ctx.o("x.nrrd")]


@case("convert-empty-zip", 1, r"error: .*empty\.zip")
def _(ctx):
    with zipfile.ZipFile(ctx.inp / "empty.zip", "w"):
        pass
    return ["convert", str(ctx.inp / "empty.zip"), ctx.o("x.nrrd")]


@case("convert-folder-without-image", 1, r"error: .*noimage")
def _(ctx):
    (ctx.inp / "noimage").mkdir()
    (ctx.inp / "noimage" / "readme.txt").write_text("no image here\n")
    return ["convert", str(ctx.inp / "noimage"), ctx.o("x.nrrd")]


@case("convert-random-bytes-nii-gz", 1, r"error: .*random\.nii\.gz")
def _(ctx):
    (ctx.inp / "random.nii.gz").write_bytes(np.random.default_rng(0).bytes(4096))
    return ["convert", str(ctx.inp / "random.nii.gz"), ctx.o("x.nrrd")]


@case("convert-missing-input", 1, r"error: .*No such file or folder: .*missing\.nrrd")
def _(ctx):
    return ["convert", str(ctx.inp / "missing.nrrd"), ctx.o("x.nrrd")]


# --- dose ----------------------------------------------------------------------------------------------------
def dose_argv(ctx, activity: str, method: str = "led", *more: str, out: str | None = None) -> list:
    return ["dose", "--activity", activity, "--ct", ctx.ct(), "--method", method, "--out", out or ctx.o("dose.nrrd"),
            *more]


@case("dose-led-nan-activity", 1,
      r"error: The activity map holds 3 NaN or infinite voxel\(s\), the first at voxel \(i, j, k\) = \(4, 5, 6\) "
      r"at LPS \(-6\.0, -2\.0, 2\.0\) mm")
def _(ctx):
    nan = _activity_with({v: np.nan for v in NAN_VOXELS}, ctx.assets.activity)
    return dose_argv(ctx, ctx.put("nan_act.nrrd", nan))


@case("dose-led-inf-activity", 1, r"error: The activity map holds 1 NaN or infinite voxel")
def _(ctx):
    return dose_argv(ctx, ctx.put("inf_act.nrrd", _activity_with({(5, 5, 5): np.inf}, ctx.assets.activity)))


@case("dose-nan-ct", 1, r"error: The CT holds .*NaN")
def _(ctx):
    ct = Path(ctx.put("nan_ct.nrrd", _activity_with({(0, 0, 0): np.nan}, ctx.assets.ct)))
    return ["dose", "--activity", ctx.act(), "--ct", str(ct), "--method", "led", "--out", ctx.o("dose.nrrd")]


def _all_negative(ctx) -> str:
    return ctx.put("negative_act.nrrd", ctx.assets.activity.with_array(-ctx.assets.activity.array))


@case("dose-led-all-negative-activity", 1, r"error: The activity map has \d+ negative voxel.*all of its non-zero "
      r"voxels are negative")
def _(ctx):
    return dose_argv(ctx, _all_negative(ctx))


@case("dose-mc-all-negative-activity", 1, r"error: The activity map has \d+ negative voxel.*all of its non-zero "
      r"voxels are negative")
def _(ctx):
    return dose_argv(ctx, _all_negative(ctx), "mc", "--histories", "1000", "--device", "cpu")


def _negative_fraction(ctx, fraction_of_body: float) -> str:
    array = ctx.assets.activity.array.copy()
    array[2:4, 2:10, 2:10] = -1000.0 * fraction_of_body  # 2 of 8 body slices negative
    return ctx.put("noisy_act.nrrd", ctx.assets.activity.with_array(array))


def _dose_finite_non_negative(ctx, out, err):
    dose = read_volume(ctx.out / "dose.nrrd").array
    assert np.isfinite(dose).all() and dose.min() >= 0 and dose.max() > 0


@case("dose-small-negatives-zeroed", 0, r"voxeldosimetry dose: warning: \[negative_voxels_zeroed\] The activity map: "
      r"128 negative voxel", check=_dose_finite_non_negative)
def _(ctx):
    return dose_argv(ctx, _negative_fraction(ctx, 0.1))


@case("dose-large-negative-fraction-refused", 1, r"error: The activity map has 128 negative voxel.*more than the 10 % "
      r".*--max-negative-fraction")
def _(ctx):
    return dose_argv(ctx, _negative_fraction(ctx, 2.0))


@case("dose-large-negative-fraction-accepted-by-flag", 0, r"warning: \[negative_voxels_zeroed\]",
      check=_dose_finite_non_negative)
def _(ctx):
    return dose_argv(ctx, _negative_fraction(ctx, 2.0), "led", "--max-negative-fraction", "70 %")  # it is 61.5 %


@case("dose-out-is-the-activity-input", 1, refused_overwrite("--out"))
def _(ctx):
    act = ctx.act("act.nrrd")
    return dose_argv(ctx, act, out=act)


@case("dose-uncertainty-is-the-ct-input", 1, refused_overwrite("--uncertainty"))
def _(ctx):
    argv = dose_argv(ctx, ctx.act(), "mc", "--histories", "1000", "--device", "cpu")
    return argv + ["--uncertainty", argv[4]]  # argv[4] is the --ct path


@case("dose-two-outputs-one-file", 1, r"error: .*--uncertainty .*dose\.nrrd: the same file as --out")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "mc", "--histories", "1000", "--device", "cpu", "--uncertainty",
                     ctx.o("dose.nrrd"))


@case("dose-unknown-method", 1, r"error: .*'nope'.*led.*mc")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "nope")


@case("dose-unknown-nuclide", 1, r"error: .*Xx-999")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--nuclide", "Xx-999")


@case("dose-led-cannot-give-uncertainty", 1, r"error: Method 'led' gives no uncertainty map")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--uncertainty", ctx.o("unc.nrrd"))


@case("dose-histories-in-e-notation-parses", 0, r"^(?!.*error)")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "mc", "--histories", "1e3", "--device", "cpu")


@case("dose-histories-not-an-integer", 2, r"voxeldosimetry dose: error: argument --histories: .*2\.5", console=True)
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--histories", "2.5")


@case("dose-histories-negative", 2, r"error: argument --histories: .*-5")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--histories", "-5")


@case("dose-ct-offset-nan", 2, r"error: argument --ct-offset-hu: .*nan")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--ct-offset-hu", "nan")


def _no_dose_in_air(ctx, out, err):
    dose = read_volume(ctx.out / "dose.nrrd").array
    assert dose[0, 0, 0] == 0.0 and dose[0, 0, 1] == 0.0, "dose reported in the air voxel holding activity"
    assert dose[BODY].min() > 0 and np.isfinite(dose).all()


@case("dose-activity-in-air", 0, r"voxeldosimetry dose: warning: \[activity_in_air\] .*% of the activity lies in air "
      r"outside the body", check=_no_dose_in_air)
def _(ctx):
    return dose_argv(ctx, ctx.put("air_act.nrrd", _activity_with({(0, 0, 0): 800.0}, ctx.assets.activity)))


@case("dose-spect-given-as-ct", 0, r"voxeldosimetry dose: warning: \[ct_looks_like_activity\]")
def _(ctx):
    spect = ctx.put("spect_as_ct.nrrd", _vol(ctx.assets.activity.array))  # a file that does not say what it holds
    return ["dose", "--activity", ctx.act(), "--ct", spect, "--method", "led", "--out", ctx.o("dose.nrrd")]


# --- tia -----------------------------------------------------------------------------------------------------
def _timepoints(ctx, times, decay_per_time: float = 0.1) -> list:
    argv = []
    for i, t in enumerate(times):
        image = ctx.assets.activity.with_array(ctx.assets.activity.array * np.float32(np.exp(-decay_per_time * t)))
        argv += ["--image", ctx.put(f"tp{i}.nrrd", image), "--time-h", str(t)]
    return argv


@case("tia-out-is-an-image-input", 1, refused_overwrite("--out"))
def _(ctx):
    argv = _timepoints(ctx, (4, 24))
    return ["tia", *argv, "--out", argv[5]]  # argv[5]: the second --image


@case("tia-image-and-time-counts-differ", 1, r"error: 2 --image but 1 --time-h")
def _(ctx):
    argv = _timepoints(ctx, (4, 24))
    return ["tia", "--image", argv[1], "--image", argv[5], "--time-h", "4", "--out", ctx.o("tia.nrrd")]


@case("tia-negative-time", 2, r"error: argument --time-h: .*-4")
def _(ctx):
    return ["tia", *_timepoints(ctx, (4,)), "--image", ctx.act("late.nrrd"), "--time-h", "-4", "--out",
            ctx.o("tia.nrrd")]


@case("tia-zero-time", 2, r"error: argument --time-h: .*\b0\b")
def _(ctx):
    return ["tia", "--image", ctx.act(), "--time-h", "0", "--out", ctx.o("tia.nrrd")]


@case("tia-times-out-of-order", 1, r"error: .*strictly increasing")
def _(ctx):
    return ["tia", *_timepoints(ctx, (24, 4)), "--out", ctx.o("tia.nrrd")]


@case("tia-nan-image", 1, r"error: [^\n]*timepoint 2[^\n]*\b3 NaN[^\n]*LPS \(-6\.0, -2\.0, 2\.0\) mm")
def _(ctx):
    nan = _activity_with({v: np.nan for v in NAN_VOXELS}, ctx.assets.activity)
    return ["tia", "--image", ctx.act(), "--time-h", "4", "--image", ctx.put("nan.nrrd", nan), "--time-h", "24",
            "--out", ctx.o("tia.nrrd")]


@case("tia-report-unsupported-extension", 1, r"error: .*--report .*report\.csv: unsupported extension")
def _(ctx):
    return ["tia", *_timepoints(ctx, (4, 24)), "--out", ctx.o("tia.nrrd"), "--report", ctx.o("report.csv")]


@case("tia-times-typed-in-days", 0, r"voxeldosimetry tia: warning: \[times_look_like_days\]")
def _(ctx):
    # Lu-177 images at 1, 4 and 7 DAYS (activity falling by days) typed as hours
    return ["tia", *_timepoints(ctx, (1, 4, 7), decay_per_time=np.log(2) / 6.65), "--out", ctx.o("tia.nrrd")]


# --- register ------------------------------------------------------------------------------------------------
@case("register-transform-unsupported-extension", 1,
      r"error: Output path problem.*--out-transform .*transform\.nrrd: unsupported extension '\.nrrd'; use \.tfm")
def _(ctx):
    return ["register", "--fixed", ctx.ct(), "--moving", ctx.put("moving.nrrd", "ct"), "--out-transform",
            ctx.o("transform.nrrd")]


@case("register-out-ct-is-the-moving-input", 1, refused_overwrite("--out-ct"))
def _(ctx):
    moving = ctx.put("moving.nrrd", "ct")
    return ["register", "--fixed", ctx.ct(), "--moving", moving, "--out-transform", ctx.o("t.tfm"), "--out-ct", moving]


# --- voi -----------------------------------------------------------------------------------------------------
def _names(ctx, names: dict) -> str:
    return ctx.text("names.json", json.dumps(names))


@case("voi-out-with-volume-extension", 1, r"error: .*--out .*dose\.nrrd: unsupported extension '\.nrrd'; use \.csv")
def _(ctx):
    dose = ctx.put("dose.nrrd")
    return ["voi", "--dose", dose, "--labels", ctx.put("labels.nrrd"), "--out", dose]


@case("voi-json-is-the-names-input", 1, refused_overwrite("--json"))
def _(ctx):
    names = _names(ctx, {"1": "tumour", "2": "node"})
    return ["voi", "--dose", ctx.put("dose.nrrd"), "--labels", ctx.put("labels.nrrd"), "--names", names,
            "--out", ctx.o("table.csv"), "--json", names]


@case("voi-labels-from-another-patient", 0, r"voxeldosimetry voi: warning: \[segment_density_implausible\].*liver")
def _(ctx):
    other = np.zeros(SHAPE, np.uint8)
    other[0:2, 0:12, 0:12] = 1  # this patient's air: the "liver" of someone else's label map
    other[2:4, 3:9, 3:9] = 1
    labels = Volume(other, spacing=SPACING, origin=ORIGIN, quantity="labels")
    return ["voi", "--dose", ctx.put("dose.nrrd"), "--ct", ctx.ct(), "--labels", ctx.put("other_labels.nrrd", labels),
            "--names", _names(ctx, {"1": "liver"}), "--out", ctx.o("table.csv")]


@case("voi-dose-without-unit", 1, r"error: .*undeclared_dose\.nrrd does not say what it holds.*--dose-unit")
def _(ctx):
    return ["voi", "--dose", ctx.put("undeclared_dose.nrrd", _vol(ctx.assets.dose.array)), "--labels",
            ctx.put("labels.nrrd"), "--out", ctx.o("table.csv")]


@case("voi-missing-labels", 1, r"error: .*no_labels\.nrrd")
def _(ctx):
    return ["voi", "--dose", ctx.put("dose.nrrd"), "--labels", str(ctx.inp / "no_labels.nrrd"), "--out",
            ctx.o("table.csv")]


# --- compare -------------------------------------------------------------------------------------------------
@case("compare-out-is-the-reference", 1, r"error: .*--out .*reference\.nrrd: (unsupported extension|would overwrite "
      r"the input)")
def _(ctx):
    reference = ctx.put("reference.nrrd", "dose")
    return ["compare", "--test", ctx.put("test.nrrd", "dose"), "--reference", reference, "--out", reference]


@case("compare-grid-mismatch", 1, r"error: .*(grid|shape).*--resample")
def _(ctx):
    small = Volume(ctx.assets.dose.array[:10, :10, :10], spacing=SPACING, origin=ORIGIN, quantity="dose", unit="Gy")
    return ["compare", "--test", ctx.put("test.nrrd", small), "--reference", ctx.put("reference.nrrd", "dose"),
            "--out", ctx.o("report.md")]


@case("compare-nan-test-dose", 1, r"error: The test dose map holds NaN")
def _(ctx):
    nan = _activity_with({v: np.nan for v in NAN_VOXELS}, ctx.assets.dose)
    return ["compare", "--test", ctx.put("test.nrrd", nan), "--reference", ctx.put("reference.nrrd", "dose"),
            "--out", ctx.o("report.md")]


# --- run -----------------------------------------------------------------------------------------------------
def _config(ctx, text: str) -> str:
    ctx.case()
    return ctx.text("config.yaml", text)


def _run_ok(ctx, out, err):
    manifest = json.loads((ctx.out / "run" / "run.json").read_text())
    assert manifest["config"]["administered_activity_bq"] == 7.4e9
    assert manifest["config"]["dose"]["histories"] == 10000


@case("run-yaml-numbers-in-e-notation", 0, r"\[run 100%\] report: done", check=_run_ok)
def _(ctx):
    config = _config(ctx, "case: case\nadministered_activity_bq: 7.4e9\ndose: {method: led, histories: 1e4}\n"
                          "registration: none\n")
    return ["run", config, "--out", ctx.o("run")]


def _all_problems_named(ctx, out, err):
    for word in ("Xx-999", "nonsense", "dose.histories", "sideways", "colour"):
        assert word in err, f"{word!r} missing from the one error message"


@case("run-config-with-several-mistakes", 1, r"error: Invalid pipeline config, [5-9] problems:", check=_all_problems_named)
def _(ctx):
    config = _config(ctx, "case: case\nnuclide: Xx-999\ntime_integration: {model: nonsense}\n"
                          "dose: {method: led, histories: -5, order: sideways}\ncolour: blue\n")
    return ["run", config, "--out", ctx.o("run")]


@case("run-histories-flag-in-e-notation", 0, r"\[run 100%\] report: done")
def _(ctx):
    return ["run", ctx.case(), "--out", ctx.o("run"), "--method", "led", "--histories", "2e6", "--registration", "none"]


@case("run-counts-declared-as-bq-per-ml", 0,
      r"voxeldosimetry run: warning: (\[activity_total_implausible\]|\[[a-z_]+\][^\n]*administered)")
def _(ctx):
    case_folder = Path(ctx.case())
    lines = ["case_id: counts-as-bqml", "ct: case/ct.nrrd", "administered_activity_bq: 7.4e9",
             "segments: {labels: case/labels.nrrd}", "registration: none", "timepoints:"]
    for hours in (4, 24, 96):
        counts = read_volume(case_folder / f"spect_{hours}h.nrrd")
        assert counts.quantity == "counts"
        declared = counts.replace(quantity="activity_concentration", unit="Bq/mL", metadata={})
        lines.append(f"  - {{time_h: {hours}, spect: {ctx.put(f'spect_{hours}h_bqml.nrrd', declared)}}}")
    return ["run", ctx.text("config.yaml", "\n".join(lines) + "\n"), "--out", ctx.o("run")]


@case("run-times-typed-in-days", 0, r"voxeldosimetry run: warning: \[times_look_like_days\]")
def _(ctx):
    config = _config(ctx, "case: case\nregistration: none\ntimepoints:\n"
                          "  - {time_h: 0.17, spect: case/spect_4h.nrrd}\n  - {time_h: 1, spect: case/spect_24h.nrrd}\n"
                          "  - {time_h: 4, spect: case/spect_96h.nrrd}\n")
    return ["run", config, "--out", ctx.o("run")]


def _names_the_timepoint(ctx, out, err):
    line = next(line for line in err.splitlines() if ": error: " in line)
    assert "spect_24h" in line or "24 h" in line, f"the error does not say which SPECT: {line}"


@case("run-nan-in-a-spect", 1, r"error: [^\n]*\b1 NaN[^\n]*LPS \(", check=_names_the_timepoint)
def _(ctx):
    case_folder = Path(ctx.case())
    spect = read_volume(case_folder / "spect_24h.nrrd")
    array = spect.array.astype(np.float32)
    array[tuple(s // 2 for s in array.shape)] = np.nan
    (case_folder / "spect_24h.nrrd").unlink()
    write_volume(spect.with_array(array), case_folder / "spect_24h.nrrd")
    return ["run", str(case_folder), "--out", ctx.o("run")]


@case("run-out-is-the-case-folder", 1, refused_overwrite("(--out|output folder)"))
def _(ctx):
    folder = ctx.case()
    return ["run", folder, "--out", folder]


@case("run-folder-without-case-json", 1, r"error: .*without case\.json")
def _(ctx):
    (ctx.inp / "notacase").mkdir()
    return ["run", str(ctx.inp / "notacase"), "--out", ctx.o("run")]


@case("run-config-input-files-missing", 1, r"error: .*not found.*missing_ct\.nrrd")
def _(ctx):
    config = ctx.text("config.yaml", "ct: missing_ct.nrrd\ntimepoints:\n  - {time_h: 24, spect: missing_spect.nrrd}\n")
    return ["run", config, "--out", ctx.o("run")]


@case("run-config-not-yaml", 1, r"error: .*broken\.yaml is not valid YAML")
def _(ctx):
    return ["run", ctx.text("broken.yaml", "ct: [unclosed\n  timepoints: {\n"), "--out", ctx.o("run")]


# --- gate ----------------------------------------------------------------------------------------------------
@case("gate-export-out-is-the-case-folder", 1, refused_overwrite("--out"))
def _(ctx):
    folder = ctx.case()
    return ["gate", "export", "--case", folder, "--out", folder]


@case("gate-import-missing-gate-folder", 1, r"voxeldosimetry gate import: error: .*no_gate_output")
def _(ctx):
    return ["gate", "import", str(ctx.inp / "no_gate_output"), "--case", ctx.case()]


@case("gate-export-without-inputs", 1, r"error: Give --case CASE_DIR, or both --ct")
def _(ctx):
    return ["gate", "export", "--out", ctx.o("gate")]


# --- declared quantities and units win over options (docs/RELIABILITY.md) -----------------------------------
def _dose_rate(ctx) -> str:
    """d3.nrrd: a dose-rate image that declares Gy/s."""
    return ctx.put("d3.nrrd", _vol(ctx.assets.activity.array * 1e-6, "dose_rate", "Gy/s"))


def _not_overridden(ctx, out, err):
    assert "Options only fill in what a file does not say" in err, err
    assert not list(ctx.out.glob("*.nrrd")) and not list(ctx.out.glob("*.csv")), "an output was written"


@case("convert-unit-contradicts-the-file", 1, r"error: \S*d3\.nrrd declares dose_rate \(Gy/s\), but --unit says "
      r"mGy/s \(reading its values as mGy/s would make them 1000 times lower\).*use --to-unit mGy/s",
      check=_not_overridden)
def _(ctx):
    return ["convert", _dose_rate(ctx), ctx.o("o.nrrd"), "--unit", "mGy/s"]


@case("convert-quantity-contradicts-the-file", 1, r"error: \S*ct\.nrrd declares ct \(HU\), but --quantity says dose "
      r"and --unit says Gy\..*add --relabel", check=_not_overridden)
def _(ctx):
    return ["convert", ctx.ct(), ctx.o("o.nrrd"), "--quantity", "dose", "--unit", "Gy"]


def _relabelled(ctx, out, err):
    volume = read_volume(ctx.out / "o.nrrd")
    assert (volume.quantity, volume.unit) == ("dose", "Gy")
    np.testing.assert_array_equal(volume.array, ctx.assets.ct.array)  # values unchanged


@case("convert-relabel-replaces-the-declaration", 0, r"relabelled \S*ct\.nrrd as dose \(Gy\); the values are "
      r"unchanged", check=_relabelled)
def _(ctx):
    return ["convert", ctx.ct(), ctx.o("o.nrrd"), "--relabel", "--quantity", "dose", "--unit", "Gy"]


@case("convert-relabel-without-quantity-or-unit", 1, r"error: --relabel replaces .*give at least one of them")
def _(ctx):
    return ["convert", ctx.ct(), ctx.o("o.nrrd"), "--relabel"]


def _filled(quantity: str, unit: str):
    def check(ctx, out, err):
        volume = read_volume(ctx.out / "o.nrrd")
        assert (volume.quantity, volume.unit) == (quantity, unit)
    return check


@case("convert-unit-fills-an-unlabelled-file", 0, r"converted", check=_filled("dose", "mGy"))
def _(ctx):
    return ["convert", ctx.put("bare.nrrd", _vol(ctx.assets.dose.array)), ctx.o("o.nrrd"), "--unit", "mGy"]


@case("convert-options-equal-to-the-file-accepted", 0, r"converted", check=_filled("activity_concentration", "Bq/mL"))
def _(ctx):
    return ["convert", ctx.act(), ctx.o("o.nrrd"), "--quantity", "activity_concentration", "--unit", "Bq/ml"]


@case("convert-activity-to-a-dicom-folder", 1, r"error: OUT \S*dicom_out .*DICOM output is a CT image series only "
      r"for now.*NRRD \(\.nrrd\) or NIfTI \(\.nii\.gz\)")
def _(ctx):
    return ["convert", ctx.act(), ctx.o("dicom_out")]


def _no_cli_option_named(*names: str):
    def check(ctx, out, err):
        for name in names:
            assert name not in err, f"the message names {name!r}, which is no option of this command: {err}"
    return check


@case("convert-dicom-slice-gap", 1, r"error: .*does not have uniform slice spacing.*missing slice.*Re-export the "
      r"complete series.*there is no command-line option for it", check=_no_cli_option_named("--spacing"))
def _(ctx):
    folder = Path(ctx.put("ct_dicom", "ct"))
    sorted(folder.glob("*.dcm"))[4].unlink()
    return ["convert", str(folder), ctx.o("x.nrrd")]


@case("voi-dose-unit-contradicts-the-file", 1, r"error: \S*d3\.nrrd declares dose_rate \(Gy/s\), but --dose-unit "
      r"says Gy\. .*Drop --dose-unit", check=_not_overridden)
def _(ctx):
    return ["voi", "--dose", _dose_rate(ctx), "--dose-unit", "Gy", "--labels", ctx.put("labels.nrrd"), "--out",
            ctx.o("table.csv")]


@case("voi-dose-unit-scaled-contradicts-the-file", 1, r"error: \S*d3\.nrrd declares dose_rate \(Gy/s\), but "
      r"--dose-unit says mGy/s \(reading its values as mGy/s would make them 1000 times lower\)")
def _(ctx):
    return ["voi", "--dose", _dose_rate(ctx), "--dose-unit", "mGy/s", "--labels", ctx.put("labels.nrrd"), "--out",
            ctx.o("table.csv")]


@case("voi-dose-unit-equal-to-the-file-accepted", 0, r"^(?!.*error)")
def _(ctx):
    return ["voi", "--dose", _dose_rate(ctx), "--dose-unit", "Gy/s", "--labels", ctx.put("labels.nrrd"), "--out",
            ctx.o("table.csv")]


@case("voi-labels-declared-activity", 1, r"error: \S*act\.nrrd declares activity_concentration \(Bq/mL\), but "
      r"--labels needs a label map")
def _(ctx):
    return ["voi", "--dose", ctx.put("dose.nrrd"), "--labels", ctx.act(), "--out", ctx.o("table.csv")]


@case("voi-dose-is-an-activity-map", 1, r"error: \S*act\.nrrd declares activity_concentration \(Bq/mL\), not a dose "
      r"\(Gy\) or dose rate \(Gy/s\).*voxeldosimetry dose", check=_no_cli_option_named("--quantity"))
def _(ctx):
    return ["voi", "--dose", ctx.act(), "--labels", ctx.put("labels.nrrd"), "--out", ctx.o("table.csv")]


def _names_used(ctx, out, err):
    table = (ctx.out / "table.csv").read_text(encoding="utf-8")
    assert "tumour" in table and "node" in table, table


@case("voi-names-from-a-run-label-names-json", 0, r"^(?!.*error)", check=_names_used)
def _(ctx):
    document = {"source": "labels.nrrd", "names": {"1": "tumour", "2": "node"}, "named_but_absent": []}
    return ["voi", "--dose", ctx.put("dose.nrrd"), "--labels", ctx.put("labels.nrrd"), "--names",
            _names(ctx, document), "--out", ctx.o("table.csv")]


@case("tia-quantity-contradicts-a-ct-file", 1, r"error: \S*ct\.nrrd declares ct \(HU\), but --quantity says "
      r"activity_concentration")
def _(ctx):
    return ["tia", "--image", ctx.ct(), "--time-h", "4", "--quantity", "activity_concentration", "--out",
            ctx.o("tia.nrrd")]


@case("dose-counts-given-as-activity", 1, r"error: \S*spect_counts\.nrrd holds counts \(counts\), but --activity "
      r"needs activity concentration \(Bq/mL\)\. Counts must be calibrated first: `voxeldosimetry tia .*"
      r"--sensitivity-cps-per-mbq.*voxeldosimetry run.*voxeldosimetry convert \S*spect_counts\.nrrd COPY\.nrrd "
      r"--relabel --quantity activity_concentration --unit Bq/mL", check=_no_cli_option_named("e.g. --quantity"))
def _(ctx):
    counts = _vol(ctx.assets.activity.array, "counts", "counts")
    return dose_argv(ctx, ctx.put("spect_counts.nrrd", counts))


@case("dose-unlabelled-activity", 1, r"error: \S*bare_act\.nrrd does not say what it holds, but --activity needs "
      r"activity concentration \(Bq/mL\)\. .*voxeldosimetry convert \S*bare_act\.nrrd COPY\.nrrd --quantity "
      r"activity_concentration --unit Bq/mL.*--total-activity-mbq")
def _(ctx):
    return dose_argv(ctx, ctx.put("bare_act.nrrd", _vol(ctx.assets.activity.array)))


@case("dose-histories-with-a-deterministic-method", 1, r"error: --histories applies to stochastic methods \(mc\); "
      r"led is deterministic")
def _(ctx):
    return dose_argv(ctx, ctx.act(), "led", "--histories", "1e6")


@case("dose-mc-histories-below-the-batches", 1, r"error: --histories must be at least 10 \(the uncertainty is "
      r"estimated from 10 batches\)", check=_no_cli_option_named("n_batches"))
def _(ctx):
    return dose_argv(ctx, ctx.act(), "mc", "--histories", "1", "--device", "cpu")


@case("register-moving-spect-without-out-spect", 1, r"error: --moving-spect needs --out-spect")
def _(ctx):
    return ["register", "--fixed", ctx.ct(), "--moving", ctx.put("moving.nrrd", "ct"), "--moving-spect", ctx.act(),
            "--out-transform", ctx.o("t.tfm")]


@case("register-all-output-problems-in-one-message", 1, r"error: Output path problem\(s\), found before any work "
      r"started: --out-transform \S*t\.nrrd: unsupported extension '\.nrrd'.*; --out-ct \S*moving\.nrrd: would "
      r"overwrite the input")
def _(ctx):
    moving = ctx.put("moving.nrrd", "ct")
    return ["register", "--fixed", ctx.ct(), "--moving", moving, "--out-transform", ctx.o("t.nrrd"), "--out-ct", moving]


@case("register-spect-quantity-contradicts-the-file", 1, r"error: \S*act\.nrrd declares activity_concentration "
      r"\(Bq/mL\), but --spect-quantity says counts")
def _(ctx):
    return ["register", "--fixed", ctx.ct(), "--moving", ctx.put("moving.nrrd", "ct"), "--moving-spect", ctx.act(),
            "--spect-quantity", "counts", "--out-transform", ctx.o("t.tfm"), "--out-spect", ctx.o("spect.nrrd")]


@case("compare-quantity-contradicts-the-files", 1, r"error: \S*reference\.nrrd declares dose \(Gy\), but --quantity "
      r"says dose_rate")
def _(ctx):
    return ["compare", "--test", ctx.put("test.nrrd", "dose"), "--reference", ctx.put("reference.nrrd", "dose"),
            "--quantity", "dose_rate", "--out", ctx.o("report.md")]


@case("compare-labels-declared-dose", 1, r"error: \S*labels_dose\.nrrd declares dose \(Gy\), but --labels needs a "
      r"label map")
def _(ctx):
    return ["compare", "--test", ctx.put("test.nrrd", "dose"), "--reference", ctx.put("reference.nrrd", "dose"),
            "--labels", ctx.put("labels_dose.nrrd", "dose"), "--out", ctx.o("report.md")]


@case("gate-export-ct-declared-activity", 1, r"voxeldosimetry gate export: error: \S*act\.nrrd declares "
      r"activity_concentration \(Bq/mL\), but --ct needs a CT in HU")
def _(ctx):
    return ["gate", "export", "--ct", ctx.act(), "--activity", ctx.act("source.nrrd"), "--out", ctx.o("gate")]


# --- demo ----------------------------------------------------------------------------------------------------
@case("demo-out-is-a-file", 1, r"voxeldosimetry demo: error: .*cannot write there.*demo\.txt is a file, not a folder")
def _(ctx):
    (ctx.out / "demo.txt").write_text("a file\n")
    return ["demo", "--out", ctx.o("demo.txt")]


@case("demo-from-ct-without-labels", 1, r"error: --from-ct needs --labels")
def _(ctx):
    return ["demo", "--from-ct", ctx.ct(), "--out", ctx.o("demo")]


# ------------------------------------------------------------------------------------------------ harness
def _console(argv: list) -> tuple[int, str, str]:
    script = Path(sys.executable).with_name("voxeldosimetry")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "VoxelDosimetryLib.cli.main"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command + [str(a) for a in argv], capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stdout, done.stderr


def _in_process(argv: list, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_battery_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    commands = {c.id.split("-")[0] for c in CASES}
    assert {"convert", "dose", "tia", "register", "voi", "compare", "run", "gate", "demo"} <= commands
    assert 1 <= sum(c.console for c in CASES) <= 2


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, assets: Assets, tmp_path: Path, capsys) -> None:
    ctx = Ctx(tmp_path, assets)
    argv = case.argv(ctx)
    capsys.readouterr()  # setup output (e.g. a first run) is not the case's
    before = snapshot(ctx.inp)
    code, out, err = _console(argv) if case.console else _in_process(argv, capsys)
    shown = f"\ncommand: voxeldosimetry {' '.join(map(str, argv))}\nstderr:\n{err[-4000:]}"
    assert code == case.code, f"exit status {code}, expected {case.code}{shown}"
    assert "Traceback" not in err, shown
    assert snapshot(ctx.inp) == before, f"an input file changed{shown}"
    left = [p for p in tmp_path.rglob(STAGING_PREFIX + "*")]
    assert not left, f"staging left behind: {left}"
    assert_outputs_finite(ctx.out)
    assert re.search(case.stderr, err, re.DOTALL), f"stderr does not match {case.stderr!r}{shown}"
    name = " ".join(map(str, argv[:2])) if argv[0] == "gate" else str(argv[0])
    if case.code:
        assert f"voxeldosimetry {name}: error: " in err, f"no 'voxeldosimetry {name}: error:' line{shown}"
    for line in err.splitlines():  # every warning in the one format: 'voxeldosimetry CMD: warning: [code] message'
        if ": warning: " in line:
            assert re.match(rf"voxeldosimetry {name}: warning: \[[a-z0-9_]+\] \S", line), \
                f"warning line without the 'voxeldosimetry {name}: warning: [code] message' format: {line}{shown}"
    if case.check is not None:
        case.check(ctx, out, err)
