"""Container users read exactly the secret files compose.yaml mounts for them (CRED-04)."""
import os
import stat
import subprocess  # nosec B404
import tempfile
from pathlib import Path

import pytest
import yaml

from tools import file_access, settings

pytestmark = pytest.mark.controls("CRED-04")
PROJECT = Path(__file__).resolve().parents[2]


def test_readers_come_from_compose_yaml():
    stack = settings.load(PROJECT)
    readers = file_access.secret_readers(yaml.safe_load((PROJECT / "compose.yaml").read_text()), PROJECT)
    assert readers[PROJECT / "pki" / "broker.key"] == {stack.broker_uid}
    assert readers[PROJECT / "secrets" / "definitions.json"] == {stack.broker_uid}
    for vhost in stack.vhosts:
        for role in ("worker", "producer"):
            identity = stack.topology.user_name(vhost, role)
            assert readers.get(PROJECT / "secrets" / f"{identity}.password") == ({stack.worker_uid} if stack.passwords
                                                                                else None)
            assert readers[PROJECT / "pki" / f"{identity}.key"] == {stack.worker_uid}
        # The auditors and the CAs are people on the host: no container mounts their keys.
        assert PROJECT / "pki" / f"{stack.topology.user_name(vhost, 'auditor')}.key" not in readers
    assert not {PROJECT / "pki" / "issuing-ca.key", PROJECT / "pki-root" / "ca.key"} & set(readers)


def test_a_grant_names_one_reader_and_nobody_else(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    secret.chmod(0o600)
    file_access.grant_read(secret, {4242})
    assert file_access.read_grants(secret) == {4242}
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640          # the group bits show the ACL mask, r--
    file_access.grant_read(secret, {4343})                        # a new grant replaces the old one
    assert file_access.read_grants(secret) == {4343}


def test_a_service_without_a_numeric_user_is_refused():
    model = {"secrets": {"s": {"file": "s.txt"}}, "services": {"x": {"secrets": ["s"]}}}
    with pytest.raises(file_access.AccessError, match="service x mounts secrets but has no numeric `user:`"):
        file_access.secret_readers(model, Path("/nonexistent"))


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another uid needs root")
def test_the_granted_uid_reads_and_another_uid_does_not():
    with tempfile.TemporaryDirectory() as directory:       # under /tmp: every uid may traverse to the file
        os.chmod(directory, 0o755)
        secret = Path(directory) / "secret"
        secret.write_text("s3cret")
        secret.chmod(0o600)
        file_access.grant_read(secret, {4242})
        for uid, readable in ((4242, True), (4343, False)):
            read = subprocess.run(["cat", str(secret)], user=uid, group=uid, capture_output=True,  # nosec B603 B607
                                  check=False)
            assert (read.returncode == 0) is readable, (uid, read.stderr)
