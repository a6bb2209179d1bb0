"""Kinetics: timepoint registration, SPECT calibration, time-integrated activity and curve fits.

Import from the sub-modules (registration, quantification, tia, tac_fit, ...); see docs/TIME_INTEGRATION.md.
"""
from __future__ import annotations
