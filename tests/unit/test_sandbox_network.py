"""Sandbox networking: addresses, names and the ip/iptables commands, as rendered."""
import pytest

from deploy.sandbox import network


def test_addresses_follow_the_index():
    assert network.address(7) == "10.231.7.2"
    assert network.gateway(7) == "10.231.7.1"
    assert network.veth_name(254) == "sbx254"
    assert len(network.veth_name(254)) <= 15


@pytest.mark.parametrize("index", [0, 255, -1])
def test_index_out_of_range_is_refused(index):
    with pytest.raises(ValueError):
        network.address(index)


def test_next_free_index_takes_the_lowest_gap():
    assert network.next_free_index(set()) == 1
    assert network.next_free_index({1, 2, 4}) == 3
    assert network.next_free_index(set(range(1, 255))) is None


def test_setup_creates_netns_veth_and_route():
    argvs = network.setup_argvs("fs3", 3)
    assert argvs[0] == ["ip", "netns", "add", "sbx-fs3"]
    assert ["ip", "link", "add", "sbx3", "type", "veth", "peer", "name", "eth0",
            "netns", "sbx-fs3"] in argvs
    assert ["ip", "addr", "add", "10.231.3.1/24", "dev", "sbx3"] in argvs
    assert ["ip", "-n", "sbx-fs3", "addr", "add", "10.231.3.2/24", "dev", "eth0"] in argvs
    assert ["ip", "-n", "sbx-fs3", "link", "set", "lo", "up"] in argvs
    assert argvs[-1] == ["ip", "-n", "sbx-fs3", "route", "add", "default", "via", "10.231.3.1"]


def test_teardown_removes_netns_and_veth():
    assert network.teardown_argvs("fs3", 3) == [
        ["ip", "netns", "delete", "sbx-fs3"],
        ["ip", "link", "delete", "sbx3"],
    ]


def test_masquerade_rule_is_tagged_and_scoped_to_the_sandbox_subnet():
    nat = network.nat_rules()[0]
    assert network.iptables_argv("I", nat) == [
        "iptables", "-w", "-t", "nat", "-I", "POSTROUTING", "-s", "10.231.0.0/16",
        "!", "-d", "10.231.0.0/16", "-m", "comment", "--comment", "flasksample-sandbox",
        "-j", "MASQUERADE",
    ]
    for rule in network.nat_rules():
        assert "flasksample-sandbox" in rule
        assert network.iptables_argv("D", rule)[4] == "-D"
