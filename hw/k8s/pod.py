"""The calibration Job's program: ``python -m hw.k8s.pod calibrate --name NODE [--quick] ...``.

It runs ``hw.calibrate.calibrate`` and prints the profile YAML to its log as a ``PROFILE`` block
(hw/podlog.py), which the backend reads back. Nothing here imports the Kubernetes client.
"""

from __future__ import annotations

import argparse
import sys

from hw.podlog import emit


def calibrate_main(argv: list[str]) -> int:
    import yaml

    from hw.calibrate import calibrate
    from sim.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m hw.k8s.pod calibrate")
    ap.add_argument("--name", required=True, help="profile name (the node's name)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--provider")
    ap.add_argument("--algorithms", help="comma-separated")
    args = ap.parse_args(argv)
    names = [a for a in (args.algorithms or "").split(",") if a] or None
    try:
        data = calibrate(names, args.provider, args.quick)
    except UserError as exc:
        sys.stderr.write("\n".join(exc.lines) + "\n")
        return 2
    data["profile"] = args.name
    data["description"] = f"Measured by a pqtwin calibration Job on Kubernetes node {args.name}. " + data["description"]
    emit("PROFILE", args.name, yaml.safe_dump(data, sort_keys=False, width=120).encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:
        return calibrate_main(argv[1:])
    sys.stderr.write("usage: python -m hw.k8s.pod calibrate --name NODE [--quick] [--provider P] [--algorithms A,B]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
