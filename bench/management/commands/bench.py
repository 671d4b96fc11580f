"""Measure full and incremental syncs in a scratch database; print a table, optionally JSON."""

import json
import logging
import platform
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench import workloads

# The ceilings measured (results key, key of W1's import ratio to it).
CEILINGS = [
    ("ceiling", "import_to_ceiling_ratio"),
    ("ceiling_copy", "import_to_copy_ceiling_ratio"),
]


def sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"{text!r} is not a comma-separated list of numbers.") from None
    if not values or min(values) < 1:
        raise CommandError("Sizes must be positive numbers.")
    return values


class Command(BaseCommand):
    help = (
        "Benchmark the sync path (W1 full sync, W2 incremental, W3 master fan-out, and the "
        "bulk-insert ceiling) in a scratch database; your data is not touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--recipients", type=int, default=10_000, help="W1: per organization.")
        parser.add_argument("--organizations", type=int, default=3, help="W1: how many.")
        parser.add_argument(
            "--incremental-sizes", default="1000,10000", help="W2: two values of N."
        )
        parser.add_argument("--changes", type=int, default=10, help="W2: K changes.")
        parser.add_argument("--fanout-requestors", type=int, default=20, help="W3.")
        parser.add_argument("--fanout-entries", type=int, default=100_000, help="W3.")
        parser.add_argument(
            "--ldap-entries", type=int, default=10_000, help="W4: contacts written to slapd."
        )
        parser.add_argument("--only", default="w1,w2,w3,w4,ceiling", help="Which workloads to run.")
        parser.add_argument("--json", dest="json_file", help="Also write the figures here.")

    def handle(self, *args, **options):
        chosen = {name.strip().lower() for name in options["only"].split(",")}
        logging.getLogger().setLevel(logging.WARNING)
        results = {"database": connection.vendor, "python": platform.python_version()}
        with scratch_database():
            if "w1" in chosen:
                results["w1"] = workloads.w1_full_sync(
                    options["recipients"], options["organizations"]
                )
                self.print_w1(results["w1"])
            if "ceiling" in chosen:
                rows = options["recipients"] * options["organizations"]
                results["ceiling"] = workloads.ceiling_insert(rows, copy=False)
                if connection.vendor == "postgresql":
                    results["ceiling_copy"] = workloads.ceiling_insert(rows, copy=True)
                self.print_ceiling(results)
            if "w2" in chosen:
                results["w2"] = [
                    workloads.w2_incremental(n, options["changes"])
                    for n in sizes(options["incremental_sizes"])
                ]
                self.print_w2(results["w2"])
            if "w3" in chosen:
                results["w3"] = workloads.w3_fanout(
                    options["fanout_requestors"], options["fanout_entries"]
                )
                self.print_w3(results["w3"])
            if "w4" in chosen:
                results["w4"] = self.run_w4(options["ldap_entries"])
        if options["json_file"]:
            Path(options["json_file"]).write_text(json.dumps(results, indent=2, default=str))
            self.stdout.write(f"Figures written to {options['json_file']}")

    def print_w1(self, w1: dict) -> None:
        self.stdout.write(
            f"\nW1 full initial sync on {connection.vendor}: {w1['organizations']} organizations "
            f"x {w1['recipients_per_org']:,} recipients, {w1['rounds']} rounds, "
            f"{'converged' if w1['converged'] else 'NOT CONVERGED'}"
        )
        self.stdout.write(f"  {'phase':<14}{'seconds':>10}{'entries/s':>14}")
        for phase in ("export", "master", "reply", "import", "end_to_end"):
            seconds = w1["seconds"].get(phase, 0.0)
            rate = w1["rates"].get(phase)
            self.stdout.write(f"  {phase:<14}{seconds:>10.2f}{_num(rate):>14}")
        self.stdout.write(f"  peak memory {w1['peak_rss_mib']:.0f} MiB")

    def print_ceiling(self, results: dict) -> None:
        """Each bare insert, and W1's import rate against it (COPY is what W1 uses on
        PostgreSQL, bulk_create elsewhere)."""
        self.stdout.write("")
        for key, ratio_key in CEILINGS:
            ceiling = results.get(key)
            if ceiling is None:
                continue
            self.stdout.write(
                f"Bulk-insert ceiling ({ceiling['method']}): {ceiling['rows']:,} rows in "
                f"{ceiling['seconds']:.2f} s = {_num(ceiling['rate'])} rows/s"
            )
            w1 = results.get("w1")
            if w1 and w1["rates"]["import"] and ceiling["rate"]:
                ratio = w1["rates"]["import"] / ceiling["rate"]
                results[ratio_key] = round(ratio, 3)
                self.stdout.write(f"  W1 import rate / {ceiling['method']} ceiling = {ratio:.2f}")

    def print_w2(self, runs: list[dict]) -> None:
        self.stdout.write(f"\nW2 incremental: {runs[0]['changes']} changes in one organization")
        self.stdout.write(f"  {'N':>8}  {'cycle':<14}{'seconds':>10}{'queries':>10}{'arrived':>10}")
        for run in runs:
            for label in ("export_cycle", "import_cycle"):
                self.stdout.write(
                    f"  {run['recipients_per_org']:>8,}  {label:<14}"
                    f"{run[label]['seconds']:>10.3f}{run[label]['queries']:>10}{run['arrived']:>10}"
                )

    def run_w4(self, count: int) -> dict | None:
        try:
            from bench.ldap import w4_ldap
            from directory.ldap.slapd import SlapdError
        except ImportError as exc:
            self.stdout.write(f"\nW4 LDAP: skipped, python-ldap is not installed ({exc}).")
            return None
        try:
            w4 = w4_ldap(count)
        except SlapdError as exc:
            self.stdout.write(f"\nW4 LDAP: skipped, no throwaway slapd ({exc}).")
            return None
        problems = f", {w4['problems']} NOT WRITTEN" if w4["problems"] else ""
        self.stdout.write(
            f"\nW4 LDAP: {w4['entries']:,} contacts written to a throwaway slapd{problems}"
        )
        self.stdout.write(f"  {'':<30}{'seconds':>10}{'entries/s':>14}")
        for label, key in (
            ("import (contacts written)", "publish"),
            ("raw python-ldap add_s", "raw_add"),
            ("scan (entries read in)", "scan"),
        ):
            self.stdout.write(
                f"  {label:<30}{w4[key + '_seconds']:>10.2f}{_num(w4[key + '_rate']):>14}"
            )
        self.stdout.write(f"  import / raw add rate = {w4['publish_to_raw_ratio']:.2f}")
        return w4

    def print_w3(self, w3: dict) -> None:
        self.stdout.write(
            f"\nW3 master fan-out: {w3['requestors']} requestors x {w3['entries']:,} entries: "
            f"{w3['entries_sent']:,} entries in {w3['seconds']:.2f} s = {_num(w3['rate'])}/s"
        )


def _num(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


class scratch_database:
    """A fresh database beside the configured one (test_<name>_bench), dropped afterwards."""

    def __enter__(self):
        self.old_name = connection.settings_dict["NAME"]
        test = connection.settings_dict.setdefault("TEST", {})
        if connection.vendor == "sqlite":
            test["NAME"] = str(Path(settings.VAR_DIR) / "bench.sqlite3")
        else:
            test["NAME"] = f"{self.old_name}_bench"
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        return self

    def __exit__(self, *exc):
        connection.creation.destroy_test_db(self.old_name, verbosity=0)
