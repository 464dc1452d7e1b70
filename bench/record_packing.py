"""What packing open holds' records costs the reserve script, against record keys, in the same run.

    .venv/bin/python -m bench.record_packing [--smoke] [--baseline-ref REF]

Variants, interleaved round by round (the order alternating) on the run's own redis-server:
  packed   the product's reserve script: an open single-line hold's record is one field of its bucket
  keys     the same script with packing turned off (PACKED_MAX 0): every record a key of its own with a
           TTL, as before 12-05, after the same bucket lookup
  before   with --baseline-ref: the reserve script of that git revision (e.g. the commit before packing),
           called with the KEYS it took then, as its file name says ('reserve-4+3n+m': no record bucket;
           '3n': no index bucket per line)
Each round sends N reserves of one unit (a fresh token and a distinct 13-character user each, as the
core builds them) to the variant's own SKU, pipelined 100 per round trip on one connection, and reads
the server's own time in EVALSHA from INFO commandstats (µs per call) and used_memory growth per
reservation, after one unmeasured round per variant (the first run of each command allocates its
latency histogram once). Ratios are the median over rounds of the two variants' ratio in the same round. After each round the SKU's counters must add up (held == calls, one hold per call).
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from statistics import median
from typing import Any

import redis

from bench.core_only import capture_reserve
from bench.goals import at_most, verdict
from bench.memory import used_memory
from bench.solo import delete_prefix, main, parser, write_json
from bench.suite import Context
from inventory import Inventory, Settings, ids
from inventory.holds import hold_count
from inventory.keys import KeySpace, Partition
from inventory.scripts import _INCLUDE, load_sources

NAME = "record_packing"
PREFIX = "fsrp"
PIPELINE = 100
PACKING_ON = "local PACKED_MAX = 64"
REPO = Path(__file__).resolve().parent.parent


def git_source(ref: str) -> tuple[str, str]:
    """The reserve script of a git revision, its includes spliced in from the same revision, and its key
    layout (the file name's stem, e.g. 'reserve-4+5n+m+1')."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO, check=True, capture_output=True,
                              text=True).stdout
    listing = subprocess.run(["git", "ls-tree", "--name-only", ref, "lua/"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    (name,) = [path for path in listing if Path(path).name.startswith("reserve-")]
    return _INCLUDE.sub(lambda m: show(f"lua/includes/{m.group(1)}.lua"), show(name)), Path(name).stem


def sources(baseline_ref: str | None) -> dict[str, tuple[str, str]]:
    """Each variant's reserve script and key layout."""
    current = load_sources()["reserve"]
    packed, layout = current.source, Path(current.filename).stem
    if PACKING_ON not in packed:
        raise RuntimeError("the reserve script no longer says " + PACKING_ON)
    variants = {"packed": (packed, layout), "keys": (packed.replace(PACKING_ON, "local PACKED_MAX = 0"), layout)}
    if baseline_ref:
        variants["before"] = git_source(baseline_ref)
    return variants


def layout_keys(layout: str, part: Partition, sku: str, token: str, template: list[str]) -> list[str]:
    """One line's reserve KEYS in a script's layout, from the current layout's captured call
    (record, index, dirty, switch, stock, holds, buyers, hold bucket, index bucket, record bucket)."""
    stock, holds, buyers, _, index = template[4:9]
    if "+5n" in layout:
        line = [stock, holds, buyers, part.sku(sku).bucket_of(token), index]
    else:
        line = [stock, holds, buyers, index] if "+4n" in layout else [stock, holds, buyers]
    tail = [part.record_bucket(token)] if layout.endswith("+1") else []
    return [part.reservation(token), *template[1:4], *line, *tail]


def evalsha_stats(client: redis.Redis) -> tuple[int, int]:
    """(calls, µs) of EVALSHA so far on this server."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def send_round(client: redis.Redis, keys: KeySpace, sha: str, sku: str, layout: str, template: tuple,
               users: range) -> None:
    """One round of reserves of one variant; every one must be held."""
    keys_template, args_template = template
    part = keys.of_sku(sku)
    pipe = client.pipeline(transaction=False)
    sent = 0
    for n in users:
        token = keys.token_in(ids.new_token(), part.index)
        call_keys = layout_keys(layout, part, sku, token, keys_template)
        pipe.evalsha(sha, len(call_keys), *call_keys, token, f"u{n:012d}", *args_template[2:])
        sent += 1
        if sent % PIPELINE == 0:
            check(pipe.execute())
    check(pipe.execute())


def check(replies: list[Any]) -> None:
    bad = [reply for reply in replies if not isinstance(reply, list) or reply[0] != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} reserves not held, e.g. {bad[0]!r}")


def run(ctx: Context) -> dict:
    """Scenario entry point (bench/suite.py contract)."""
    client = redis.Redis(host="127.0.0.1", port=ctx.redis_port)
    rounds, per_round = (2, 300) if ctx.smoke else (20, 10_000)
    variants = sources(getattr(ctx.args, "baseline_ref", None))
    inv = Inventory(client, Settings(key_prefix=PREFIX))
    shas = {name: client.script_load(source) for name, (source, _layout) in variants.items()}
    skus = {name: f"RP-{name.upper()}" for name in variants}
    templates = {}
    for name, sku in skus.items():
        inv.catalog.configure(sku, name=f"Product {sku}", price=1999, currency="USD", per_user_limit=5)
        inv.catalog.adjust_stock(sku, set_total=(rounds + 1) * per_round + 10, reason="seed")
        keys_, args_, _token, _user = capture_reserve(PREFIX, sku)
        templates[name] = (keys_, args_)
    per_call: dict[str, list[float]] = {name: [] for name in variants}
    per_hold: dict[str, list[float]] = {name: [] for name in variants}
    try:
        # One unmeasured round each first: Redis 7 allocates a ~25 KB latency histogram for each command
        # the first time the server runs it (latency-tracking), a one-time cost that is not per hold.
        for name in variants:
            warm = range(rounds * per_round, (rounds + 1) * per_round)
            send_round(client, inv.keys, shas[name], skus[name], variants[name][1], templates[name], warm)
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                users = range(r * per_round, (r + 1) * per_round)
                calls0, usec0 = evalsha_stats(client)
                memory0 = used_memory(client)
                send_round(client, inv.keys, shas[name], skus[name], variants[name][1], templates[name], users)
                calls1, usec1 = evalsha_stats(client)
                per_hold[name].append((used_memory(client) - memory0) / per_round)
                per_call[name].append((usec1 - usec0) / (calls1 - calls0))
                fields = client.hgetall(inv.keys.sku(skus[name]).stock)
                held = int(fields.get(b"held") or 0)
                holds = client.zcard(inv.keys.sku(skus[name]).holds) + hold_count(fields)  # 1 unit each
                if held != (r + 2) * per_round or holds != held:
                    raise RuntimeError(f"{name}: held {held} after {(r + 1) * per_round} reserves")
        version = client.info("server")["redis_version"]
    finally:
        delete_prefix(client, PREFIX)
    us = {name: round(median(values), 2) for name, values in per_call.items()}
    bytes_ = {name: round(median(values), 1) for name, values in per_hold.items()}
    pairs = [(name, "keys") for name in variants if name != "keys"] + ([("packed", "before")] if "before" in us else [])
    # each round's variants ran back to back: a round's ratio is paired in time, so drift on a shared box cancels
    ratios = {f"{a} / {b}": round(median(x / y for x, y in zip(per_call[a], per_call[b])), 3) for a, b in pairs}
    result = {
        "scenario": NAME, "smoke": ctx.smoke, "rounds": rounds, "reserves_per_round": per_round,
        "baseline_ref": getattr(ctx.args, "baseline_ref", None),
        "evalsha_us_per_call": {"median": us, "rounds": per_call},
        "used_memory_b_per_hold": {"median": bytes_, "rounds": per_hold},
        "ratios": ratios,
        "targets": {f"{key} (server µs per reserve)": at_most(value, 1.10, "x") for key, value in ratios.items()},
        "versions": {"python": platform.python_version(), "redis_server": version},
        "failures": [],  # a cost over the goal is a finding for BENCHMARKS.md, not a failed run
    }
    result["summary"] = ([f"{name:7} {us[name]:6.2f} µs per reserve in EVALSHA, {bytes_[name]:6.1f} B per hold "
                          f"(INFO)" for name in variants]
                         + [f"{key}: {verdict(goal)}" for key, goal in result["targets"].items()])
    write_json(ctx, NAME, result)
    return result


if __name__ == "__main__":
    cli = parser("python -m bench.record_packing", __doc__ or "")
    cli.add_argument("--baseline-ref", default=None, help="git revision whose reserve script runs as 'before'")
    raise SystemExit(main(NAME, run, cli.parse_args()))
