"""Offline guard for the test suite: any connection off this machine fails loudly.

The test suite puts this folder first on PYTHONPATH, so every Python process
it starts (pytest, notebook kernels, the book build) imports this file at
start-up. Connections to loopback (Jupyter kernels talk over 127.0.0.1) and
Unix sockets still work; anything else raises ``NetworkBlockedError`` and is
appended to the file named by ``OML_NETWORK_LOG``, so the suite fails even if
a library catches the error and carries on.
"""

import ipaddress
import os
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlockedError(RuntimeError):
    pass


def _is_local(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _blocked(what: str):
    log = os.environ.get("OML_NETWORK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {what}\n")
    return NetworkBlockedError(
        f"Open Models Lab runs offline, but this code tried to reach {what}. Load data and "
        "models from the installed packages (labutils.data, labutils.models) instead of a hub."
    )


_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise _blocked(f"{address[0]}:{address[1]}")
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise _blocked(f"{address[0]}:{address[1]}")
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise _blocked(f"{host} (name lookup)")
    return _getaddrinfo(host, *args, **kwargs)


if os.environ.get("OML_OFFLINE_GUARD", "1") != "0":
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
