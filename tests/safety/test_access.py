"""The served page's file rule: datasets only from the workspace, the bundled data and listed roots (registries
and their file_name entries too), uploads only from the upload folder, exports only under the export roots;
a refusal tells nothing of the file. The CLI's policy allows everything."""
from __future__ import annotations

import json
import os

import pytest

from core.data.registry import DatasetError, find_dataset, list_entries
from core.data.source import check_dataset, open_dataset
from core.paths import DATA_DIR
from core.safety.access import AccessDenied, AccessPolicy
from core.spec import SpecError, check_launch
from tests.helpers import tiny_spec

SECRET = "CANARY-7f3a secret line"


@pytest.fixture
def places(tmp_path):
    """A workspace, an outside folder holding a secret dataset, and the server policy for the workspace."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "data").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.jsonl"
    secret.write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n{not json " + SECRET + "\n")
    inside = workspace / "data" / "mine.jsonl"
    inside.write_text(json.dumps({"instruction": "hi", "output": "hello"}) + "\n")
    policy = AccessPolicy.for_server(workspace, upload_roots=[tmp_path / "uploads"])
    return workspace, outside, secret, inside, policy


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises((DatasetError, AccessDenied)) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert SECRET not in message and "CANARY" not in message
    return message


def test_a_file_outside_the_roots_is_refused_without_being_read(places, monkeypatch):
    _, _, secret, inside, policy = places
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    assert "outside the folders this server reads from" in refused(open_dataset, str(secret), policy=policy)
    assert str(secret) not in opened  # decided from the path alone
    report = check_dataset(str(secret), policy=policy)
    assert report.fatal and "outside" in report.fatal and "CANARY" not in "\n".join(report.lines())
    # Inside the workspace, and the bundled data, are fine; the CLI's policy (none) reads anything.
    assert len(open_dataset(str(inside), policy=policy)) == 1
    assert len(open_dataset("identity", policy=policy)) > 0
    assert check_dataset(str(secret)).total_problems == 1  # the CLI sees (and quotes) its own file


def test_a_missing_file_outside_reads_the_same_as_an_existing_one(places):
    _, outside, secret, _, policy = places
    there = refused(open_dataset, str(secret), policy=policy)
    absent = refused(open_dataset, str(outside / "absent.jsonl"), policy=policy)
    assert there.replace(str(secret), "X") == absent.replace(str(outside / "absent.jsonl"), "X")


def test_symlinks_and_dot_dots_are_judged_where_they_lead(places):
    workspace, _, secret, _, policy = places
    link = workspace / "data" / "link.jsonl"
    os.symlink(secret, link)
    refused(open_dataset, str(link), policy=policy)
    refused(open_dataset, str(workspace / "data" / ".." / ".." / "outside" / "secret.jsonl"), policy=policy)
    refused(open_dataset, "~/../../" + str(secret), policy=policy)


def test_registries_and_their_entries_must_be_inside(places):
    workspace, outside, secret, _, policy = places
    outside_registry = outside / "dataset_info.json"
    outside_registry.write_text(json.dumps({SECRET: {"file_name": "secret.jsonl"}}))
    refused(find_dataset, "anything", str(outside_registry), policy)
    refused(list_entries, str(outside_registry), policy)
    inside_registry = workspace / "data" / "dataset_info.json"
    inside_registry.write_text(json.dumps({"escape": {"file_name": "../../outside/secret.jsonl"},
                                           "absolute": {"file_name": str(secret)},
                                           "fine": {"file_name": "mine.jsonl"}}))
    for name in ("escape", "absolute"):
        assert "file_name" in refused(find_dataset, name, str(inside_registry), policy)
    assert find_dataset("fine", str(inside_registry), policy).path.name == "mine.jsonl"
    reasons = dict((entry.name, reason) for entry, reason in list_entries(str(inside_registry), policy))
    assert "outside" in reasons["escape"] and "outside" in reasons["absolute"] and reasons["fine"] is None


def test_data_roots_given_at_start_are_readable(places):
    workspace, outside, secret, _, _ = places
    policy = AccessPolicy.for_server(workspace, data_roots=[outside])
    assert len(open_dataset(str(secret), policy=policy)) == 2


def test_the_login_file_is_never_data_even_inside_a_root(places):
    workspace, _, _, _, _ = places
    login = workspace / "data" / "users.txt"
    login.write_text("alice:scrypt$...\n")
    policy = AccessPolicy.for_server(workspace, blocked=[login])
    assert "not readable" in refused(open_dataset, str(login), policy=policy)


def test_uploads_come_only_from_the_upload_folder(places, tmp_path):
    _, _, secret, _, policy = places
    (tmp_path / "uploads").mkdir()
    uploaded = tmp_path / "uploads" / "abc" / "data.jsonl"
    uploaded.parent.mkdir()
    uploaded.write_text("{}\n")
    assert policy.check_upload(uploaded) == uploaded.resolve()
    refused(policy.check_upload, secret)
    refused(policy.check_upload, tmp_path / "uploads" / ".." / "outside" / "secret.jsonl")


def test_exports_go_only_under_the_export_roots(places, tmp_path):
    workspace, outside, _, _, policy = places
    assert policy.check_write(workspace / "exports" / "run-merged").name == "run-merged"
    for target in ("/etc/evil", outside / "model", workspace / "runs" / "x", workspace / "exports" / ".." / "y"):
        with pytest.raises(AccessDenied, match="outside the folders this server writes exports to"):
            policy.check_write(target)
    assert AccessPolicy.for_server(workspace, export_roots=[outside]).check_write(outside / "m") == outside / "m"
    AccessPolicy().check_write("/anywhere/the/cli/user/names")


def test_paths_no_file_system_accepts_are_refused_not_raised(places):
    *_, policy = places
    assert "not a usable path" in policy.read_refusal("a\x00b.jsonl")
    refused(open_dataset, "a\x00b.jsonl", policy=policy)
    with pytest.raises(AccessDenied):
        policy.check_write("out\x00")


def test_launch_checks_apply_the_servers_policy(places, tiny_model_dir):
    _, _, secret, inside, policy = places
    with pytest.raises(SpecError) as err:
        check_launch(tiny_spec(tiny_model_dir, data={"dataset": str(secret)}), policy)
    assert [key for key, _ in err.value.problems] == ["data.dataset"] and "CANARY" not in str(err.value)
    with pytest.raises(SpecError) as err:
        check_launch(tiny_spec(tiny_model_dir, data={"dataset": "x", "registry": str(secret.parent / "r.json")}), policy)
    assert [key for key, _ in err.value.problems] == ["data.registry"]
    check_launch(tiny_spec(tiny_model_dir, data={"dataset": str(inside)}), policy)
    check_launch(tiny_spec(tiny_model_dir, data={"dataset": str(DATA_DIR / "identity.json")}), policy)
