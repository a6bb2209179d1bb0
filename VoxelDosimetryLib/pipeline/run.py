"""run_pipeline: config -> registration, calibration, activity on the dose grid, time integration, dose, segment
tables, DVH, report.md and run.json, every intermediate saved in the output folder (docs/PIPELINE.md).

Each step records a key (sha256 of its input files, its parameters and the library version) in
`steps/<name>.json` and is skipped ("reused") when the key and its outputs are unchanged; force=True recomputes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from VoxelDosimetryLib.dose import get_dose_method
from VoxelDosimetryLib.errors import InputFormatError, VoxelDosimetryError
from VoxelDosimetryLib.io import read_volume, write_volume
from VoxelDosimetryLib.io.roles import as_role
from VoxelDosimetryLib.io.safe_write import OutputPathError, check_outputs, output_session, write_json_atomic
from VoxelDosimetryLib.pipeline import qc_checks as pipeline_qc
from VoxelDosimetryLib.pipeline import steps_activity, steps_dose, steps_geometry, steps_tables
from VoxelDosimetryLib.pipeline.cache import StepCache
from VoxelDosimetryLib.pipeline.config import PipelineConfig
from VoxelDosimetryLib.qc import QcLog, collect_qc, qc_warn, replay
from VoxelDosimetryLib.volume import Volume

Progress = Callable[[float, str], None]

# Relative cost of each kind of step, for the progress fraction.
_WEIGHTS = {"dose_grid": 4.0, "register": 10.0, "activity": 3.0, "time_integration": 4.0, "dose": 12.0,
            "dose_rate": 8.0, "dose_integration": 3.0, "labels": 2.0, "tables": 6.0, "report": 1.0}
_PROGRESS_INTERVAL_S = 0.5


class PipelineCancelled(VoxelDosimetryError):
    """The run was cancelled through the `cancel` callable; finished steps stay reusable."""


@dataclass
class PipelineResult:
    """What a run produced: output paths by name, the segment table rows, step statuses and timings (s)."""

    out_dir: Path
    outputs: dict[str, str]
    segment_rows: list[dict]
    timings: dict[str, float]
    steps: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    qc: list[dict] = field(default_factory=list)
    report: Path | None = None
    manifest: Path | None = None

    def to_dict(self) -> dict:
        """JSON values (the segment rows come from segments.json, so they hold no NaN)."""
        return {"out_dir": str(self.out_dir), "outputs": dict(self.outputs), "steps": dict(self.steps),
                "timings_s": dict(self.timings), "warnings": list(self.warnings), "qc": list(self.qc),
                "report": str(self.report), "manifest": str(self.manifest),
                "segments": [dict(row) for row in self.segment_rows]}


class _Runner:
    """Runs or reuses steps, reports progress, checks for cancellation, memoises volumes read or written."""

    def __init__(self, out_dir: Path, plan: list[tuple[str, str]], force: bool, progress: Progress | None,
                 cancel: Callable[[], bool] | None) -> None:
        self.out_dir = out_dir
        self.cache = StepCache(out_dir)
        self.force = force
        self.progress = progress
        self.cancel = cancel
        self.records: dict[str, dict] = {}
        self.ct_offset_hu = 0.0
        self._volumes: dict[str, Volume] = {}
        total = sum(_WEIGHTS[kind] for _, kind in plan)
        self.spans, done = {}, 0.0
        for name, kind in plan:
            self.spans[name] = (done / total, (done + _WEIGHTS[kind]) / total)
            done += _WEIGHTS[kind]

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(min(max(fraction, 0.0), 1.0), message)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise PipelineCancelled("The pipeline run was cancelled; finished steps are kept and reused next time.")

    def read(self, path: Path, quantity: str | None = None) -> Volume:
        key = f"{Path(path).resolve()}|{quantity}"
        if key not in self._volumes:
            self._volumes[key] = read_volume(path, quantity=quantity)
        return self._volumes[key]

    def kept(self, key: str, make: Callable[[], Volume]) -> Volume:
        """A volume derived from inputs (e.g. a shifted CT), made once per run."""
        if key not in self._volumes:
            self._volumes[key] = make()
        return self._volumes[key]

    def write(self, volume: Volume, path: Path) -> Path:
        """Write `volume`; later steps read what the file holds, so a resumed run computes from the same values."""
        written = write_volume(volume, path)
        self._volumes.pop(f"{Path(path).resolve()}|None", None)
        return written

    def step(self, name: str, inputs: dict[str, Any], params: dict, outputs: list[Path],
             compute: Callable[[Progress], dict | None]) -> dict:
        """Reuse the step when fresh, else run `compute(progress)` (which writes `outputs`); returns the record."""
        self.check_cancel()
        start, end = self.spans[name]
        began = time.perf_counter()
        hashes = self.cache.input_hashes(inputs)
        key = self.cache.key(name, hashes, params)
        stored = None if self.force else self.cache.fresh_record(name, key, outputs)
        if stored is not None:
            record = dict(stored, status="reused", elapsed_s=round(time.perf_counter() - began, 3),
                          computed_elapsed_s=stored.get("elapsed_s"))
            replay(stored.get("qc", []))  # what the step found when it was computed still holds
            self.report(end, f"{name}: reused (inputs and parameters unchanged)")
        else:
            self.report(start, f"{name}: computing")

            last = [0.0]

            def sub(fraction: float, message: str) -> None:
                now = time.perf_counter()
                if now - last[0] >= _PROGRESS_INTERVAL_S or fraction >= 1.0:  # at most ~2 lines a second
                    last[0] = now
                    self.report(start + (end - start) * min(max(float(fraction), 0.0), 1.0), f"{name}: {message}")

            try:
                with collect_qc() as step_log:
                    info = compute(sub) or {}
            except VoxelDosimetryError as exc:  # e.g. Monte Carlo stopped by the same cancel callable
                if self.cancel is not None and self.cancel():
                    raise PipelineCancelled(f"The pipeline run was cancelled during {name}; finished steps are "
                                            "kept and reused next time.") from exc
                raise
            missing = [str(p) for p in outputs if not Path(p).is_file()]
            if missing:  # pragma: no cover - a step that forgets an output is a programming error
                raise VoxelDosimetryError(f"Step {name} did not write {missing}.")
            record = {"name": name, "key": key, "status": "computed",
                      "elapsed_s": round(time.perf_counter() - began, 3),
                      "inputs": {k: {"path": _text(inputs[k]), "sha256": v} for k, v in hashes.items()},
                      "params": params, "outputs": self.cache.output_hashes(outputs), "info": info,
                      "qc": step_log.to_list()}
            self.cache.save(name, {k: v for k, v in record.items() if k != "status"})
            self.report(end, f"{name}: done in {record['elapsed_s']:.1f} s")
        self.records[name] = record
        return record


def _text(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None if value is None else str(value)


def _read_ct(runner: _Runner, path: Path) -> Volume:
    """A CT in HU (io.roles.as_role: unlabelled files are taken as HU, other quantities are refused).

    `runner.ct_offset_hu` (config ct_offset_hu) is added first, for files that store HU + 1000 (patient15); the
    shifted CT is kept for the later steps.
    """
    def make() -> Volume:
        volume = as_role(runner.read(path), path, ("ct",), "ct", "a CT in HU")
        if runner.ct_offset_hu:
            volume = volume.with_array(volume.array.astype(np.float32) + np.float32(runner.ct_offset_hu))
        return volume

    return runner.kept(f"{Path(path).resolve()}|ct{runner.ct_offset_hu:+g}", make)


def _read_labels(runner: _Runner, path: Path) -> Volume:
    """A label map (io.roles.as_role: unlabelled files are taken as labels, other quantities are refused)."""
    volume = as_role(runner.read(path), path, ("labels", "mask"), "segments.labels",
                     "a label map (integer segments, 0 = background)",
                     fix="It is not a label map: give the segmentation, e.g. a TotalSegmentator output or a Slicer "
                         ".seg.nrrd")
    return volume if volume.quantity == "labels" else volume.replace(quantity="labels", unit="label")


def _tag(time_h: float) -> str:
    return f"{float(time_h):g}h"


def run_pipeline(config: PipelineConfig, out_dir: str | Path, progress: Progress | None = None,
                 cancel: Callable[[], bool] | None = None, force: bool = False) -> PipelineResult:
    """Run (or reuse) every step of the pipeline for `config`, writing all outputs under `out_dir`.

    progress(fraction 0-1, "step: message") is called as work advances; cancel() returning True stops the run
    between steps (and inside Monte Carlo) with PipelineCancelled. force=True recomputes every step.
    """
    started = time.time()
    config.check_settings()
    config.check_files()
    out = Path(out_dir)
    inputs = config.input_paths()
    with output_session("run", inputs, force), collect_qc() as qc_log:
        if out.exists() and not out.is_dir():
            raise OutputPathError(f"The output {out} is a file; a run writes a folder of results. Give a folder path "
                                  "(e.g. --out run/).")
        # before any step: never into an input, never over others' files (out_dir as given: "" is refused)
        check_outputs({"output folder": out_dir}, inputs)
        out.mkdir(parents=True, exist_ok=True)
        return _run(config, out, progress, cancel, force, started, qc_log)


def _run(config: PipelineConfig, out: Path, progress: Progress | None, cancel: Callable[[], bool] | None,
         force: bool, started: float, qc_log: QcLog) -> PipelineResult:
    """The steps of run_pipeline, inside its output session and QC collector."""
    from VoxelDosimetryLib.pipeline.manifest import write_manifest
    from VoxelDosimetryLib.pipeline.report import write_report

    tps = config.timepoints
    tags = [_tag(tp.time_h) for tp in tps]
    ref = int(config.reference_timepoint)
    ct_path = config.resolve(config.ct)
    spect_paths = [config.resolve(tp.spect) for tp in tps]
    registered = [i for i in range(len(tps)) if _needs_registration(config, i, ct_path)]
    rate_order = config.dose.order == "dose_rate_then_integrate"

    plan = [("dose_grid", "dose_grid")] + [(f"register_{tags[i]}", "register") for i in registered]
    plan += [(f"activity_{t}", "activity") for t in tags] + [("time_integration", "time_integration")]
    plan += ([(f"dose_rate_{t}", "dose_rate") for t in tags] + [("dose_integration", "dose_integration")]
             if rate_order else [("dose", "dose")])
    plan += [("labels", "labels"), ("tables", "tables"), ("report", "report")]
    runner = _Runner(out, plan, force, progress, cancel)
    runner.ct_offset_hu = float(config.ct_offset_hu)
    paths: dict[str, Path] = {}

    # 1. dose grid and the CT on it ---------------------------------------------------------------------
    paths["ct_on_dose_grid"] = out / "grid" / "ct_on_dose_grid.nrrd"

    def make_grid(report: Progress) -> dict:
        ct = _read_ct(runner, ct_path)
        spect = steps_activity.read_spect(spect_paths[ref], _quantity(config, ref))
        grid = steps_geometry.dose_grid(config.dose_grid, ct, spect)
        report(0.2, f"CT {ct.shape} at {_mm(ct.spacing)} mm onto the dose grid {grid.shape} at {_mm(grid.spacing)} mm")
        pipeline_qc.check_dose_grid(grid)
        ct_grid = steps_geometry.ct_on_grid(ct, grid)
        runner.write(ct_grid, paths["ct_on_dose_grid"])
        inside = float(steps_geometry.inside_mask(grid, ct.grid).mean())
        return {"grid": grid.to_dict(), "mode": config.dose_grid, "fraction_inside_ct": inside,
                "reference_ct_grid": ct.grid.to_dict(), "reference_spect_grid": spect.grid.to_dict()}

    grid_record = runner.step("dose_grid", {"ct": ct_path, "reference_spect": spect_paths[ref]},
                              {"dose_grid": config.dose_grid, "reference_timepoint": ref,
                               "ct_offset_hu": config.ct_offset_hu,
                               "spect_quantity": _quantity(config, ref)},
                              [paths["ct_on_dose_grid"]], make_grid)
    if grid_record["info"]["fraction_inside_ct"] < 0.999:
        qc_warn("dose_grid_outside_ct", f"{100 * (1 - grid_record['info']['fraction_inside_ct']):.1f}% of the dose grid lies outside "
                        "the reference CT; the CT is taken as air (-1000 HU) there, so doses there are not meaningful.")

    # 2. registration of each timepoint CT to the reference CT -------------------------------------------
    transforms: dict[int, Path] = {}
    for i in registered:
        name = f"register_{tags[i]}"
        transforms[i] = out / "registration" / f"transform_{tags[i]}.tfm"
        report_path = out / "registration" / f"registration_{tags[i]}.json"

        def register(report: Progress, i=i, transform_path=transforms[i], report_path=report_path) -> dict:
            from VoxelDosimetryLib.kinetics.registration import register_ct, write_transform

            settings = config.registration
            result = register_ct(_read_ct(runner, ct_path), _read_ct(runner, config.timepoint_ct(i)),
                                 kind=settings.kind, backend=settings.backend, seed=int(settings.seed),
                                 progress=report, **settings.options)
            write_transform(result, transform_path)
            for warning in result.quality.get("warnings", []):
                qc_warn("registration_quality", f"registration {tags[i]}: {warning}")
            document = {"fixed": str(ct_path), "moving": str(config.timepoint_ct(i)), **result.to_dict()}
            write_json_atomic(report_path, document, default=str)
            return {"quality": {k: result.quality.get(k) for k in (
                        "dice_body_before", "dice_body_after", "displacement_mean_mm", "displacement_max_mm",
                        "final_metric_value", "iterations", "elapsed_s")},
                    "transform": result.to_dict()["transform"], "warnings": result.quality.get("warnings", [])}

        record = runner.step(name, {"fixed_ct": ct_path, "moving_ct": config.timepoint_ct(i)},
                             {"kind": config.registration.kind, "backend": config.registration.backend,
                              "ct_offset_hu": config.ct_offset_hu,
                              "seed": config.registration.seed, "options": config.registration.options},
                             [transforms[i], report_path], register)
        paths[f"transform_{tags[i]}"] = transforms[i]
        paths[f"registration_report_{tags[i]}"] = report_path
    for i, tp in enumerate(tps):
        if tp.ct and i not in registered and config.registration.kind == "none" and i != ref:
            qc_warn("timepoint_not_registered", f"timepoint {tags[i]} has its own CT but registration is 'none': its SPECT is used as "
                            "it lies in scanner coordinates.")

    # 3. calibration and activity on the dose grid ----------------------------------------------------------
    activity_paths = []
    for i, tp in enumerate(tps):
        calibrated = out / "activity" / f"activity_{tags[i]}_calibrated.nrrd"
        on_grid = out / "activity" / f"activity_{tags[i]}.nrrd"
        activity_paths.append(on_grid)
        values = {**config.calibration, **tp.calibration}

        def activity(report: Progress, i=i, tp=tp, calibrated=calibrated, on_grid=on_grid, values=values) -> dict:
            from VoxelDosimetryLib.kinetics.registration import read_transform

            spect = steps_activity.read_spect(spect_paths[i], _quantity(config, i))
            bq_ml, described = steps_activity.activity_concentration(spect, values, config.nuclide)
            where = f"the SPECT at {tags[i]} ({spect_paths[i].name})"
            pipeline_qc.check_activity_total(steps_activity.total_bq(bq_ml), tp.time_h,
                                             config.administered_activity_bq, config.nuclide, where)
            pipeline_qc.check_activity_inside_ct(bq_ml, _read_ct(runner, config.timepoint_ct(i)), where)
            runner.write(bq_ml, calibrated)
            report(0.4, "moving the activity onto the dose grid (activity-conserving)")
            transform = read_transform(transforms[i]) if i in transforms else None
            grid = runner.read(paths["ct_on_dose_grid"]).grid
            moved = steps_activity.on_dose_grid(bq_ml, grid, transform)
            runner.write(moved, on_grid)
            native, kept = steps_activity.total_bq(bq_ml), steps_activity.total_bq(moved)
            return {"calibration": described, "total_native_bq": native, "total_on_dose_grid_bq": kept,
                    "registered": i in transforms, "spect_quantity": spect.quantity}

        inputs = {"spect": spect_paths[i], "ct_on_dose_grid": paths["ct_on_dose_grid"],
                  "transform": transforms.get(i), "timepoint_ct": config.timepoint_ct(i)}
        record = runner.step(f"activity_{tags[i]}", inputs,
                             {"calibration": values, "spect_quantity": _quantity(config, i), "nuclide": config.nuclide,
                              "ct_offset_hu": config.ct_offset_hu,
                              "administered_activity_bq": config.administered_activity_bq},  # its QC check
                             [calibrated, on_grid], activity)
        info = record["info"]
        if info["total_native_bq"] > 0 and info["total_on_dose_grid_bq"] < 0.99 * info["total_native_bq"]:
            lost = 100 * (1 - info["total_on_dose_grid_bq"] / info["total_native_bq"])
            qc_warn("activity_outside_dose_grid", f"timepoint {tags[i]}: {lost:.1f}% of the SPECT's activity falls outside the dose grid.")
        paths[f"activity_{tags[i]}_calibrated"] = calibrated
        paths[f"activity_{tags[i]}"] = on_grid

    # 4. time integration -> TIA -----------------------------------------------------------------------------
    model = config.model_for_run()
    times_h = [float(tp.time_h) for tp in tps]
    paths["tia"] = out / "integration" / "tia.nrrd"
    paths["tia_info"] = out / "integration" / "tia_info.json"
    integration_params = {"model": model, "options": config.time_integration.options, "times_h": times_h,
                          "nuclide": config.nuclide, "max_negative_fraction": config.max_negative_fraction}

    def integrate_tia(report: Progress) -> dict:
        images = [runner.read(p) for p in activity_paths]
        result = steps_dose.integrate(images, times_h, config.nuclide, model, config.time_integration.options, report,
                                     config.max_negative_fraction)
        runner.write(result.tia, paths["tia"])
        write_json_atomic(paths["tia_info"], result.info, default=str)
        return {k: result.info.get(k) for k in ("model", "total_tia_bq_s", "total_tia_mbq_h", "tail_fraction",
                                                 "fallback_voxels", "negative_voxels_set_to_zero")}

    runner.step("time_integration", {"activity": activity_paths}, integration_params,
                [paths["tia"], paths["tia_info"]], integrate_tia)

    # 5. dose ------------------------------------------------------------------------------------------------
    dose_params = {"method": config.dose.method, "histories": config.dose.histories, "seed": config.dose.seed,
                   "device": config.dose.device, "options": config.dose.options, "nuclide": config.nuclide,
                   "max_negative_fraction": config.max_negative_fraction}
    state = get_dose_method(config.dose.method).state(config.dose.options)
    if state is not None:  # e.g. the kernel files a kernel method can use: new kernels -> new dose
        dose_params["method_state"] = state
    uncertain = steps_dose.gives_uncertainty(config.dose)
    paths["dose"] = out / "dose" / "dose.nrrd"
    paths["dose_info"] = out / "dose" / "dose_info.json"
    if not rate_order:
        dose_outputs = [paths["dose"], paths["dose_info"]]
        if uncertain:
            paths["dose_uncertainty"] = out / "dose" / "dose_uncertainty.nrrd"
            dose_outputs.append(paths["dose_uncertainty"])

        def dose(report: Progress) -> dict:
            result = steps_dose.dose_from(runner.read(paths["tia"]), runner.read(paths["ct_on_dose_grid"]),
                                          config.dose, config.nuclide, report, cancel,
                                          config.max_negative_fraction)
            runner.write(result.dose, paths["dose"])
            if uncertain and result.uncertainty is not None:
                runner.write(result.uncertainty, paths["dose_uncertainty"])
            write_json_atomic(paths["dose_info"], result.info, default=str)
            return {"method": config.dose.method, "max_gy": float(result.dose.array.max())}

        runner.step("dose", {"tia": paths["tia"], "ct_on_dose_grid": paths["ct_on_dose_grid"]}, dose_params,
                    dose_outputs, dose)
    else:
        rate_paths = []
        for i in range(len(tps)):
            rate = out / "dose" / f"dose_rate_{tags[i]}.nrrd"
            outputs = [rate]
            if uncertain:
                outputs.append(out / "dose" / f"dose_rate_{tags[i]}_uncertainty.nrrd")
            rate_paths.append(rate)

            def dose_rate(report: Progress, i=i, outputs=outputs) -> dict:
                result = steps_dose.dose_from(runner.read(activity_paths[i]), runner.read(paths["ct_on_dose_grid"]),
                                              config.dose, config.nuclide, report, cancel,
                                          config.max_negative_fraction)
                runner.write(result.dose, outputs[0])
                if uncertain and result.uncertainty is not None:
                    runner.write(result.uncertainty, outputs[1])
                return {"method": config.dose.method, "max_gy_per_s": float(result.dose.array.max())}

            runner.step(f"dose_rate_{tags[i]}", {"activity": activity_paths[i],
                                                 "ct_on_dose_grid": paths["ct_on_dose_grid"]},
                        dose_params, outputs, dose_rate)
            for k, p in enumerate(outputs):
                paths[f"dose_rate_{tags[i]}" + ("_uncertainty" if k else "")] = p
        if uncertain:
            qc_warn("no_uncertainty_propagated", "dose_rate_then_integrate with a stochastic method: the per-timepoint dose-rate "
                            "uncertainties are saved; no uncertainty map is propagated to the integrated dose.")

        def integrate_dose(report: Progress) -> dict:
            images = [runner.read(p) for p in rate_paths]
            result = steps_dose.integrate(images, times_h, config.nuclide, model, config.time_integration.options,
                                          report, config.max_negative_fraction)
            runner.write(result.tia, paths["dose"])
            write_json_atomic(paths["dose_info"], result.info, default=str)
            return {"method": config.dose.method, "model": model, "max_gy": float(result.tia.array.max())}

        runner.step("dose_integration", {"dose_rate": rate_paths}, integration_params,
                    [paths["dose"], paths["dose_info"]], integrate_dose)

    # 6. labels on the dose grid -------------------------------------------------------------------------------
    labels_source = config.resolve(config.segments.labels) if config.segments.labels else None
    paths["labels_on_dose_grid"] = out / "grid" / "labels_on_dose_grid.nrrd"
    paths["label_names"] = out / "grid" / "label_names.json"
    names_param = config.segments.names if not isinstance(config.segments.names, str) else None
    names_file = config.resolve(config.segments.names) if isinstance(config.segments.names, str) else None

    def labels(report: Progress) -> dict:
        grid_ct = runner.read(paths["ct_on_dose_grid"])
        if labels_source is None:
            on_grid = steps_geometry.body_labels(grid_ct)
            names, absent = {steps_geometry.BODY_LABEL: steps_geometry.BODY_NAME}, []
            source = "automatic body segment (CT > -500 HU, largest component, holes filled)"
        else:
            label_map = _read_labels(runner, labels_source)
            on_grid = steps_geometry.labels_on_grid(label_map, grid_ct.grid)
            names, absent = _present_names(label_map, names_param, names_file)
            source = str(labels_source)
        runner.write(on_grid, paths["labels_on_dose_grid"])
        document = {"source": source, "names": {str(k): v for k, v in sorted(names.items())},
                    "named_but_absent": absent}
        write_json_atomic(paths["label_names"], document)
        return {"source": source, "segments": len(names), "named_but_absent": len(absent)}

    labels_record = runner.step("labels", {"labels": labels_source, "names": names_file,
                                           "ct_on_dose_grid": paths["ct_on_dose_grid"]},
                                {"names": names_param}, [paths["labels_on_dose_grid"], paths["label_names"]], labels)
    if labels_source is None:
        qc_warn("no_label_map", "no label map was given: statistics are for an automatic 'body' segment only.")
    if labels_record["info"].get("named_but_absent"):
        qc_warn("named_labels_absent", f"{labels_record['info']['named_but_absent']} named labels are absent from the label map "
                        f"and are left out of the tables (listed in {paths['label_names'].relative_to(out)}).")

    # 7. tables and DVH -------------------------------------------------------------------------------------------
    tables = out / "tables"
    for key, name in (("segments_csv", "segments.csv"), ("segments_json", "segments.json"), ("dvh_csv", "dvh.csv"),
                      ("dvh_png", "dvh.png"), ("segment_activity_csv", "segment_activity.csv")):
        paths[key] = tables / name
    table_outputs = [paths[k] for k in ("segments_csv", "segments_json", "dvh_csv", "dvh_png",
                                        "segment_activity_csv")]
    segment_params = {"dx_percent": list(config.segments.dx_percent), "dx_cc": list(config.segments.dx_cc),
                      "vx_gy": list(config.segments.vx_gy), "case_id": config.case_id,
                      "ct_offset_hu": config.ct_offset_hu}

    def make_tables(report: Progress) -> dict:
        names = {int(k): v for k, v in json.loads(paths["label_names"].read_text())["names"].items()}
        label_map = _read_labels(runner, labels_source) if labels_source else \
            runner.read(paths["labels_on_dose_grid"])
        on_grid = runner.read(paths["labels_on_dose_grid"])
        label_map = _only_named(label_map, names)
        tia = runner.read(paths["tia"])
        table = steps_tables.dose_table(runner.read(paths["dose"]), label_map, _read_ct(runner, ct_path),
                                        names, tia, on_grid, config.segments.dx_percent, config.segments.dx_cc,
                                        config.segments.vx_gy)
        if not table.dvhs:
            raise InputFormatError("No segment has voxels on the dose grid: check that the label map overlaps the "
                                   "SPECT/CT (same patient, same frame of reference).")
        report(0.5, "writing the tables, DVH CSV and plot")
        steps_tables.write_table_outputs(table, paths["segments_csv"], paths["segments_json"], paths["dvh_csv"],
                                         paths["dvh_png"], f"{config.case_id}: cumulative DVH")
        steps_tables.write_segment_activity(paths["segment_activity_csv"], [runner.read(p) for p in activity_paths],
                                            times_h, tia, on_grid, names)
        return {"segments": len(table.rows)}

    runner.step("tables", {"dose": paths["dose"], "tia": paths["tia"], "labels": labels_source,
                           "labels_on_dose_grid": paths["labels_on_dose_grid"], "label_names": paths["label_names"],
                           "activity": activity_paths, "ct": ct_path},
                segment_params, table_outputs, make_tables)

    # 8. report and manifest ----------------------------------------------------------------------------------------
    runner.check_cancel()
    rows = json.loads(paths["segments_json"].read_text(encoding="utf-8"))["rows"]
    activity_rows = _read_csv(paths["segment_activity_csv"])
    paths["report"] = out / "report.md"
    paths["manifest"] = out / "run.json"
    timings = {name: record["elapsed_s"] for name, record in runner.records.items()}
    statuses = {name: record["status"] for name, record in runner.records.items()}
    result = PipelineResult(out_dir=out, outputs={k: str(v) for k, v in paths.items()}, segment_rows=rows,
                            timings=timings, steps=statuses, warnings=qc_log.messages(), qc=qc_log.to_list(),
                            report=paths["report"],
                            manifest=paths["manifest"])
    finished = time.time()
    timings["total"] = round(finished - started, 3)
    write_report(paths["report"], config, runner.records, result, activity_rows)
    write_manifest(paths["manifest"], config, runner.records, result, runner.cache, started, finished)
    runner.report(1.0, f"report: done; outputs in {out}")
    return result


def _quantity(config: PipelineConfig, index: int) -> str | None:
    return config.timepoints[index].spect_quantity or config.spect_quantity


def _mm(spacing) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def _needs_registration(config: PipelineConfig, index: int, reference_ct: Path) -> bool:
    """A timepoint is registered when it has its own CT (another file) and registration is not 'none'."""
    if config.registration.kind == "none" or index == config.reference_timepoint:
        return False
    own = config.timepoints[index].ct
    return bool(own) and config.resolve(own).resolve() != reference_ct.resolve()


def _present_names(label_map: Volume, names: Any, names_file: Path | None) -> tuple[dict[int, str], list]:
    """Names of the labels present in the map (explicit names win over the map's own), and named-but-absent ones."""
    from VoxelDosimetryLib.voi import read_label_names
    from VoxelDosimetryLib.voi.label_names import default_label_name, label_names_from_metadata, normalise_names

    given = label_names_from_metadata(label_map.metadata)
    if names_file is not None:
        given.update(read_label_names(names_file))
    elif names:
        given.update(normalise_names(names, "segments.names"))
    present = [int(v) for v in np.unique(label_map.array) if v > 0]
    chosen = {label: given.get(label, default_label_name(label)) for label in present}
    absent = [f"{label}: {name}" for label, name in sorted(given.items()) if label not in chosen]
    return chosen, absent


def _only_named(label_map: Volume, names: dict[int, str]) -> Volume:
    """The label map carrying exactly `names` in its metadata (so statistics list no other names)."""
    metadata = {k: v for k, v in label_map.metadata.items() if k not in ("label_names", "source")}
    metadata["label_names"] = {str(k): v for k, v in names.items()}
    return label_map.replace(metadata=metadata)


def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
