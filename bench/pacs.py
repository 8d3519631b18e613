"""Benchmark: opening a 64-slice CT series from a real Orthanc through radconsult's path, against a bare
``dicomweb-client`` retrieve plus ``pydicom`` decode in the same process; and the time to send an SR.

The PACS is Debian's Orthanc with the DICOMweb plugin, started here on a free loopback port with
authentication on (see tests/orthanc.py), holding one series of N slices (CT_small.dcm enlarged to
512 x 512, 16-bit: 0.5 MiB per slice, a clinical CT matrix). Rows, median wall time over interleaved runs:

* bare: ``DICOMwebClient.retrieve_series`` + ``ds.pixel_array`` for every slice (the baseline, 1.00);
* open (UI): ``agent.pacs.open_series``: QIDO plan and limits, WADO-RS retrieve, per-instance checks, the
  re-identification map, the original files written to a private folder, ``tools.imaging.load`` (decode,
  de-identified study), files deleted;
* get (CLI): ``agent.pacs.get_series``: the same with de-identified files written and kept;
* send: ``agent.pacs.pacs_sr`` + ``PacsClient.store`` (SR built from a signed report with the original
  patient module, STOW-RS, read back with QIDO), against a bare ``store_instances`` of the same SR.

    python -m bench.pacs [--runs 7] [--slices 64] [--matrix 512]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def _interleaved_ms(fns: list[Callable[[], object]], runs: int) -> list[float]:
    """Median wall time of each function, run in turn within every round (the CPUs here are shared)."""
    for fn in fns:
        fn()  # warm-up: imports, Orthanc's and the OS's caches
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t0)
    return [statistics.median(b) * 1000.0 for b in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--matrix", type=int, default=512, choices=(128, 256, 512))
    args = parser.parse_args(argv)

    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass
    from pydicom.uid import generate_uid

    from agent.pacs import get_series, open_series, pacs_sr
    from agent.settings import Settings
    from agent.signoff import Report, ReportStore, StudyRef
    from agent.wiring import reid_map
    from tests.orthanc import HILDA, OrthancServer, ct_series, missing_reason
    from tools.pacs import PacsAuth, PacsClient, PacsConfig, Secret

    reason = missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 1
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = OrthancServer(root / "orthanc").start()
        try:
            files = ct_series(HILDA, args.slices, seed="bench-pacs", matrix=args.matrix)
            server.upload(files)
            first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
            study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
            settings = Settings(data_dir=root / "data")
            config = PacsConfig(server.dicomweb_url, auth=PacsAuth("basic", Secret(server.password),
                                                                   username=server.user))
            client = PacsClient(config)
            bare = DICOMwebClient(server.dicomweb_url,
                                  session=create_session_from_user_pass(server.user, server.password))
            counter = iter(range(10**6))

            def bare_open() -> None:
                for ds in bare.retrieve_series(study_uid, series_uid):
                    ds.pixel_array  # noqa: B018 - the decode is what is timed

            def ours_open() -> None:
                opened = open_series(settings, client, study_uid, series_uid)
                assert opened.images == args.slices

            def ours_get() -> None:
                out = root / f"get-{next(counter)}"
                got, _ = get_series(settings, client, study_uid, series_uid, out)
                assert got.count == args.slices
                shutil.rmtree(out)

            ms_bare, ms_open, ms_get = _interleaved_ms([bare_open, ours_open, ours_get], args.runs)

            # a signed report about the opened study, sent as an SR with the original patient module
            study = open_series(settings, client, study_uid, series_uid).study
            store = ReportStore(settings.data_dir / "reports")
            report = Report(case_id="bench", sections=(("Findings", "Solid nodule, long axis 8.0 mm."),
                                                       ("Recommendations", "CT at 6-12 months.")),
                            study=StudyRef(study.study_uid, study.series_uid, study.sop_instance_uids,
                                           study.sop_class_uid, "CT"))
            rv = store.sign("bench", store.save_draft(report).version, user="bench")
            reid = reid_map(settings)

            def fresh_sr():
                sr = pacs_sr(rv, reid)
                sr.SOPInstanceUID = generate_uid()
                sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
                return sr

            def ours_send() -> None:
                client.store([fresh_sr()], study_uid)

            prebuilt = [fresh_sr() for _ in range(args.runs + 1)]

            def bare_send() -> None:
                bare.store_instances([prebuilt.pop()], study_instance_uid=study_uid)

            ms_send, ms_bare_send = _interleaved_ms([ours_send, bare_send], args.runs)
            client.close()
        finally:
            server.stop()

    mib = args.slices * args.matrix * args.matrix * 2 / 2**20
    rows = [
        (f"bare retrieve + pydicom decode ({args.slices} x {args.matrix}^2, {mib:.0f} MiB)", ms_bare, 1.0),
        ("open_series (UI: checks, map, load, files deleted)", ms_open, ms_open / ms_bare),
        ("get_series (CLI: de-identified files kept)", ms_get, ms_get / ms_bare),
        ("bare STOW of the SR", ms_bare_send, 1.0),
        ("send: build SR + STOW + read-back", ms_send, ms_send / ms_bare_send),
    ]
    print(f"PACS round trip, Orthanc on loopback, median of {args.runs} interleaved runs")
    print(f"| {'step':<62} | {'median ms':>9} | {'ratio':>5} |")
    print(f"| {'-' * 62} | {'-' * 9}:| {'-' * 5}:|")
    for name, ms, ratio in rows:
        print(f"| {name:<62} | {ms:>9.0f} | {ratio:>5.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
