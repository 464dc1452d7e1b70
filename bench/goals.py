"""Issue-6 targets as numbers: a measured value against its limit, with how far it misses."""

from __future__ import annotations


def at_most(value: float | None, limit: float, unit: str = "") -> dict:
    """value <= limit? With the miss as an absolute and relative overshoot (None value: not measured)."""
    if value is None:
        return {"value": None, "limit": limit, "unit": unit, "met": False, "over_by": None, "over_by_pct": None}
    over = value - limit
    return {
        "value": round(value, 3),
        "limit": limit,
        "unit": unit,
        "met": value <= limit,
        "over_by": round(over, 3) if over > 0 else 0,
        "over_by_pct": round(over / limit * 100, 1) if over > 0 and limit else 0,
    }


def verdict(goal: dict) -> str:
    """One line: 'met' or 'MISSED by X (Y%)'."""
    if goal["value"] is None:
        return "not measured"
    unit = f" {goal['unit']}" if goal["unit"] else ""
    if goal["met"]:
        return f"{goal['value']:g}{unit} <= {goal['limit']:g}{unit}: met"
    miss = f"MISSED by {goal['over_by']:g}{unit} ({goal['over_by_pct']:g}%)"
    return f"{goal['value']:g}{unit} > {goal['limit']:g}{unit}: {miss}"
