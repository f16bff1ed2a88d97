"""A small Python client for the vault's gRPC API (vault.v1).

The stubs are generated from the repository's proto/ by ``generate.py`` (grpcio-tools);
this module adds what every call needs: the token (``authorization: Bearer ...``), the
purpose the call is made for (``x-vault-purpose``), an optional request id, and TLS.

    from vault_client import Vault

    vault = Vault("127.0.0.1:50051", token, purpose="newsletter")
    created = vault.upsert(email="marie@example.fr", consents=[vault.consent("email", ...)])

Errors are grpc.RpcError with the status code and the daemon's message (which never names
a person the caller may not see).
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Iterable, Iterator, Optional

import grpc

_GEN = os.path.join(os.path.dirname(__file__), "_gen")
if not os.path.isdir(os.path.join(_GEN, "vault")):
    raise ImportError(
        "vault_client's stubs are not generated: run `python clients/python/generate.py`"
    )
# The generated modules import each other as vault.v1.*.
sys.path.insert(0, _GEN)

from vault.v1 import consent_pb2, consent_pb2_grpc  # noqa: E402
from vault.v1 import supporter_pb2  # noqa: E402
from vault.v1 import supporters_pb2, supporters_pb2_grpc  # noqa: E402

#: Reply header of Supporters.Search holding the next page's token.
NEXT_PAGE_TOKEN = "x-vault-next-page-token"

__all__ = ["NEXT_PAGE_TOKEN", "Vault", "consent_pb2", "supporter_pb2", "supporters_pb2"]


class Vault:
    """One connection to the daemon, for one client token and one purpose."""

    def __init__(
        self,
        addr: str,
        token: str,
        purpose: Optional[str] = None,
        ca_cert: Optional[bytes] = None,
    ) -> None:
        if ca_cert is None:
            self._channel = grpc.insecure_channel(addr)
        else:
            self._channel = grpc.secure_channel(
                addr, grpc.ssl_channel_credentials(root_certificates=ca_cert)
            )
        self._token = token
        self.purpose = purpose
        self.supporters = supporters_pb2_grpc.SupportersStub(self._channel)
        self.consents = consent_pb2_grpc.ConsentStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def metadata(self, purpose: Optional[str] = None) -> list[tuple[str, str]]:
        """The call metadata: token, purpose, and a fresh request id for the access log."""
        md = [("authorization", f"Bearer {self._token}"), ("x-request-id", str(uuid.uuid4()))]
        purpose = purpose or self.purpose
        if purpose:
            md.append(("x-vault-purpose", purpose))
        return md

    @staticmethod
    def consent(
        purpose: str,
        channel: str,
        source: str,
        notice_version: str,
        contact_email: str = "",
        contact_phone: str = "",
    ) -> consent_pb2.ConsentRequest:
        """A consent to record with an upsert: the contact point it came through is named."""
        return consent_pb2.ConsentRequest(
            purpose=purpose,
            channel=channel,
            source=source,
            notice_version=notice_version,
            contact_email=contact_email,
            contact_phone=contact_phone,
        )

    def upsert(
        self,
        consents: Iterable[consent_pb2.ConsentRequest] = (),
        **fields,
    ) -> supporters_pb2.UpsertResponse:
        """Creates or merges a supporter (dedupe by email or phone)."""
        supporter = supporter_pb2.Supporter(**fields)
        request = supporters_pb2.UpsertRequest(supporter=supporter, consents=list(consents))
        return self.supporters.Upsert(request, metadata=self.metadata())

    def lookup(self, email: str = "", phone: str = "") -> supporter_pb2.Supporter:
        if email:
            request = supporters_pb2.LookupRequest(email=email)
        else:
            request = supporters_pb2.LookupRequest(phone=phone)
        return self.supporters.Lookup(request, metadata=self.metadata())

    def search(
        self, tags_all: Iterable[str] = (), postcodes: Iterable[str] = ()
    ) -> Iterator[supporter_pb2.Supporter]:
        """Every supporter of the segment, page by page."""
        token = ""
        while True:
            request = supporters_pb2.SearchRequest(
                tags_all=list(tags_all), postcodes=list(postcodes), page_token=token
            )
            stream = self.supporters.Search(request, metadata=self.metadata())
            # The next page's token, when there is one, comes in the reply's headers.
            token = dict(stream.initial_metadata() or ()).get(NEXT_PAGE_TOKEN, "")
            yield from stream
            if not token:
                return

    def watch(self, cursor: str = "", timeout: Optional[float] = None):
        """The change feed from `cursor` (a live stream: cancel it when done)."""
        return self.supporters.Watch(
            supporters_pb2.WatchRequest(cursor=cursor), metadata=self.metadata(), timeout=timeout
        )
