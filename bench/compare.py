#!/usr/bin/env python3
"""sipline against Kamailio, same scenarios, same machine, one run. Prints figures, asserts nothing.

    python bench/compare.py                      # options, invite, register; 500..4000 calls/s, 10 s
    python bench/compare.py --quick              # smoke run: 2 rates x 3 s per sweep
    python bench/compare.py --workers 1,2        # also sipline workers=2 against Kamailio -n 2
    python bench/compare.py --scenarios invite --rates 250,500,1000 --json /tmp/cmp.json
    python bench/sipbench.py --compare ...       # the same thing

For every worker count and scenario it starts a *fresh* server, runs the sweep of
bench/sipbench.py against it and stops it with SIGTERM to its PID:

* sipline: ``python -m sipline run -c <generated TOML>`` (one UDP listener on loopback,
  ``workers = N``; for invite/register a routing script from
  ``sipbench.sipline_routes_script()`` and the ``registrar`` plugin when installed);
* Kamailio, when ``kamailio`` is installed: ``kamailio -DD -E -f bench/kamailio.cfg -n N``
  on another loopback port (registrar with in-memory usrloc + stateful record-routing proxy).

Then a side-by-side table per scenario: for each rate, achieved calls/s, fail % and server
CPU-seconds per 1000 calls of both, and the ratio sipline/Kamailio of CPU-s per 1000 calls
(> 1: sipline spends more CPU per call). The headline ratio is taken at the highest rate both
servers sustained (same offered load, so the same batching conditions). Column meanings: see
the docstring of bench/sipbench.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sipbench  # noqa: E402
from sipbench import SCENARIOS, Step, Sweep  # noqa: E402


def pick_port(start: int, host: str, avoid: set[int]) -> int:
    port = start
    for _ in range(200):
        if port not in avoid and sipbench.udp_port_free(port, host):
            return port
        port += 1
    raise RuntimeError(f"no free UDP port near {start}")


def run_one(kind: str, workers: int, scenario: str, port: int, args: argparse.Namespace,
            rates: list[int], duration: float, workroot: Path) -> Sweep:
    host = "127.0.0.1"
    workdir = workroot / f"{kind}-w{workers}-{scenario}"
    if kind == "sipline":
        server = sipbench.start_sipline(port, workers, workdir, with_script=scenario != "options",
                                        uas_port=args.uas_port, host=host, scenario=scenario)
    else:
        server = sipbench.start_kamailio(port, workers, workdir, host=host, scenario=scenario)
    try:
        if server.ready_status is None:
            sweep = Sweep(server.label, scenario, f"{host}:{port}", [server.pid], rates, duration)
            sweep.verdict = (f"{server.label}: did not answer OPTIONS on {host}:{port} "
                             f"(exit {server.proc.poll()}); log tail:\n{server.log_tail()}")
            print(f"\n== {server.label}: {scenario} ==\n-> {sweep.verdict}", flush=True)
            return sweep
        return sipbench.run_sweep(
            server.label, scenario, host, port, [server.pid], rates, duration,
            max_calls=args.max_calls, local_port=args.local_port, uas_port=args.uas_port,
            pause_ms=args.pause_ms, keep_going=args.keep_going, keep_traces=args.keep_traces,
            caller_transport=sipbench.caller_transport(args.caller_transport, workers))
    finally:
        server.stop()


def _cell(step: Step | None) -> str:
    if step is None:
        return f"{'-':>8} {'-':>7} {'-':>7}"
    cpu = f"{step.srv_cpu_per_1000:.3f}" if step.srv_cpu_per_1000 is not None else "-"
    return f"{step.achieved_cps:>8.0f} {step.fail_pct:>7.2f} {cpu:>7}"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def side_by_side(sip: Sweep, kam: Sweep | None) -> dict[str, Any]:
    """Print the per-rate table of one scenario; return the headline figures."""
    print(f"\n### {sip.scenario}: {sip.label}" + (f" vs {kam.label}" if kam else ""))
    head = f"{'rate':>6} | {'cps':>8} {'fail%':>7} {'CPU/1k':>7}"
    if kam:
        head += f" | {'cps':>8} {'fail%':>7} {'CPU/1k':>7} | {'ratio':>5}"
    print(f"{'':>6} | {sip.label:^24}" + (f" | {kam.label:^24} |" if kam else ""))
    print(head)
    s_by = {s.rate: s for s in sip.steps}
    k_by = {s.rate: s for s in kam.steps} if kam else {}
    common = None
    for rate in sorted(set(s_by) | set(k_by)):
        s, k = s_by.get(rate), k_by.get(rate)
        line = f"{rate:>6} | {_cell(s)}"
        if kam:
            r = ratio(s.srv_cpu_per_1000 if s else None, k.srv_cpu_per_1000 if k else None)
            line += f" | {_cell(k)} | {(f'{r:.2f}' if r is not None else '-'):>5}"
            if s and k and s.sustained and k.sustained and r is not None:
                common = (rate, r)
        print(line)
    out: dict[str, Any] = {
        "scenario": sip.scenario,
        "sipline": sip.label,
        "sipline_max_sustained_cps": sip.max_sustained_cps,
        "sipline_cpu_per_1000_at_max": sip.cpu_per_1000_at_max,
        "sipline_verdict": sip.verdict,
    }
    print(f"max sustained: {sip.label} "
          f"{sip.max_sustained_cps or 0:.0f} calls/s"
          + (f" ({sip.cpu_per_1000_at_max:.3f} CPU-s/1000)" if sip.cpu_per_1000_at_max else ""),
          end="")
    if kam:
        out.update({
            "kamailio": kam.label,
            "kamailio_max_sustained_cps": kam.max_sustained_cps,
            "kamailio_cpu_per_1000_at_max": kam.cpu_per_1000_at_max,
            "kamailio_verdict": kam.verdict,
            "cpu_per_1000_ratio": common[1] if common else None,
            "ratio_at_rate": common[0] if common else None,
        })
        print(f"; {kam.label} {kam.max_sustained_cps or 0:.0f} calls/s"
              + (f" ({kam.cpu_per_1000_at_max:.3f} CPU-s/1000)" if kam.cpu_per_1000_at_max
                 else ""))
        if common:
            print(f"sipline/Kamailio CPU-s per 1000 calls at {common[0]} calls/s "
                  f"(highest rate both sustained): {common[1]:.2f}")
        else:
            print("sipline/Kamailio CPU-s per 1000 calls: no rate sustained by both")
    else:
        print()
    if not sip.max_sustained_cps:
        print(f"!! {sip.verdict}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run the same sipp scenarios against sipline and Kamailio (when installed) "
                    "and print them side by side.")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help="comma list among options,invite,register (default: all three)")
    p.add_argument("--workers", default="1",
                   help="comma list of sipline worker counts; Kamailio gets the same number of "
                        "UDP children (-n) (default 1; '1,2' also measures workers = 2)")
    p.add_argument("--no-kamailio", action="store_true", help="measure sipline only")
    p.add_argument("--sipline-port", type=int, default=5170,
                   help="first UDP port tried for sipline (default %(default)s)")
    p.add_argument("--kamailio-port", type=int, default=5180,
                   help="first UDP port tried for Kamailio (default %(default)s)")
    sipbench.add_common_options(p)
    args = p.parse_args(argv)
    os.environ["SIPBENCH_MI"] = args.mi  # read where the sipline TOML is written
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in SCENARIOS]
    if bad:
        p.error(f"unknown scenario(s): {', '.join(bad)}")
    try:
        workers_list = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        p.error("--workers expects numbers like 1,2")
    rates, duration = sipbench.resolve_rates(args)

    info = sipbench.machine_info()
    sipbench.print_machine(info)
    with_kamailio = not args.no_kamailio and info["kamailio"] is not None
    if not args.no_kamailio and not with_kamailio:
        print("kamailio is not installed: sipline only (apt-get install kamailio for the "
              "comparison)")
    print(f"rates {','.join(map(str, rates))} calls/s, {duration:g} s per step, "
          f"sipline workers {','.join(map(str, workers_list))}")

    workroot = Path(tempfile.mkdtemp(prefix="sipbench-compare-"))
    results: list[dict[str, Any]] = []
    sweeps: list[Sweep] = []
    try:
        for workers in workers_list:
            for scenario in scenarios:
                used = {args.uas_port}
                sport = pick_port(args.sipline_port, "127.0.0.1", used)
                sip = run_one("sipline", workers, scenario, sport, args, rates, duration,
                              workroot)
                sweeps.append(sip)
                kam = None
                if with_kamailio:
                    kport = pick_port(args.kamailio_port, "127.0.0.1", used | {sport})
                    kam = run_one("kamailio", workers, scenario, kport, args, rates, duration,
                                  workroot)
                    sweeps.append(kam)
                results.append({"workers": workers, "sipline_sweep": sip, "kamailio_sweep": kam})
        print("\n\n======== side by side ========")
        sipbench.print_machine(info)
        print("CPU/1k = server CPU-seconds per 1000 successful calls; "
              "ratio = sipline / Kamailio of CPU/1k (lower is better for sipline)")
        headlines = []
        for r in results:
            h = side_by_side(r["sipline_sweep"], r["kamailio_sweep"])
            h["workers"] = r["workers"]
            headlines.append(h)
        if args.json:
            sipbench.write_json(args.json, {"machine": info, "rates": rates,
                                            "duration": duration, "headlines": headlines,
                                            "sweeps": sweeps})
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
