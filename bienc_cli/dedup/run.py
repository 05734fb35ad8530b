"""`bienc dedup` before any file is touched: load the documents, then detect or calibrate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bienc_cli.dedup.calibrate import Calibration, calibrate
from bienc_cli.dedup.corpus import Corpus, DedupRequest, open_corpus
from bienc_cli.dedup.detect import DEFAULT_THRESHOLD, DedupOptions, Detection, detect
from bienc_cli.dedup.stale import drop_stale

if TYPE_CHECKING:
    from bienc_cli.indexing.request import EncoderFactory, ProgressFn


@dataclass
class DedupRun:
    """The outcome of `bienc dedup` before any file is touched."""

    corpus: Corpus
    detection: Detection | None = None
    calibration: Calibration | None = None


def run_dedup(
    request: DedupRequest,
    options: DedupOptions,
    *,
    calibrate_only: bool = False,
    encoder_factory: EncoderFactory | None = None,
    progress: ProgressFn | None = None,
) -> DedupRun:
    """Load (or index) the documents, then detect their duplicates or calibrate."""
    with open_corpus(
        request, reference=options.reference, encoder_factory=encoder_factory, progress=progress
    ) as corpus:
        if calibrate_only:
            thresholds = sorted({0.8, 0.85, 0.9, 0.95, DEFAULT_THRESHOLD, options.threshold})
            calibration = calibrate(corpus.vectors, corpus.records, thresholds=thresholds)
            return DedupRun(corpus, calibration=calibration)
        detection = detect(corpus.vectors, corpus.records, options, chunks=corpus.chunks)
        corpus.chunks = None  # its files are gone once the temporary index is removed
    # The vectors may be older than the files (a stale --index): report only what holds now.
    detection = drop_stale(detection, text_columns=corpus.text_columns, id_column=corpus.id_column)
    return DedupRun(corpus, detection)
