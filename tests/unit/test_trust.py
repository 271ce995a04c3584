"""Host keys: known_hosts parsing and matching, verdicts, recording, policies and the errors."""
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import paramiko
import pytest

from deploy import knownhosts, trust
from deploy.errors import KitError



def make_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def line(names: str, key: paramiko.PKey) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = make_key()
    pub = tmp_path / "k.pub"
    pub.write_text(line("host", key).split(" ", 1)[1])
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True)
    assert out.stdout.split()[1] == knownhosts.fingerprint(key.asbytes())


def test_normalize_fingerprint():
    assert knownhosts.normalize_fingerprint("SHA256:abc+/9") == "SHA256:abc+/9"
    assert knownhosts.normalize_fingerprint("sha256:abc=") == "SHA256:abc"
    assert knownhosts.normalize_fingerprint(" abc ") == "SHA256:abc"
    for bad in ("MD5:aa:bb", "SHA256:", "not a fp!"):
        with pytest.raises(KitError):
            knownhosts.normalize_fingerprint(bad)


def test_lookup_name():
    assert knownhosts.lookup_name("10.0.0.1", 22) == "10.0.0.1"
    assert knownhosts.lookup_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    assert knownhosts.lookup_name("10.0.0.1", 2222, "web1") == "web1"


def test_parse_skips_comments_blanks_and_junk():
    key = make_key()
    text = "# comment\n\nbroken line\n" + line("a,b", key) + "@revoked * ssh-ed25519 AAAA\n"
    entries = knownhosts.parse_known_hosts(text, "f")
    assert [e.patterns for e in entries] == [("a", "b"), ("*",)]
    assert entries[0].lineno == 4 and entries[0].file == "f"
    assert entries[1].marker == "@revoked"


def test_matching_plain_hashed_patterns_and_negation():
    key = make_key()
    entries = knownhosts.parse_known_hosts(
        line("web1,10.0.0.1", key) + line(knownhosts.hash_name("db1"), key)
        + line("*.example.org,!bad.example.org", key) + line("[10.0.0.9]:2222", key))
    for name in ("web1", "WEB1", "10.0.0.1", "db1", "x.example.org", "[10.0.0.9]:2222"):
        assert knownhosts.known_for(entries, name), name
    for name in ("web2", "db2", "bad.example.org", "10.0.0.9"):
        assert not knownhosts.known_for(entries, name), name


def test_hash_name_is_what_ssh_keygen_finds(tmp_path):
    key = make_key()
    kh = tmp_path / "kh"
    kh.write_text(knownhosts.entry_line("10.1.2.3", key.get_name(), key.get_base64(), hashed=True))
    assert kh.read_text().startswith("|1|")
    out = subprocess.run(["ssh-keygen", "-F", "10.1.2.3", "-f", str(kh)], capture_output=True, text=True)
    assert out.returncode == 0 and "10.1.2.3" in out.stdout


def test_verdicts():
    old, new = make_key(), make_key()
    entries = knownhosts.parse_known_hosts(line("h", old) + f"@revoked * {new.get_name()} x\n"
                                      + f"@revoked * {old.get_name()} {make_key().get_base64()}\n")
    assert knownhosts.verdict(entries, "h", old.asbytes()) == "known"
    assert knownhosts.verdict(entries, "h", new.asbytes()) == "changed"
    assert knownhosts.verdict(entries, "other", new.asbytes()) == "unknown"
    revoked = make_key()
    entries.append(knownhosts.parse_line(f"@revoked * {revoked.get_name()} {revoked.get_base64()}"))
    assert knownhosts.verdict(entries, "other", revoked.asbytes()) == "revoked"


def test_without_name_drops_only_that_name():
    k = make_key()
    text = ("# keep me\n" + line("web1,10.0.0.1", k) + line("web1", k) + line(knownhosts.hash_name("web1"), k)
            + line("web2", k) + line("*", k) + f"@cert-authority web1 {k.get_name()} {k.get_base64()}\n")
    out, n = knownhosts.without_name(text, "web1")
    assert n == 3
    assert out == ("# keep me\n" + line("10.0.0.1", k) + line("web2", k) + line("*", k)
                   + f"@cert-authority web1 {k.get_name()} {k.get_base64()}\n")


def test_files_and_policy_from_ssh_config(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    user, glob = knownhosts.files_from_config({})
    assert user == [f"{tmp_path}/.ssh/known_hosts", f"{tmp_path}/.ssh/known_hosts2"]
    assert glob == ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
    user, glob = knownhosts.files_from_config({"userknownhostsfile": "~/a '/b c' %d/x",
                                          "globalknownhostsfile": "none"})
    assert user == [f"{tmp_path}/a", "/b c", f"{tmp_path}/x"] and glob == []
    assert knownhosts.policy_for({}, "strict") == "strict"
    assert knownhosts.policy_for({}, "accept-new") == "accept-new"
    assert knownhosts.policy_for({"stricthostkeychecking": "yes"}, "accept-new") == "strict"
    assert knownhosts.policy_for({"stricthostkeychecking": "ask"}, "accept-new") == "strict"
    # the stricter of the two wins (T7): a global `StrictHostKeyChecking no` cannot weaken strict
    assert knownhosts.policy_for({"stricthostkeychecking": "accept-new"}, "strict") == "strict"
    assert knownhosts.policy_for({"stricthostkeychecking": "no"}, "strict") == "strict"
    assert knownhosts.policy_for({"stricthostkeychecking": "no"}, "accept-new") == "accept-new"
    assert knownhosts.hashed_config({"hashknownhosts": "yes"}) and not knownhosts.hashed_config({})


def view(tmp_path, **kw):
    base = dict(label="web1", name="10.0.0.1", host="10.0.0.1", port=22,
                user_files=[str(tmp_path / "ssh" / "known_hosts")], global_files=[],
                policy="strict", hashed=False, ssh_config_path=None)
    base.update(kw)
    return trust.HostView(**base)


def test_record_creates_replaces_and_keeps_others(tmp_path):
    v = view(tmp_path)
    old, new, other = make_key(), make_key(), make_key()
    path = trust.record(v, old.get_name(), old.get_base64())
    assert (tmp_path / "ssh").stat().st_mode & 0o777 == 0o700
    with open(path, "a") as f:
        f.write(line("web2", other))
    trust.record(v, new.get_name(), new.get_base64())
    entries = v.entries()
    assert knownhosts.verdict(entries, "10.0.0.1", new.asbytes()) == "known"
    assert knownhosts.verdict(entries, "web2", other.asbytes()) == "known"
    assert len(knownhosts.known_for(entries, "10.0.0.1")) == 1


def test_policy_refuses_unknown_and_records_under_accept_new(tmp_path):
    key = make_key()
    strict = trust.KitHostKeyPolicy(view(tmp_path), [])
    with pytest.raises(KitError) as e:
        strict.missing_host_key(None, "10.0.0.1", key)
    msg = str(e.value)
    assert "\n" not in msg and "web1" in msg and knownhosts.fingerprint(key.asbytes()) in msg
    assert "fab -H web1 trust" in msg
    notes = []
    lenient = trust.KitHostKeyPolicy(view(tmp_path, policy="accept-new"), [], notes.append)
    lenient.missing_host_key(None, "10.0.0.1", key)
    assert knownhosts.verdict(view(tmp_path).entries(), "10.0.0.1", key.asbytes()) == "known"
    assert "recorded" in notes[0]


def test_changed_error_names_both_fingerprints_and_the_fix():
    old, new = make_key(), make_key()
    entry = knownhosts.parse_line(line("10.0.0.1", old).strip(), "/k", 3)
    msg = str(trust.changed_error("web1", "10.0.0.1", new.get_name(), entry,
                                  knownhosts.fingerprint(new.asbytes()), "/x/ssh_config"))
    assert "\n" not in msg and "CHANGED" in msg and "/k:3" in msg
    assert knownhosts.fingerprint(old.asbytes()) in msg and knownhosts.fingerprint(new.asbytes()) in msg
    assert f"fab -S /x/ssh_config -H web1 trust --fingerprint {knownhosts.fingerprint(new.asbytes())}" in msg


def test_guard_installs_known_keys_and_policy(tmp_path):
    key = make_key()
    kh = tmp_path / "kh"
    kh.write_text(line("web1", key))
    client = paramiko.SSHClient()
    conn = SimpleNamespace(
        host="10.0.0.1", port=2222, original_host="web1", client=client, gateway=None,
        ssh_config={"userknownhostsfile": str(kh), "globalknownhostsfile": "none",
                    "hostkeyalias": "web1"},
        config=SimpleNamespace(get=lambda k, d=None: d))
    v = trust.guard(conn, "web1", "strict")
    assert v.name == "web1"
    assert client.get_host_keys().lookup("[10.0.0.1]:2222")[key.get_name()] == key
    assert isinstance(client._policy, trust.KitHostKeyPolicy)


def test_stale_notes_offer_the_fix(tmp_path):
    old, new = make_key(), make_key()
    kh = tmp_path / "kh"
    kh.write_text(line("10.231.1.2", old))
    pub = f"{new.get_name()} {new.get_base64()} root@fs1"
    notes = trust.stale_notes("10.231.1.2", "fs1", pub, [str(kh)])
    fp = knownhosts.fingerprint(new.asbytes())
    assert len(notes) == 1 and f"fab -H 10.231.1.2 trust --fingerprint {fp}" in notes[0]
    kh.write_text(line("10.231.1.2", new))
    assert trust.stale_notes("10.231.1.2", "fs1", pub, [str(kh)]) == []


# -- real handshakes over a socketpair (tests/unit/sshpair.py) --------------------------------

def connect(host_keys, kh_user, kh_global=None, policy="strict", **extra):
    """Remote.connect() against a server offering host_keys; the error message it ends with."""
    from deploy.runner import Remote
    from tests.unit import sshpair

    cfg = {"userknownhostsfile": str(kh_user),
           "globalknownhostsfile": str(kh_global) if kh_global else "none", **extra}
    conn = sshpair.connection(host_keys, cfg, settings={"host_key_policy": policy})
    with pytest.raises(KitError) as e:
        Remote(conn, "web1").connect()
    return str(e.value)


def test_revoked_key_is_refused_even_when_also_known(tmp_path):
    key = make_key()
    user, glob = tmp_path / "known_hosts", tmp_path / "ssh_known_hosts"
    user.write_text(line("web1", key))
    assert "SSH refused the key for user deploy" in connect([key], user)  # control: known → login
    glob.write_text("@revoked * " + line("", key).strip() + "\n")
    assert "@revoked" in connect([key], user, glob)
    user.write_text(line("web1", key) + "@revoked * " + line("", key).lstrip())
    assert "@revoked" in connect([key], user)
    other = make_key()  # a second, good key of the same type known too: still revoked, not "changed"
    user.write_text(line("web1", other) + line("web1", key) + "@revoked * " + line("", key).lstrip())
    assert "@revoked" in connect([key], user)


def test_dev_null_means_no_known_hosts_and_is_never_written(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):  # a regression must fail this test, not replace this machine's /dev/null
        assert os.path.realpath(dst) != os.devnull, "tried to replace /dev/null"
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    user, _ = knownhosts.files_from_config({"userknownhostsfile": "/dev/null ~/kh"})
    assert "/dev/null" not in user and len(user) == 1
    user, _ = knownhosts.files_from_config({"userknownhostsfile": "/dev/null"})
    assert user == []
    # vagrant ssh-config: UserKnownHostsFile /dev/null + StrictHostKeyChecking no
    msg = connect([make_key()], "/dev/null", policy="accept-new", stricthostkeychecking="no")
    assert "/dev/null" in msg and "known_hosts" in msg


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_as_known_hosts_is_not_replaced(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a second /dev/null
    msg = connect([make_key()], node, policy="accept-new", stricthostkeychecking="no")
    assert "not a regular file" in msg
    assert stat.S_ISCHR(os.stat(node).st_mode)


def test_record_refuses_a_directory_and_follows_a_symlink(tmp_path):
    key = make_key()
    with pytest.raises(KitError, match="not a regular file"):
        trust.record(view(tmp_path, user_files=[str(tmp_path)]), key.get_name(), key.get_base64())
    real = tmp_path / "dotfiles" / "known_hosts"
    real.parent.mkdir()
    real.write_text(line("web2", make_key()))
    (tmp_path / "link").symlink_to(real)
    trust.record(view(tmp_path, user_files=[str(tmp_path / "link")]), key.get_name(), key.get_base64())
    assert (tmp_path / "link").is_symlink() and len(real.read_text().splitlines()) == 2


def test_concurrent_records_keep_every_entry(tmp_path):
    kh = tmp_path / "known_hosts"
    keep = make_key()
    kh.write_text(line("old-host", keep))
    keys = [make_key() for _ in range(8)]
    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda ik: trust.record(
                view(tmp_path, name=f"h{ik[0]}", user_files=[str(kh)]), ik[1].get_name(),
                ik[1].get_base64()), enumerate(keys)))
        entries = knownhosts.parse_known_hosts(kh.read_text())
        assert knownhosts.verdict(entries, "old-host", keep.asbytes()) == "known"
        assert all(knownhosts.verdict(entries, f"h{i}", k.asbytes()) == "known"
                   for i, k in enumerate(keys))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts"]  # no temp files left


def test_ssh_config_cannot_weaken_a_strict_setting(tmp_path):
    kh = tmp_path / "known_hosts"
    assert "unknown host key" in connect([make_key()], kh, stricthostkeychecking="no")
    assert not kh.exists()
    connect([make_key()], kh, policy="accept-new", stricthostkeychecking="no")
    assert kh.exists()  # accept-new from both: recorded (then the login is refused)


def trust_run(monkeypatch, host_keys, kh, expected=None, yes=False, gateway=None, answer=True):
    """`fab trust` (trust_host) against a socketpair server offering host_keys."""
    from fabric import Connection

    from tests.unit import sshpair

    monkeypatch.setattr(trust.socket, "create_connection", lambda *a, **k: sshpair.serve(host_keys))
    conn = Connection("web1", gateway=gateway)
    conn.ssh_config = {"userknownhostsfile": str(kh), "globalknownhostsfile": "none"}
    said = []
    state = trust.trust_host(conn, "web1", expected, yes, said.append, lambda prompt: answer)
    return state, said


def test_trust_yes_records_an_unknown_key_but_never_a_changed_one(tmp_path, monkeypatch):
    kh, old, new = tmp_path / "known_hosts", make_key(), make_key()
    assert trust_run(monkeypatch, [old], kh, yes=True)[0] == "unknown"
    assert knownhosts.verdict(knownhosts.parse_known_hosts(kh.read_text()), "web1", old.asbytes()) == "known"
    for yes, answer in ((True, True), (False, True)):
        with pytest.raises(KitError, match="CHANGED.*--fingerprint SHA256:") as e:
            trust_run(monkeypatch, [new], kh, yes=yes, answer=answer)
        assert "\n" not in str(e.value)
    assert knownhosts.verdict(knownhosts.parse_known_hosts(kh.read_text()), "web1", old.asbytes()) == "known"
    state, _ = trust_run(monkeypatch, [new], kh, expected=knownhosts.fingerprint(new.asbytes()))
    assert state == "changed"
    assert knownhosts.verdict(knownhosts.parse_known_hosts(kh.read_text()), "web1", new.asbytes()) == "known"


def test_trust_compares_a_known_rsa_key_like_for_like(tmp_path, monkeypatch):
    rsa, ecdsa = paramiko.RSAKey.generate(2048), make_key()
    kh = tmp_path / "known_hosts"
    kh.write_text(line("web1", rsa))
    state, said = trust_run(monkeypatch, [ecdsa, rsa], kh)
    assert state == "known" and "RSA" in said[0]
    state, _ = trust_run(monkeypatch, [ecdsa, rsa], kh, expected=knownhosts.fingerprint(rsa.asbytes()))
    assert state == "known"


def test_trust_checks_the_proxyjump_gateways_key(tmp_path, monkeypatch):
    from tests.unit import sshpair

    kh = tmp_path / "known_hosts"
    gw_key = make_key()
    cfg = {"userknownhostsfile": str(kh), "globalknownhostsfile": "none"}
    with pytest.raises(KitError, match=r"web1 \(via bastion\): unknown host key") as e:
        trust_run(monkeypatch, [make_key()], kh, yes=True,
                  gateway=sshpair.connection([gw_key], cfg, host="bastion"))
    assert not kh.exists()  # nothing recorded for the target (nor the bastion)
    kh.write_text(line("bastion", gw_key))
    with pytest.raises(KitError, match="cannot connect through bastion"):  # key ok, login refused
        trust_run(monkeypatch, [make_key()], kh, yes=True,
                  gateway=sshpair.connection([gw_key], cfg, host="bastion"))
