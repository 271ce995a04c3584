"""ssh_config and known_hosts for the running sandbox hosts."""
from deploy.sandbox import sshfiles


def test_ssh_config_block_is_strict():
    text = sshfiles.ssh_config_text([("fs1", 1), ("fs2", 2)], "deploy", "/s/id_ed25519", "/s/known_hosts")
    assert (
        "Host fs2\n"
        "    HostName 10.231.2.2\n"
        "    User deploy\n"
        "    IdentityFile /s/id_ed25519\n"
        "    IdentitiesOnly yes\n"
        "    UserKnownHostsFile /s/known_hosts\n"
        "    StrictHostKeyChecking yes\n"
    ) in text
    assert text.count("Host fs") == 2


def test_known_hosts_lists_each_key_by_address_and_by_name():
    text = sshfiles.known_hosts_text([("fs1", 1, "ssh-ed25519 AAAAkey1 root@fs1"),
                                      ("fs2", 2, "ssh-ed25519 AAAAkey2")])
    assert text == ("10.231.1.2 ssh-ed25519 AAAAkey1\n"
                    "fs1 ssh-ed25519 AAAAkey1\n"
                    "10.231.2.2 ssh-ed25519 AAAAkey2\n"
                    "fs2 ssh-ed25519 AAAAkey2\n")


def test_known_hosts_is_empty_without_hosts():
    assert sshfiles.known_hosts_text([]) == ""
