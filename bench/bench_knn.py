"""kNN head at UCF-Crime scale: memory-bank fitting time, exact query throughput and peak memory (D = 2048).

UCF-Crime's training split has 800 normal videos of about 450 snippets each (16-frame snippets), 10 crops: about
3.6 M normal snippet-crops, of which the head keeps a uniform sample of ``max_bank``. Fitting streams chunks of
ten videos (random values: the cost does not depend on them) through the reservoir; scoring times exact L2
distances of query blocks to the bank (the faster of two tries: the machine may be shared), extrapolated to the
UCF-Crime test split (290 videos, 1.11 M frames: about 69 k snippets x 10 crops).

    .venv/bin/python bench/bench_knn.py [--banks 20000 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import torch

from vadmil.heads.knn import KNNHead

D, SNIPPETS_PER_VIDEO, CROPS = 2048, 450, 10
UCF_NORMAL_TRAIN = 800
UCF_TEST_QUERIES = 1_110_000 // 16 * CROPS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--banks", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--queries", type=int, default=2048)
    parser.add_argument("--fit-videos", type=int, default=UCF_NORMAL_TRAIN)
    args = parser.parse_args()
    torch.manual_seed(0)
    chunk = torch.randn(10 * SNIPPETS_PER_VIDEO * CROPS, D)
    n_chunks = args.fit_videos // 10
    queries = torch.randn(args.queries, D)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    print(f"{machine}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    print(
        f"fit: {n_chunks * len(chunk):,} normal snippet-crops ({args.fit_videos} videos x {SNIPPETS_PER_VIDEO} x {CROPS})"
    )
    print("| max_bank | bank memory | fit | query (per 1k) | UCF test split (extrapolated) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for bank in args.banks:
        head = KNNHead(D, k=5, metric="l2", max_bank=bank, chunk=1024)
        start = time.perf_counter()
        head.fit_normal(lambda: (chunk for _ in range(n_chunks)))
        fit = time.perf_counter() - start
        times = []
        for _ in range(2):
            start = time.perf_counter()
            with torch.no_grad():
                head.raw_scores(queries[None], None)
            times.append(time.perf_counter() - start)
        per_1k = min(times) / args.queries * 1000
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {bank:,} | {head.bank.numel() * 4 / 2**20:.0f} MB | {fit:.1f} s | {per_1k:.2f} s | "
              f"{per_1k * UCF_TEST_QUERIES / 1000 / 60:.0f} min | {rss:.0f} MB |", flush=True)  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
