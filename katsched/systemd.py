"""sd_notify over `$NOTIFY_SOCKET`: READY, STATUS, STOPPING and WATCHDOG for a `Type=notify` unit.

Without `$NOTIFY_SOCKET` (not started by systemd) every call does nothing. A failed send is logged once and
never raised: telling systemd is a courtesy, not part of scheduling.
"""

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("katsched.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1")

    def watchdog(self) -> None:
        if self.watchdog_interval is not None:
            self.send("WATCHDOG=1")

    def send(self, message: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as error:
            if not self._warned:
                log.warning("sd_notify_failed error=%s", error)
                self._warned = True


def _socket_address(value: str) -> str | None:
    if not value:
        return None
    if value.startswith("@"):  # an abstract socket
        return "\0" + value[1:]
    return value


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of `$WATCHDOG_USEC` in seconds (systemd's advice), if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
