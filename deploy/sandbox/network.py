"""One network namespace per host, a veth pair into it, and NAT so apt works inside.

Host N gets netns `sbx-<name>`, host side veth `sbxN` = 10.231.N.1/24, container side `eth0` =
10.231.N.2/24 with a default route via .1. One MASQUERADE rule (plus FORWARD accepts, for
machines whose FORWARD policy is DROP) covers 10.231.0.0/16; it and ip_forward exist only while
at least one host does. The builders return argv lists; `run` is the only thing that executes.
"""
import os
import subprocess

SUBNET = "10.231.0.0/16"
RULE_COMMENT = "flasksample-sandbox"
MAX_INDEX = 254
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def address(index: int) -> str:
    """The host's own address (the container side)."""
    _check_index(index)
    return f"10.231.{index}.2"


def gateway(index: int) -> str:
    """The machine's side of host N's link."""
    _check_index(index)
    return f"10.231.{index}.1"


def netns_name(name: str) -> str:
    return f"sbx-{name}"


def veth_name(index: int) -> str:
    """Host-side veth name (≤15 chars, as the kernel requires)."""
    _check_index(index)
    return f"sbx{index}"


def _check_index(index: int) -> None:
    if not 1 <= index <= MAX_INDEX:
        raise ValueError(f"sandbox index must be 1..{MAX_INDEX}, got {index}")


def next_free_index(used: set[int]) -> int | None:
    """The lowest index not in `used`, or None when all 254 are taken."""
    for index in range(1, MAX_INDEX + 1):
        if index not in used:
            return index
    return None


def setup_argvs(name: str, index: int) -> list[list[str]]:
    """Commands that create host N's namespace and link, in order."""
    ns, veth = netns_name(name), veth_name(index)
    return [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
        ["ip", "addr", "add", f"{gateway(index)}/24", "dev", veth],
        ["ip", "link", "set", veth, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
        ["ip", "-n", ns, "addr", "add", f"{address(index)}/24", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "route", "add", "default", "via", gateway(index)],
    ]


def teardown_argvs(name: str, index: int) -> list[list[str]]:
    """Commands that remove host N's namespace and link (each may fail if already gone)."""
    return [
        ["ip", "netns", "delete", netns_name(name)],
        ["ip", "link", "delete", veth_name(index)],
    ]


def nat_rules() -> list[list[str]]:
    """The iptables rules (table, chain, match…) shared by all hosts, without the action flag."""
    tag = ["-m", "comment", "--comment", RULE_COMMENT]
    return [
        ["-t", "nat", "POSTROUTING", "-s", SUBNET, "!", "-d", SUBNET, *tag, "-j", "MASQUERADE"],
        ["-t", "filter", "FORWARD", "-s", SUBNET, *tag, "-j", "ACCEPT"],
        ["-t", "filter", "FORWARD", "-d", SUBNET, *tag, "-j", "ACCEPT"],
    ]


def iptables_argv(action: str, rule: list[str]) -> list[str]:
    """`iptables -t T -<action> CHAIN …` for one rule from nat_rules(); action is C, I or D."""
    table_flag, table, chain, *match = rule
    return ["iptables", "-w", table_flag, table, f"-{action}", chain, *match]


def existing_netns() -> set[str]:
    """Host names of every sandbox netns on the machine (`sbx-NAME` under /run/netns)."""
    try:
        return {n[len("sbx-"):] for n in os.listdir("/run/netns") if n.startswith("sbx-")}
    except FileNotFoundError:
        return set()


def existing_veth_indexes() -> set[int]:
    """Indexes N of every `sbxN` link on the machine."""
    found = set()
    for link in os.listdir("/sys/class/net"):
        if link.startswith("sbx") and link[3:].isdigit():
            found.add(int(link[3:]))
    return found


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run one command, capturing output; raise RuntimeError with its stderr when check fails."""
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def nat_up() -> None:
    """Add the shared rules that are missing (idempotent)."""
    for rule in nat_rules():
        if run(iptables_argv("C", rule), check=False).returncode != 0:
            run(iptables_argv("I", rule))


def nat_down() -> None:
    """Remove every copy of the shared rules."""
    for rule in nat_rules():
        while run(iptables_argv("C", rule), check=False).returncode == 0:
            run(iptables_argv("D", rule))


def read_ip_forward() -> str:
    with open(IP_FORWARD) as f:
        return f.read().strip()


def write_ip_forward(value: str) -> None:
    with open(IP_FORWARD, "w") as f:
        f.write(value + "\n")
