"""`harvester flink reset`: forget the continuous Flink job's checkpoints, so that its next start
reads the changelog log from the beginning."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from flink_jobs import checkpoints, rest
from flink_jobs.cluster import local_address
from flink_jobs.protocol import job_name_prefix
from harvester.config import Settings, format_duration, load_settings, secret_values
from harvester.errors import FlinkError, UsageError
from harvester.lock import StateLock
from harvester.logs import setup_logging
from harvester.sinks.log import ChangeLog
from harvester.timefmt import iso_utc


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    help = "manage the continuous Flink pipeline"
    parser = subparsers.add_parser("flink", help=help, description=help)
    commands = parser.add_subparsers(dest="flink_command", metavar="SUBCOMMAND", required=True)
    reset_help = "forget the continuous job's checkpoints: it starts anew from the log"
    reset = commands.add_parser(
        "reset",
        parents=[common],
        help=reset_help,
        description=(
            f"{reset_help}. Its next start reads every file still in flink.log_dir from the "
            "beginning and rebuilds the pipeline's state from them; your sinks receive those "
            "rows again. Needed after changing flink.statements. A continuous job for this log "
            "that a cluster still runs is cancelled first. Exits 0 when reset, 1 when not "
            "confirmed, 2 without --yes and no terminal to ask on, or when another process "
            "owns the state folder."
        ),
    )
    reset.add_argument("--yes", action="store_true", help="reset without asking")
    reset.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None)
    setup_logging(settings.log, secret_values(settings))
    flink = settings.flink
    # Settings fill both folders in from state.dir when the config leaves them unset.
    assert flink.log_dir is not None and flink.checkpoint_dir is not None
    if not args.yes and not sys.stdin.isatty():
        raise UsageError(
            f"`harvester flink reset` forgets the continuous job's checkpoints in "
            f"{flink.checkpoint_dir}, and your sinks then receive the log's rows again: "
            "give --yes to do it without a terminal to confirm on"
        )
    with StateLock(settings.state.dir):
        if not args.yes and not _confirmed(settings):
            print("nothing reset")
            return 1
        for line in _cancel_on_cluster(settings):
            print(line)
        newest = checkpoints.latest(flink.checkpoint_dir)
        try:
            checkpoints.reset(flink.checkpoint_dir)
        except OSError as exc:
            raise FlinkError(
                f"cannot remove the continuous job's checkpoints in {flink.checkpoint_dir}: "
                f"{exc.strerror or exc}"
            ) from exc
        replayed = ChangeLog(flink.log_dir).replay()
        if replayed:
            print(f"put {replayed} consumed run file(s) back into the log for the new job")
        if newest is None:
            print(f"no checkpoint in {flink.checkpoint_dir}: the job had none to resume")
        else:
            print(
                f"removed the continuous job's checkpoints in {flink.checkpoint_dir} "
                f"(the newest was {newest})"
            )
    for line in _meaning(settings):
        print(line)
    if flink.delivery != "continuous":
        print(
            f"note: flink.delivery is {flink.delivery!r}: no job resumes checkpoints until it "
            'is "continuous" again'
        )
    return 0


def _confirmed(settings: Settings) -> bool:
    print(
        f"This forgets the continuous Flink job's checkpoints in {settings.flink.checkpoint_dir}. "
        "Its next start rebuilds the pipeline's state from the files still in the log, and "
        "your sinks receive those rows again."
    )
    try:
        answer = input("Reset the continuous pipeline? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


def _cancel_on_cluster(settings: Settings) -> list[str]:
    """Cancel the continuous jobs for our log that a cluster runs, and wait until they stopped:
    a job left running would write new checkpoints into the folder being reset. What was done,
    one line each."""
    flink = settings.flink
    if flink.mode == "embedded":
        # The embedded job lives in a worker that dies with its harvester, and the state lock
        # says no harvester runs.
        return []
    # A local cluster is where `start_cluster` puts it; a harvester that crashed leaves it running.
    address = local_address(settings) if flink.mode == "local-cluster" else flink.address or ""
    try:
        jobs = rest.jobs(address)
    except FlinkError as exc:
        if flink.mode == "local-cluster":
            return []  # no cluster answers: no job of ours runs
        raise FlinkError(
            f"{exc}: cannot make sure that the continuous job is not running there, so nothing "
            "was reset; try again once the cluster answers (or, if the job is surely gone, "
            "run the reset with HARVESTER_FLINK__MODE=embedded)"
        ) from exc
    # The name `flink_jobs.protocol.job_name` gives the job: our log, then its SQL's fingerprint.
    ours = job_name_prefix(settings)
    found = [job for job in jobs if job.name.startswith(ours) and job.state in rest.STOPPING]
    if not found:
        return [f"no continuous job for {flink.log_dir} runs on the Flink cluster at {address}"]
    if waiting := rest.cancel_and_wait(address, [job.job_id for job in found]):
        raise FlinkError(
            f"the continuous job {', '.join(waiting)} on the Flink cluster at {address} did not "
            f"stop within {rest.CANCEL_TIMEOUT:.0f} s, so nothing was reset: cancel it there, "
            "then run the reset again"
        )
    return [
        f"cancelled the continuous job {job.job_id} on the Flink cluster at {address}; "
        "the next start submits a new one"
        for job in found
    ]


def _meaning(settings: Settings) -> list[str]:
    """What the reset means for the next start and for the sinks."""
    flink = settings.flink
    assert flink.log_dir is not None
    files = list(ChangeLog(flink.log_dir).files())
    retention = format_duration(flink.log_retention)
    if files:
        oldest = min(item.path.stat().st_mtime for item in files)
        held = (
            f"{len(files)} run file(s), the oldest written at "
            f"{iso_utc(datetime.fromtimestamp(oldest, UTC))}"
        )
    else:
        held = "no run file now"
    return [
        f"The next start of the continuous job (`harvester harvest` or `harvester run`) reads "
        f"every file still in the log {flink.log_dir} from the beginning ({held}; consumed "
        f"files are kept for flink.log_retention = {retention}).",
        "The pipeline's state (`changes`, your aggregates) is rebuilt from those files alone: "
        "a record whose latest change is in a file already retired is missing until it changes "
        "again, or until `harvester harvest --full TARGET…` hands every record off again.",
        "Every sink receives those rows again: file sinks (state.data_dir's changes/, your "
        "filesystem tables) get duplicate part files; upsert sinks (run_stats, upsert-kafka, "
        "JDBC with a primary key) converge to the same rows.",
    ]
