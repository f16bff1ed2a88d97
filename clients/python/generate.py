"""Generates the vault.v1 stubs from the repository's proto/ into vault_client/_gen.

Run it once after installing requirements.txt (and after any change to proto/):

    python clients/python/generate.py

grpcio-tools carries its own protoc and the well-known types (google/protobuf/*.proto),
so no system protoc is needed. The generated code is not committed: proto/ is the source.
"""

import pathlib
import shutil
import sys

from grpc_tools import protoc
import grpc_tools

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
OUT = HERE / "vault_client" / "_gen"


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "vault" / "v1").glob("*.proto"))
    if not sources:
        print(f"no .proto files under {PROTO}", file=sys.stderr)
        return 1
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"-I{well_known}",
            f"--python_out={OUT}",
            f"--pyi_out={OUT}",
            f"--grpc_python_out={OUT}",
            *sources,
        ]
    )
    if code != 0:
        print(f"protoc failed ({code})", file=sys.stderr)
        return code
    # The generated modules import each other as vault.v1.*: make them packages.
    for d in (OUT / "vault", OUT / "vault" / "v1"):
        (d / "__init__.py").touch()
    print(f"generated {len(sources)} files' stubs into {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
