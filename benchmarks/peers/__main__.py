"""``python -m benchmarks.peers [NAME ...]``: install the peer venvs ahead of a benchmark run."""

from __future__ import annotations

import sys

from benchmarks.peers.install import PEERS, PeerUnavailable, ensure


def main(argv: list[str]) -> int:
    names = argv or list(PEERS)
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        print(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        try:
            python, versions = ensure(name, log=lambda m: print(m, file=sys.stderr, flush=True))
        except PeerUnavailable as exc:
            print(f"{name}: cannot be installed here: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {python} ({', '.join(f'{k} {v}' for k, v in versions.items())})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
