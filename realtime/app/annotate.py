"""hcl-annotate: a media file scored as fast as possible into a session folder; --ray: many on Ray Data."""

from __future__ import annotations

import pathlib
import sys
from typing import Sequence

from realtime.app.console import CliError, run_command, stop_signals_as_interrupt
from realtime.app.options import annotate_parser
from realtime.core.logs import setup_logging
from realtime.pipeline.build import annotate
from realtime.scale.archive import SUMMARY, ArchiveError, ArchiveOptions, annotate_archive, media_files


def annotate_command(argv: Sequence[str] | None) -> int:
    parser = annotate_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    stop_signals_as_interrupt()
    if args.ray:
        return archive_command(args)
    if args.ray_address or args.ray_workers:
        parser.error("--ray-address and --ray-workers go with --ray")
    if len(args.inputs) != 1:
        parser.error("one file without --ray (several files, folders or globs need --ray)")
    path = args.inputs[0]
    try:
        pipeline = annotate(path, args.output, checkpoint=args.checkpoint, device=args.device, progress=not args.quiet,
                            asr=args.asr)
    except KeyboardInterrupt:
        print("interrupted; the windows so far are in the session folder", file=sys.stderr)
        return 130
    problems = pipeline.problems()
    if pipeline.recorder is not None and pipeline.recorder.error is not None:
        problems.append(str(pipeline.recorder.error))
    s = pipeline.scores
    print(
        f"{path}: {s.count} windows"
        + (f", mean score {s.mean:+.2f}, min {s.min:+.2f}, max {s.max:+.2f}" if s.count else "")
        + f"; written to {args.output}"
    )
    if problems:
        print("problems: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


def annotate_main(argv: Sequence[str] | None = None) -> int:
    return run_command(annotate_command, argv)


def archive_command(args) -> int:
    """`hcl-annotate --ray INPUTS... -o OUT [--ray-address A] [--ray-workers N]`: 0 when every file is
    done, 1 when some failed (named in the summary and on stderr), 2 for a user error."""
    if args.ray_workers is not None and args.ray_workers < 1:
        raise CliError("--ray-workers must be 1 or more")
    try:
        files = media_files(args.inputs)
        options = ArchiveOptions(output=args.output, checkpoint=args.checkpoint,
                                 device="cpu" if args.device == "auto" else args.device,
                                 address=args.ray_address, workers=args.ray_workers, asr=args.asr)
        rows = annotate_archive(files, options, progress=not args.quiet)
    except ArchiveError as exc:
        raise CliError(str(exc)) from None
    except ImportError as exc:
        raise CliError(f"--ray needs Ray: pip install 'hcl-live[ray]' ({exc})") from None
    except KeyboardInterrupt:
        print(f"interrupted; finished files are in {args.output} (run the same command again to resume)", file=sys.stderr)
        return 130
    counts = {k: sum(r["status"] == k for r in rows) for k in ("done", "skipped", "error")}
    windows = sum(r["windows"] or 0 for r in rows)
    print(f"{len(rows)} files: {counts['done']} annotated, {counts['skipped']} already done, {counts['error']} failed; "
          f"{windows} windows; summary in {pathlib.Path(args.output) / SUMMARY}")
    for r in rows:
        if r["status"] == "error":
            print(f"failed: {r['file']}: {r['error']}", file=sys.stderr)
    return 1 if counts["error"] else 0
