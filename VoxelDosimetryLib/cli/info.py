"""`voxeldosimetry info`: versions, compute devices, the radionuclides and the dose methods with their options."""
from __future__ import annotations

import argparse
import json
import platform
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("info", help="show versions, compute devices, radionuclides and dose methods",
                            description="Show library and dependency versions, compute devices, radionuclides and "
                                        "the dose methods with their options (name, type, default, allowed values, "
                                        "unit, help).")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser


def collect_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from VoxelDosimetryLib import __version__
    from VoxelDosimetryLib.device import describe_devices
    from VoxelDosimetryLib.dose import available_dose_methods
    from VoxelDosimetryLib.physics import SUPPORTED_NUCLIDES, get_nuclide

    packages = {}
    for name in ("numpy", "scipy", "SimpleITK", "pynrrd", "pydicom", "icrp107-database", "xraylib", "torch"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    nuclides = []
    for name in SUPPORTED_NUCLIDES:
        nuclide = get_nuclide(name)
        budget = nuclide.energy_budget()
        nuclides.append({"name": nuclide.name, "half_life_h": nuclide.half_life_s / 3600.0,
                         "electrons_kev_per_decay": budget["electrons"] * 1e3,
                         "photons_kev_per_decay": budget["photons"] * 1e3})
    return {"voxeldosimetry": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "packages": packages, "devices": describe_devices(), "nuclides": nuclides,
            "dose_methods": [method.describe() for method in available_dose_methods()],
            "decay_data": "ICRP Publication 107 (icrp107-database); research and educational use"}


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        print()
        return 0
    print(f"VoxelDosimetry {info['voxeldosimetry']} on Python {info['python']} ({info['platform']})")
    print("packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["packages"].items()))
    dev = info["devices"]
    gpus = ", ".join(f"cuda:{d['index']} {d['name']} ({d['memory_gib']} GiB)" for d in dev["cuda_devices"]) or "none"
    print(f"devices: auto -> {dev['auto']}; CUDA GPUs: {gpus}; CPU threads: {dev['cpu_threads']}")
    print(f"radionuclides ({info['decay_data']}):")
    for n in info["nuclides"]:
        print(f"  {n['name']:<8} T1/2 {n['half_life_h']:10.3f} h   electrons {n['electrons_kev_per_decay']:8.2f} keV/decay"
              f"   photons {n['photons_kev_per_decay']:8.2f} keV/decay")
    print("dose methods (voxeldosimetry dose --method NAME; options as --flag VALUE or pipeline dose.options):")
    for method in info["dose_methods"]:
        kind = ", ".join(word for word, on in (("stochastic", method["stochastic"]),
                                                ("uncertainty map", method["provides_uncertainty"])) if on)
        print(f"  {method['name']:<8} {method['description']}" + (f" [{kind}]" if kind else ""))
        for option in method["options"]:
            print("    " + option_text(option))
        if not method["options"]:
            print("    (no options)")
    return 0


def option_text(option: dict) -> str:
    """One line per option: 'component (--component): str, electron|total, default electron: help'."""
    default = option["default"]
    default = "none" if default is None else str(default).lower() if option["type"] == "bool" else (
        repr(default) if default == "" else default)
    text = f"{option['name']} ({option['flag']}): {option['type']}, {option['allowed']}, default {default}"
    if option["unit"] and option["unit"] not in option["allowed"]:
        text += f", unit {option['unit']}"
    return text + (f": {option['help']}" if option["help"] else "")
