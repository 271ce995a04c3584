"""Local throwaway Debian 12 or 13 "sandbox" servers (systemd-nspawn) to try the kit on.

Each host looks like a fresh cloud VM: systemd as PID 1, sshd on port 22 at 10.231.N.2, a
`deploy` user with passwordless sudo, apt working. Needs root; see requirements-apt.txt.

    from deploy.sandbox import up, down, list_hosts
    host = up()            # SandboxHost(name="fs1", address="10.231.1.2", ...)
    down(host.name)
"""
from deploy.sandbox.manager import down, list_hosts, restart, up
from deploy.sandbox.paths import state_dir
from deploy.sandbox.state import SandboxHost

__all__ = ["up", "down", "restart", "list_hosts", "SandboxHost", "state_dir"]
