"""Log-log interpolation in tables tabulated on a uniform ln-x grid (the device tables of the transport code)."""
from __future__ import annotations

from typing import Any


def loglog_uniform(table: Any, rows: Any, log_x: Any, log_x0: float, dlog_x: float) -> Any:
    """table[rows, :] (positive values on the grid ln x_k = log_x0 + k dlog_x) at ln x = `log_x`, interpolated
    linearly in ln(value) vs ln x; the end intervals extend the grid (callers clamp x where needed)."""
    import torch

    u = (log_x - log_x0) / dlog_x
    i = torch.clamp(torch.floor(u).long(), 0, table.shape[1] - 2)
    f = u - i.to(u.dtype)
    lo = torch.log(table[rows, i])
    hi = torch.log(table[rows, i + 1])
    return torch.exp(lo + f * (hi - lo))
