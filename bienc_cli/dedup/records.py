"""What `bienc dedup` found, as plain data for the renderers in ui/dedup.py."""

from __future__ import annotations

from typing import Any

import numpy as np

from bienc_cli.dedup.calibrate import Calibration
from bienc_cli.dedup.detect import Detection, DocRecord
from bienc_cli.util.paths import is_under


def _doc_record(record: DocRecord) -> dict[str, Any]:
    return {
        "doc_id": record.doc_id,
        "path": record.path,
        "row_id": record.row_id,
        "kind": record.kind,
        "reference": record.reference,
        "snippet": record.snippet,
    }


def group_records(detection: Detection) -> list[dict[str, Any]]:
    """The groups as plain data: keeper, then members with their similarity to the keeper."""
    records = detection.records
    return [
        {
            "group": number,
            "keeper": _doc_record(records[group.keeper]),
            "members": [
                _doc_record(records[m.index])
                | {"similarity": round(m.similarity, 4), "match": m.match}
                for m in group.members
            ],
        }
        for number, group in enumerate(detection.groups, 1)
    ]


def stale_records(detection: Detection) -> list[dict[str, Any]]:
    """The documents left out because their file changed since it was indexed, and why."""
    records = detection.records
    return [
        {
            "doc_id": records[i].doc_id,
            "path": records[i].path,
            "row_id": records[i].row_id,
            "reason": reason,
        }
        for i, reason in detection.stale
    ]


def pair_records(detection: Detection) -> list[dict[str, Any]]:
    """Every duplicate pair, most similar first: doc ids, similarity, match, passage."""
    records = detection.records
    pairs = sorted(detection.pairs, key=lambda p: (-p.similarity, p.a, p.b))
    return [
        {
            "similarity": round(p.similarity, 4),
            "match": p.match,
            "passage": None if p.passage is None else round(p.passage, 4),
            "a": records[p.a].doc_id,
            "b": records[p.b].doc_id,
        }
        for p in pairs
    ]


def calibration_record(calibration: Calibration) -> dict[str, Any]:
    records = calibration.records

    def pair(side: dict[str, Any] | None) -> dict[str, Any] | None:
        if side is None:
            return None
        return {
            "similarity": round(side["similarity"], 4),
            "a": _doc_record(records[side["a"]]),
            "b": _doc_record(records[side["b"]]),
        }

    valid = calibration.nearest
    return {
        "documents": len(records),
        "exact_copies": calibration.exact_copies,
        "histogram": [
            {"low": round(lo, 2), "high": round(hi, 2), "count": c}
            for lo, hi, c in calibration.bins
        ],
        "quantiles": {f"p{q}": round(float(np.percentile(valid, q)), 4) for q in (50, 90, 99)}
        if valid.size
        else {},
        "thresholds": [
            {
                "threshold": e["threshold"],
                "documents_above": int((valid >= e["threshold"]).sum()),
                "share_above": round(e["share_above"], 4),
                "above": pair(e["above"]),
                "below": pair(e["below"]),
            }
            for e in calibration.examples
        ],
    }


def summary(detection: Detection) -> dict[str, Any]:
    """The figures of the one-line report, and notes on what may surprise."""
    exact = sum(m.match == "exact" for g in detection.groups for m in g.members)
    notes = [
        f"no compared document is under --reference {folder}"
        for folder in detection.options.reference
        if not any(is_under(r.path, folder) for r in detection.records)
    ]
    return {
        "notes": notes,
        "documents": len(detection.records),
        "groups": len(detection.groups),
        "duplicates": detection.duplicates,
        "exact": exact,
        "threshold": detection.options.threshold,
        "keep": detection.options.keep,
        "seconds": detection.seconds,
    }
