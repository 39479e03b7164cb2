"""Issue 9's acceptance runs of `w2vprof fl simulate`, with the figures the closing note quotes.

    python benchmarks/fl_simulation.py --out /tmp/fl-bench [--rounds 20] [--clients 10] [--large-rounds 3]

1. tiny model, --clients speaker-disjoint clients of a generated speech corpus, --rounds rounds, FedAvg and
   loss-based aggregation on the same data: validation loss of round 0 (initial model) and of the last round.
2. the paper's 100-client setting, 20 clients per round, --large-rounds rounds.
Per run: mean and max client seconds per round, median peak memory of a client round, wall time. The plot of
both validation curves is written to OUT/fl-report/.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def summarise(label: str, out: Path, started: float) -> None:
    from w2vprof.fl.records import read_clients_csv, read_rounds_csv

    rounds = read_rounds_csv(out / "rounds.csv")
    clients = [c for c in read_clients_csv(out / "clients.csv") if c.status == "ok"]
    seconds = [c.client_sec for c in clients if c.client_sec is not None]
    train = [c.train_sec for c in clients if c.train_sec is not None]
    peaks = [c.peak_rss_bytes for c in clients if c.peak_rss_bytes is not None]
    own = [c.peak_rss_bytes - c.start_rss_bytes for c in clients if c.peak_rss_bytes and c.start_rss_bytes]
    complete = all(c.peak_rss_bytes and c.client_sec for c in clients)
    print(
        f"{label}: validation loss round 0 {rounds[0].validation_loss:.4f} -> round {rounds[-1].round} "
        f"{rounds[-1].validation_loss:.4f}; {len(clients)} client rounds (peak memory and seconds in every row: "
        f"{complete}); client_sec mean {statistics.mean(seconds):.3f} max {max(seconds):.3f}; train_sec mean "
        f"{statistics.mean(train):.3f}; peak RSS median {statistics.median(peaks) / 1e6:.0f} MB (round's own "
        f"median {statistics.median(own) / 1e6:.1f} MB); wall {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--utterances", type=int, default=8, help="utterances per client")
    parser.add_argument("--large-rounds", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    from w2vprof.fl.plots import write_plots
    from w2vprof.fl.settings import FlSettings
    from w2vprof.fl.simulate import simulate

    runs = []
    for aggregation in ("fedavg", "loss"):
        out = args.out / f"{args.clients}-clients-{aggregation}"
        started = time.perf_counter()
        simulate(
            FlSettings(
                model="tiny",
                clients=args.clients,
                rounds=args.rounds,
                aggregation=aggregation,
                utterances_per_client=args.utterances,
                out_dir=str(out),
            )
        )
        summarise(f"{args.clients} clients, {aggregation}", out, started)
        runs.append(out)
    for path in write_plots(runs, args.out / "fl-report"):
        print(f"plot: {path}")
    if not args.skip_large:
        out = args.out / "100-clients-fedavg"
        started = time.perf_counter()
        simulate(
            FlSettings(
                model="tiny",
                clients=100,
                clients_per_round=20,
                rounds=args.large_rounds,
                utterances_per_client=4,
                out_dir=str(out),
            )
        )
        summarise("100 clients, 20 per round, fedavg", out, started)


if __name__ == "__main__":
    main()
