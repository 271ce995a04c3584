"""`fab audit` (who changed what, when, on the host) and `fab setup --check` (drift, no change)."""
APP = "flasksample"
SITE = f"/etc/nginx/sites-available/{APP}.conf"
AUDIT_LOG = f"/srv/{APP}/.kit/audit.log"


def test_audit_trail_and_setup_check(sandbox_host, kit, ssh, app_copy):
    """One host for both (they share the costly setup + deploy)."""
    host, root = sandbox_host, ssh(sandbox_host, "root")
    kit(host, "setup", "deploy", config=app_copy.config)
    app_copy.say("Hello v2!")
    kit(host, "deploy", config=app_copy.config)
    kit(host, "rollback", config=app_copy.config)
    kit(host, "env.set", "AUDITED_NAME=secret-value-1", config=app_copy.config)
    kit(host, "restart", config=app_copy.config)
    kit(host, "env.unset", "AUDITED_NAME", config=app_copy.config)
    kit(host, "exec", "python -c 'print(\"token-in-args\")'", config=app_copy.config)

    shown = kit(host, "audit", config=app_copy.config).stdout
    entries = [l for l in shown.splitlines() if l.startswith(f"[{host.name}]   ")]
    whats = [l.split("(pid ")[1].split(")", 1)[1].strip() for l in entries]
    assert whats[0].startswith("setup: user, directories, venv, packages, systemd-units, nginx-site")
    assert [w.split()[0] for w in whats[1:]] == ["deployed", "deployed", "rolled", "env.set",
                                                "restart", "env.unset", "exec"], whats
    assert whats[4] == "env.set AUDITED_NAME" and whats[6] == "env.unset AUDITED_NAME"
    assert all("@" in l and "Z " in l for l in entries)  # who and when
    assert whats[7] == "exec python"  # the program only: arguments may carry secrets
    assert "secret-value-1" not in shown and "token-in-args" not in shown
    assert "secret-value-1" not in root.run(f"cat {AUDIT_LOG}", hide=True).stdout
    assert root.run(f"stat -c '%U %a' {AUDIT_LOG}", hide=True).stdout.strip() == "root 600"
    # a setup that changes nothing adds no entry
    kit(host, "setup", config=app_copy.config)
    assert kit(host, "audit", "-n", "1", config=app_copy.config).stdout.count("exec python") == 1

    # -- setup --check: a hand-edited nginx site shows as a diff and stays as it is
    clean = kit(host, "setup", "--check", config=app_copy.config, check=False)
    assert clean.returncode == 0 and "setup --check: no change" in clean.stdout

    root.run(f"sed -i 's/client_max_body_size 10m;/client_max_body_size 99m;/' {SITE}", hide=True)
    before = root.run(f"sha256sum {SITE}; stat -c %Y {SITE}", hide=True).stdout
    log_before = root.run(f"wc -l < {AUDIT_LOG}", hide=True).stdout

    drift = kit(host, "setup", "--check", config=app_copy.config, check=False)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "nginx-site       would change" in drift.stdout
    assert f"--- {SITE} (on the host)" in drift.stdout
    assert "-    client_max_body_size 99m;" in drift.stdout
    assert "+    client_max_body_size 10m;" in drift.stdout
    assert drift.stderr.strip().startswith("error: setup would change")
    assert root.run(f"sha256sum {SITE}; stat -c %Y {SITE}", hide=True).stdout == before
    assert root.run(f"wc -l < {AUDIT_LOG}", hide=True).stdout == log_before

    kit(host, "setup", config=app_copy.config)
    assert "client_max_body_size 10m;" in root.run(f"cat {SITE}", hide=True).stdout
    assert kit(host, "setup", "--check", config=app_copy.config, check=False).returncode == 0

