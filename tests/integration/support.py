"""What several integration test modules share."""

import subprocess
from collections.abc import Callable

from katsched.core.models import Plugin

Run = Callable[..., subprocess.CompletedProcess[str]]

HOSTNAME = Plugin(
    id="dns-records", type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[]
)
