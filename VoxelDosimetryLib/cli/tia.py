"""`voxeldosimetry tia`: voxel-wise time integration of activity (-> TIA) or dose-rate (-> dose) images."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    from VoxelDosimetryLib.kinetics.tia import MODELS
    from VoxelDosimetryLib.volume.numbers import integer_type, number_type

    models = "; ".join(f"{name}: {text}" for name, text in MODELS.items())
    parser = sub.add_parser(
        "tia", help="time-integrate activity (or dose-rate) images over timepoints",
        description="Integrate 1-N images on one voxel grid over time, voxel by voxel. Activity images (Bq/mL) "
                    "give a TIA map (Bq*s/mL); dose-rate images (Gy/s) give dose (Gy); counts images are "
                    "calibrated first with --sensitivity-cps-per-mbq and --counts-duration-s. Images must not be "
                    "decay-corrected. Register and resample timepoints onto one grid first (voxeldosimetry "
                    f"register). Models: {models}.")
    parser.add_argument("--image", action="append", required=True, metavar="FILE",
                        help="image of one timepoint; repeat once per timepoint, in time order")
    parser.add_argument("--time-h", action="append", type=number_type("h", positive=True), required=True, metavar="H",
                        help="hours after injection of the matching --image (same order), e.g. 24, 2.4e1 or '1 d'")
    parser.add_argument("--nuclide", default="Lu-177", help="radionuclide (default Lu-177)")
    parser.add_argument("--model", default="trapezoid", choices=list(MODELS), help="time-integration model")
    parser.add_argument("--out", required=True, help="output TIA (or dose) image")
    parser.add_argument("--report", help="write the full result info as JSON to this file")
    parser.add_argument("--quantity", choices=("counts", "activity_concentration", "activity", "dose_rate"),
                        help="what the images hold when the files do not say (a file that declares another "
                             "quantity is refused)")
    parser.add_argument("--unit", help="unit of the images' values when the files do not say (e.g. kBq/mL; a file "
                                       "that declares another unit is refused)")
    cal = parser.add_argument_group("calibration of counts images (docs/CALIBRATION.md)")
    cal.add_argument("--sensitivity-cps-per-mbq", type=number_type(positive=True, example="6.0"), metavar="S",
                     help="system sensitivity in counts per second per MBq")
    cal.add_argument("--counts-duration-s", type=number_type("s", positive=True), metavar="D",
                     help="seconds the counts refer to: one projection view's duration for per-view reconstructions, "
                          "the total acquisition time for summed counts (default: DICOM ActualFrameDuration)")
    cal.add_argument("--acquisition-duration-s", type=number_type("s", positive=True), metavar="T",
                     help="total acquisition time for --decay-correct-acquisition (default: from DICOM)")
    cal.add_argument("--decay-correct-acquisition", action="store_true",
                     help="correct for decay during the acquisition (factor lambda*T/(1-exp(-lambda*T)))")
    opt = parser.add_argument_group("model options")
    opt.add_argument("--tail-points", type=integer_type(positive=True, example="3"),
                     help="trapezoid_fit_tail: points used for the tail fit (default 2)")
    opt.add_argument("--effective-half-life-h", type=number_type("h", positive=True),
                     help="hanscheid: known effective half-life (h) instead of the 2t/ln2 approximation")
    opt.add_argument("--max-negative-fraction", type=number_type("1", minimum=0, example="0.1 or '10 %'"),
                     default=None, metavar="F",
                     help="value policy (docs/RELIABILITY.md): negative voxels are zeroed as noise while their sum "
                          "stays below this fraction of the positive sum (default 0.1); above it the image is refused")
    opt.add_argument("--negative-values", choices=("zero", "error"), default="zero",
                     help="negative voxels: set to 0 and count them (default) or refuse the input")
    parser.add_argument("--device", default="cpu",
                        help="accepted for a uniform CLI; time integration runs on the CPU (numpy)")
    return parser


def _progress(fraction: float, message: str) -> None:
    from VoxelDosimetryLib.cli.common import say

    say(f"tia {100 * fraction:5.1f}%", message)


def _calibrate(volume, path: str, args: argparse.Namespace):
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.kinetics.quantification import SpectCalibration, calibrate_counts
    from VoxelDosimetryLib.physics.nuclides import canonical_nuclide_name

    calibration = SpectCalibration.from_metadata(
        volume.metadata, require_complete=False, sensitivity_cps_per_mbq=args.sensitivity_cps_per_mbq,
        counts_duration_s=args.counts_duration_s, acquisition_duration_s=args.acquisition_duration_s,
        decay_correct_during_acquisition=True if args.decay_correct_acquisition else None)
    wanted = canonical_nuclide_name(args.nuclide)
    if calibration.source.get("nuclide") == "dicom" and calibration.nuclide != wanted:
        raise InputFormatError(f"{path} says the radionuclide is {calibration.nuclide} but --nuclide is {wanted}; "
                               "give the right --nuclide.")
    if calibration.nuclide is None:
        calibration = calibration.replace(nuclide=wanted)
    calibration.validate()
    from VoxelDosimetryLib.cli.common import say

    say("tia", f"calibrating {path}: " + "; ".join(calibration.describe()))
    return calibrate_counts(volume, calibration)


def run(args: argparse.Namespace) -> int:
    from VoxelDosimetryLib.cli.common import JSON, VOLUME_EXTENSIONS, prepare_outputs, say
    from VoxelDosimetryLib.cli.inputs import read_input
    from VoxelDosimetryLib.errors import InputFormatError
    from VoxelDosimetryLib.io import write_volume
    from VoxelDosimetryLib.io.safe_write import write_text_atomic
    from VoxelDosimetryLib.kinetics.tia import integrate_activity, integrate_dose_rate

    if len(args.image) != len(args.time_h):
        raise InputFormatError(f"{len(args.image)} --image but {len(args.time_h)} --time-h: give one --time-h after "
                               "each --image.")
    prepare_outputs({"--out": args.out, "--report": args.report}, args.image,
                    {"--out": VOLUME_EXTENSIONS, "--report": JSON})
    calibrating = args.sensitivity_cps_per_mbq is not None or args.counts_duration_s is not None
    images, notes = [], []
    for path in args.image:
        volume = read_input(path, args.quantity, args.unit)
        if volume.quantity == "unknown" and calibrating:
            volume = volume.replace(quantity="counts", unit="counts")
            notes.append(f"{path} states no quantity; read as counts because calibration options were given")
        if volume.quantity == "counts" and calibrating:
            volume = _calibrate(volume, path, args)
        elif volume.quantity == "activity_concentration" and calibrating:
            notes.append(f"{path} is already in Bq/mL: the calibration options were not applied to it")
        images.append(volume)
    for note in notes:
        say("tia", f"note: {note}")
    options = {"negative_policy": args.negative_values, "max_negative_fraction": args.max_negative_fraction,
               "progress": _progress}
    if args.model == "trapezoid_fit_tail" and args.tail_points is not None:
        options["tail_points"] = args.tail_points
    if args.model == "hanscheid" and args.effective_half_life_h is not None:
        options["effective_half_life_s"] = args.effective_half_life_h * 3600.0
    times_s = [h * 3600.0 for h in args.time_h]
    integrate = integrate_dose_rate if images[0].quantity == "dose_rate" else integrate_activity
    result = integrate(images, times_s, args.nuclide, args.model, **options)
    info = dict(result.info, notes=notes, inputs=list(args.image),
                calibrations=[v.metadata.get("calibration") for v in images])
    written = write_volume(result.tia, args.out)
    if args.report:
        write_text_atomic(args.report, json.dumps(info, indent=2, default=str) + "\n")
    summary = {"output": str(written), "model": result.info["model"], "output_quantity": result.tia.quantity,
               "output_unit": result.tia.unit}
    for key in ("total_tia_bq_s", "total_tia_mbq_h", "mean_dose_gy", "max_dose_gy"):
        if key in result.info:
            summary[key] = result.info[key]
    summary["info"] = info
    print(json.dumps(summary, indent=2, default=str))
    return 0
