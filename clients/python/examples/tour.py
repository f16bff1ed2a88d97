"""The README tour's core from Python: upsert with consent, lookup, search, watch.

    python clients/python/examples/tour.py --addr 127.0.0.1:50051 --token vault_...

The token is a campaign tool's with the newsletter purpose. Exits non-zero, saying what
differed, if the daemon does not answer as the README says.
"""

import argparse
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import grpc  # noqa: E402

from vault_client import Vault  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--token", default=os.environ.get("VAULT_TOKEN", ""))
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    email = f"Marie.Curie+py{run}@Example.FR"
    tag = f"py-{run}"
    with Vault(args.addr, args.token, purpose="newsletter") as vault:
        # A newsletter sign-up: the consent names the email it came through.
        consent = Vault.consent(
            "newsletter", "email", "form", "2026-03", contact_email=email
        )
        up = vault.upsert(
            consents=[consent], email=email, given_name="Marie", family_name="Curie", tags=[tag]
        )
        assert up.created, f"a new email makes a new supporter: {up}"
        again = vault.upsert(email=email.upper(), tags=[tag])
        assert (again.id, again.created) == (up.id, False), f"same email, same supporter: {again}"

        found = vault.lookup(email=email.lower())
        assert found.id == up.id, f"lookup by email: {found.id} != {up.id}"
        assert found.email == email.lower(), f"the email is stored normalized: {found.email}"
        assert not found.phone, "the newsletter never sees a phone"

        segment = [s.id for s in vault.search(tags_all=[tag])]
        assert segment == [up.id], f"the segment by tag: {segment}"

        # The change feed from the start until this person's events appear.
        kinds = []
        stream = vault.watch(timeout=30)
        try:
            for event in stream:
                if event.subject_id == up.id:
                    kinds.append(event.kind)
                    if len(kinds) >= 2:
                        break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            stream.cancel()
        assert kinds, "Watch delivered no event about the new supporter"

        # Someone not in the file is answered NOT_FOUND, never an error naming anyone.
        try:
            vault.lookup(email=f"nobody-{run}@example.fr")
            raise AssertionError("lookup of an absent email succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e

    print(f"python tour: ok (supporter {up.id}, watch saw {', '.join(kinds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
