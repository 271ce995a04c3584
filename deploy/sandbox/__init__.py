"""Local throwaway Debian 12 or 13 "sandbox" servers (systemd-nspawn) to try the kit on.

Each host looks like a fresh cloud VM: systemd as PID 1, sshd on port 22 at 10.231.N.2, a
`deploy` user with passwordless sudo, apt working. Needs root; see requirements-apt.txt.

    from deploy.sandbox import up, down, list_hosts
    host = up()            # SandboxHost(name="fs1", address="10.231.1.2", ...)
    down(host.name)
"""
__all__ = ["up", "down", "restart", "list_hosts", "SandboxHost", "state_dir"]
_FROM = {"up": "manager", "down": "manager", "restart": "manager", "list_hosts": "manager",
         "SandboxHost": "state", "state_dir": "paths"}


def __getattr__(name: str):
    """The names above, imported on first use: `fab` loads this package for its task list."""
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
