"""Measure full and incremental syncs in a scratch database; print a table, optionally JSON."""

import importlib
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
            "--sync-workers",
            type=int,
            help="W1: processes sync_all runs on (default: the cores on PostgreSQL, 1 on SQLite).",
        )
        parser.add_argument(
            "--incremental-sizes", default="1000,10000", help="W2: two values of N."
        )
        parser.add_argument("--changes", type=int, default=10, help="W2: K changes.")
        parser.add_argument("--fanout-requestors", type=int, default=20, help="W3.")
        parser.add_argument("--fanout-entries", type=int, default=100_000, help="W3.")
        parser.add_argument(
            "--ldap-entries", type=int, default=10_000, help="W4: contacts written to slapd."
        )
        parser.add_argument(
            "--ad-entries",
            default="1000,3000",
            help="W5: two values of N, users scanned and contacts written on a Samba AD DC "
            "(the incremental scan takes --changes changes).",
        )
        parser.add_argument(
            "--hub-organizations", type=int, default=100, help="W6: organizations in the hub."
        )
        parser.add_argument(
            "--hub-recipients", type=int, default=200, help="W6: recipients per organization."
        )
        parser.add_argument(
            "--storm-changes", type=int, default=5, help="W6: changes per organization at once."
        )
        parser.add_argument(
            "--workers",
            default="1,2",
            help="W6: Celery worker processes, or several counts run one after the other.",
        )
        parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis", help="W6.")
        parser.add_argument(
            "--only",
            default="w1,w2,w3,w4,w5,w6,syncrepl,ceiling",
            help="Which workloads to run.",
        )
        parser.add_argument("--json", dest="json_file", help="Also write the figures here.")

    def handle(self, *args, **options):
        chosen = {name.strip().lower() for name in options["only"].split(",")}
        logging.getLogger().setLevel(logging.WARNING)
        results = {"database": connection.vendor, "python": platform.python_version()}
        with scratch_database():
            if "w1" in chosen:
                results["w1"] = workloads.w1_full_sync(
                    options["recipients"],
                    options["organizations"],
                    options["sync_workers"] or workloads.sync_workers(),
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
            if "w5" in chosen:
                results["w5"] = self.run_w5(sizes(options["ad_entries"]), options["changes"])
            if "w6" in chosen:
                results["w6"] = self.run_w6(options)
            if "syncrepl" in chosen:
                entries = options["recipients"] * options["organizations"]
                results["syncrepl"] = self.run_syncrepl(entries, results.get("w1"))
        if options["json_file"]:
            Path(options["json_file"]).write_text(json.dumps(results, indent=2, default=str))
            self.stdout.write(f"Figures written to {options['json_file']}")

    def print_w1(self, w1: dict) -> None:
        self.stdout.write(
            f"\nW1 full initial sync on {connection.vendor}: {w1['organizations']} organizations "
            f"x {w1['recipients_per_org']:,} recipients, {w1['workers']} sync worker(s), "
            f"{w1['rounds']} rounds, {'converged' if w1['converged'] else 'NOT CONVERGED'}"
        )
        # On several workers the phases overlap: their seconds are summed over the workers.
        summed = " (summed over the workers)" if w1["workers"] > 1 else ""
        self.stdout.write(f"  {'phase':<14}{'seconds':>10}{'entries/s':>14}{summed}")
        for phase in ("export", "master", "reply", "import", "end_to_end"):
            seconds = w1["seconds"].get(phase, 0.0)
            rate = w1["rates"].get(phase)
            self.stdout.write(f"  {phase:<14}{seconds:>10.2f}{_num(rate):>14}")
        self.stdout.write(
            f"  {w1['contacts_imported']:,} contacts written = "
            f"{_num(w1['rates']['delivered'])}/s end to end; peak memory "
            f"{w1['peak_rss_mib']:.0f} MiB"
        )
        cpu, written = w1["cpu_seconds"], w1["contacts_imported"]
        if written:
            self.stdout.write(
                f"  CPU {cpu['sync']:.2f} s in the sync's processes, {cpu['rest']:.2f} s in the "
                f"rest of the machine (the database, when on this host) = "
                f"{1e6 * cpu['sync'] / written:.0f} + {1e6 * cpu['rest'] / written:.0f} µs "
                "per contact written"
            )
        replies = w1["mail"].get("reply")
        if replies and w1["contacts_imported"]:
            self.stdout.write(
                f"  {replies['messages']} reply parts, {replies['bytes'] / 2**20:.1f} MiB = "
                f"{replies['bytes'] / w1['contacts_imported']:.0f} bytes per entry delivered"
            )
        if w1["tables"]:
            total = sum(w1["tables"].values())
            largest = ", ".join(
                f"{name} {size / 2**20:.0f}" for name, size in list(w1["tables"].items())[:4]
            )
            self.stdout.write(
                f"  database {total / 2**20:.0f} MiB = {total / w1['recipients_stored']:,.0f} "
                f"bytes per recipient stored ({w1['recipients_stored']:,}); MiB: {largest}"
            )

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

    def with_slapd(self, label: str, module: str, name: str, *args) -> dict | None:
        """A workload that needs python-ldap and a throwaway slapd; None, saying why, without
        them."""
        try:
            workload = getattr(importlib.import_module(module), name)
            from directory.ldap.slapd import SlapdError
        except ImportError as exc:
            self.stdout.write(f"\n{label}: skipped, python-ldap is not installed ({exc}).")
            return None
        try:
            return workload(*args)
        except SlapdError as exc:
            self.stdout.write(f"\n{label}: skipped, no throwaway slapd ({exc}).")
            return None

    def run_w4(self, count: int) -> dict | None:
        w4 = self.with_slapd("W4 LDAP", "bench.ldap", "w4_ldap", count)
        if w4 is None:
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

    def run_w5(self, counts: list[int], changes: int) -> list[dict] | None:
        from directory.ad import samba

        why = samba.missing()
        if why:
            self.stdout.write(f"\nW5 Active Directory: skipped, {why}.")
            return None
        from bench.ad import w5_ad

        runs = w5_ad(counts, changes)
        self.stdout.write(
            "\nW5 Active Directory (a throwaway Samba DC): N users scanned, K changed, "
            "N contacts written; ours vs the ldapadd command of the same objects"
        )
        self.stdout.write(
            f"  {'N':>6}  {'':<26}{'seconds':>10}{'entries/s':>12}{'raw add/s':>11}{'ratio':>8}"
        )
        for run in runs:
            problems = f"  ({run['problems']} NOT WRITTEN)" if run["problems"] else ""
            for label, key, raw in (
                ("full scan (first)", "full_scan", "raw_add"),
                ("contacts written", "publish", "raw_contacts"),
            ):
                ratio = run[f"{key}_to_raw_ratio"] or 0
                self.stdout.write(
                    f"  {run['entries']:>6,}  {label:<26}{run[key + '_seconds']:>10.2f}"
                    f"{_num(run[key + '_rate']):>12}{_num(run[raw + '_rate']):>11}{ratio:>8.2f}"
                    + (problems if key == "publish" else "")
                )
            full = " (A FULL COMPARISON)" if run["incremental_full"] else ""
            self.stdout.write(
                f"  {run['entries']:>6,}  {'incremental, K=' + str(run['changes']):<26}"
                f"{run['incremental_seconds']:>10.3f}  {run['incremental_read']} read, "
                f"{run['incremental_queries']} queries{full}"
            )
        if len(runs) > 1 and runs[0]["incremental_seconds"]:
            growth = runs[-1]["incremental_seconds"] / runs[0]["incremental_seconds"]
            self.stdout.write(
                f"  incremental scan at N={runs[-1]['entries']:,} / at N={runs[0]['entries']:,}"
                f" = {growth:.2f} (N x{runs[-1]['entries'] / runs[0]['entries']:.0f})"
            )
        return runs

    def run_w6(self, options: dict) -> list[dict] | None:
        from bench.hub import make_broker, unreachable, w6_hub

        problem = unreachable(make_broker(options["broker"]))
        if problem:
            self.stdout.write(f"\nW6 hub: skipped, the {options['broker']} broker: {problem}")
            return None
        runs = [
            w6_hub(
                options["hub_organizations"],
                options["hub_recipients"],
                workers,
                options["broker"],
                options["storm_changes"],
            )
            for workers in sizes(options["workers"])
        ]
        self.print_w6(runs)
        return runs

    def print_w6(self, runs: list[dict]) -> None:
        first = runs[0]
        self.stdout.write(
            f"\nW6 hub on {connection.vendor} and {first['broker']}: "
            f"{first['organizations']} organizations x {first['recipients_per_org']:,} "
            f"recipients, Celery workers of one process each; storm of "
            f"{first['storm']['changes_per_org']} changes in every organization"
        )
        self.stdout.write(
            f"  {'workers':>7}{'initial s':>11}{'rounds':>7}{'entries/s':>11}{'msgs/s':>8}"
            f"{'storm s':>9}{'p50':>7}{'p95':>7}{'max':>7}{'lock held':>11}{'waited':>9}"
            f"{'peak MiB':>10}"
        )
        for run in runs:
            initial, storm = run["initial"], run["storm"]
            lock = initial["master_lock"]
            latency = storm["latency"]
            flag = "" if initial["converged"] and storm["converged"] else "  NOT CONVERGED"
            self.stdout.write(
                f"  {run['workers']:>7}{initial['seconds']:>11.1f}{initial['rounds']:>7}"
                f"{initial['entries_per_second']:>11,}{initial['messages_per_second']:>8.1f}"
                f"{storm['seconds']:>9.1f}{_seconds(latency['p50']):>7}"
                f"{_seconds(latency['p95']):>7}{_seconds(latency['max']):>7}"
                f"{lock.get('held_seconds', 0):>11.1f}{lock.get('waited_seconds', 0):>9.1f}"
                f"{max(run['peak_rss_mib'], default=0):>10.0f}{flag}"
            )
            if flag:
                self.stdout.write(f"    {initial['problems']}\n{run['log_tail']}")
        for run in runs:
            cpu, seconds = run["initial"]["cpu_seconds"], run["initial"]["seconds"]
            self.stdout.write(
                f"  initial sync, {run['workers']} worker(s): the workers used "
                f"{cpu['workers'] / seconds:.2f} cores on average; the machine's "
                f"{cpu['cores']} cores were {cpu['machine_busy']:.0%} busy (every process)"
            )
        if len(runs) > 1 and runs[0]["initial"]["seconds"]:
            ratio = runs[0]["initial"]["seconds"] / runs[-1]["initial"]["seconds"]
            self.stdout.write(
                f"  initial sync with {runs[-1]['workers']} workers / {runs[0]['workers']}: "
                f"{ratio:.2f}x the throughput"
            )
        tables = ", ".join(
            f"{name} {size / 2**20:.0f} MiB" for name, size in runs[-1]["largest_tables"]
        )
        if tables:
            self.stdout.write(f"  largest tables: {tables}")

    def run_syncrepl(self, entries: int, w1: dict | None) -> dict | None:
        """OpenLDAP's syncrepl on the same machine, and W1's contacts written per second
        (every organization's imports) against its entries per second."""
        peer = self.with_slapd("syncrepl", "bench.syncrepl", "syncrepl", entries)
        if peer is None:
            return None
        short = "" if peer["held"] == entries else f", ONLY {peer['held']:,} ARRIVED"
        self.stdout.write(
            f"\nsyncrepl peer: an empty consumer took {entries:,} inetOrgPerson entries from a "
            f"syncprov provider in {peer['seconds']:.2f} s = {_num(peer['rate'])}/s{short}"
        )
        if w1 and w1["rates"]["delivered"] and peer["rate"]:
            peer["w1_ratio"] = round(w1["rates"]["delivered"] / peer["rate"], 3)
            self.stdout.write(
                f"  W1 contacts written/s / syncrepl entries/s = {peer['w1_ratio']:.2f}"
            )
        return peer

    def print_w3(self, w3: dict) -> None:
        self.stdout.write(
            f"\nW3 master fan-out: {w3['requestors']} requestors x {w3['entries']:,} entries: "
            f"{w3['entries_sent']:,} entries in {w3['seconds']:.2f} s = {_num(w3['rate'])}/s"
        )


def _num(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


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
