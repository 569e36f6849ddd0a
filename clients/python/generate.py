#!/usr/bin/env python3
"""Generate the Python gRPC stubs of Ally's API from proto/ with grpcio-tools.

The stubs go to clients/python/generated/ (or --out DIR), which git ignores, as the
package `ally.v1`. The protos import only Google's well-known types, whose Python
modules ship with the protobuf package, so nothing else is generated.

Usage: python clients/python/generate.py [--out DIR]
"""

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
DEFAULT_OUT = HERE / "generated"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder to write the stubs to (default: {DEFAULT_OUT})",
    )
    args = parser.parse_args()

    try:
        from grpc_tools import protoc
    except ImportError:
        print(
            "error: grpcio-tools is not installed; run "
            "`pip install -r clients/python/requirements.txt` or `.ci/install-tools`",
            file=sys.stderr,
        )
        return 1

    protos = sorted(PROTO_ROOT.glob("ally/v1/*.proto"))
    if not protos:
        print(f"error: no .proto files under {PROTO_ROOT / 'ally/v1'}", file=sys.stderr)
        return 1

    out = args.out.resolve()
    # Remove the stubs of an earlier run, so a deleted .proto leaves no stale module.
    shutil.rmtree(out / "ally", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    # grpcio-tools ships the well-known types' .proto files (google/protobuf/*.proto).
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(path.relative_to(PROTO_ROOT)) for path in protos),
    ]
    status = protoc.main(arguments)
    if status != 0:
        print(f"error: protoc failed with status {status}", file=sys.stderr)
        return 1
    print(f"generated stubs of {len(protos)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
