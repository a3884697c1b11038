"""Suite-wide guard: no test may open a connection beyond this machine (loopback stays allowed).

The data-layer tests serve fixtures from ``http.server`` on 127.0.0.1 and probe "unreachable" on 127.0.0.1:1, so
loopback addresses (and Unix sockets) pass; anything else raises ``NetworkAccessError`` at the call *and* fails
the test at teardown, even if the code under test swallowed the exception.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkAccessError(AssertionError):
    """Raised when a test tries to reach a non-loopback address (not an OSError, so no retry loop hides it)."""


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%", 1)[0]  # "[::1]", "fe80::1%eth0"
    if host.lower() in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name would need a DNS lookup: not allowed


def _allowed(family: object, address: object) -> bool:
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, (str, bytes)):
        return True  # a Unix socket path never leaves the machine
    return isinstance(address, tuple) and len(address) >= 2 and _is_loopback(address[0])


@pytest.fixture(autouse=True)
def network_guard(monkeypatch):
    """Block non-loopback connections for every test; yields the list of blocked attempts (tests of the guard
    itself clear it)."""
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create_connection, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def refuse(what: str, target: object) -> None:
        attempts.append(f"{what}({target!r})")
        raise NetworkAccessError(
            f"network access attempted in a test: {what}({target!r}); only loopback is allowed"
        )

    def connect(self, address):
        if not _allowed(self.family, address):
            refuse("socket.connect", address)
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _allowed(self.family, address):
            refuse("socket.connect_ex", address)
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not _allowed(None, address):
            refuse("socket.create_connection", address)
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "", b"") and not _is_loopback(host):
            try:
                ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host)
            except (ValueError, AttributeError, UnicodeDecodeError):
                refuse("socket.getaddrinfo", host)  # a DNS lookup of a real host name
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    if attempts:
        pytest.fail(f"test attempted network access: {attempts}", pytrace=False)


@pytest.fixture(params=["torch", "native"])
def csr_kernel(request):
    """Run a test once on PyTorch's sparse kernels and once on the compiled ones (cortexnet.sparse.native);
    modules opt in with ``pytestmark = pytest.mark.usefixtures("csr_kernel")``. Where no compiler exists the
    native run is skipped (test_sparse_native checks that a present compiler does build them)."""
    from cortexnet.sparse import native

    if request.param == "native" and not native.native_available():
        pytest.skip(f"compiled CSR kernels unavailable: {native.native_status()}")
    previous = native.set_csr_kernel(request.param)
    yield request.param
    native.set_csr_kernel(previous)
